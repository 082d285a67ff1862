/**
 * The usage aggregator's Lambda deployment package, built in memory from the committed bundle
 * (no esbuild at runtime): a zip holding `index.mjs`, handler `index.handler`, runtime
 * `nodejs22.x`. The zip is deterministic (fixed file time and attributes), so its hash only
 * changes when the code does.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { strToU8, zipSync } from "fflate";
import { AGGREGATOR_JS } from "./bundle_generated.ts";

/**
 * The Lambda handler setting of the aggregator's zip.
 *
 * @example
 * ```ts
 * import { AGGREGATOR_FILE, AGGREGATOR_HANDLER } from "./bundle.ts";
 * // `index.handler`: the export `handler` of `index.mjs`.
 * console.assert(AGGREGATOR_HANDLER === AGGREGATOR_FILE.replace(".mjs", ".handler"));
 * ```
 */
export const AGGREGATOR_HANDLER = "index.handler";
/**
 * The Lambda runtime the aggregator is built for.
 *
 * @example
 * ```ts
 * import { AGGREGATOR_RUNTIME } from "./bundle.ts";
 * console.assert(AGGREGATOR_RUNTIME.startsWith("nodejs"));
 * ```
 */
export const AGGREGATOR_RUNTIME = "nodejs22.x";
/**
 * The file name of the handler inside the zip.
 *
 * @example
 * ```ts
 * import { AGGREGATOR_FILE, buildAggregatorZip } from "./bundle.ts";
 * import { unzipSync } from "fflate";
 * console.assert(Object.keys(unzipSync(buildAggregatorZip()))[0] === AGGREGATOR_FILE);
 * ```
 */
export const AGGREGATOR_FILE = "index.mjs";

let cached: Uint8Array | undefined;

/**
 * The aggregator's deployment zip (`index.mjs`, handler {@link AGGREGATOR_HANDLER}).
 *
 * @example
 * ```ts
 * import { buildAggregatorZip } from "./bundle.ts";
 * const zip = buildAggregatorZip();
 * console.assert(zip[0] === 0x50 && zip[1] === 0x4b); // "PK"
 * ```
 */
export function buildAggregatorZip(): Uint8Array {
  cached ??= zipSync({
    [AGGREGATOR_FILE]: [strToU8(AGGREGATOR_JS), {
      level: 9,
      // Zip times are local wall-clock fields: a Date built from local fields gives the same
      // bytes in every time zone.
      mtime: new Date(2020, 0, 1, 0, 0, 0),
      os: 3, // Unix, so that the mode below is read
      attrs: (0o100644 << 16) >>> 0, // regular file, rw-r--r--
    }],
  });
  return cached.slice();
}

/**
 * Base64 SHA-256 of the zip, in the form Lambda reports as `CodeSha256`: equal values mean the
 * deployed function already runs this code.
 *
 * @example
 * ```ts
 * import { aggregatorCodeSha256 } from "./bundle.ts";
 * console.assert(aggregatorCodeSha256().length === 44);
 * ```
 */
export function aggregatorCodeSha256(): string {
  return createHash("sha256").update(buildAggregatorZip()).digest("base64");
}
