/**
 * Single measures of the benchmark, each through the public API: the esbuild bundle size of
 * `import { RateLimiter }`, the request body of a warm 2-limit acquire, and the round trips of a
 * warm acquire whose cached entity config ran out.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import { Limit, RateLimiter } from "../mod.ts";
import { benchClient } from "./bench_clients.ts";
import { Meter } from "./meter.ts";
import { countWaves, Tracer } from "./bench_trace.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Result of {@link measureBundle}. */
export interface BundleSize {
  /**
   * Minified bundle, bytes, built from the packages' ES module builds (`mainFields: ["module",
   * "main"]`), as a function's bundler should be set for the AWS SDK: the goal's figure.
   */
  bytes: number;
  /**
   * The same bundle with esbuild's default fields for platform node (`main` first: the AWS SDK's
   * CommonJS builds, which cannot be tree-shaken), bytes.
   */
  mainFirstBytes?: number;
  /** The largest packages (or `local` for this repository's files), bytes in the bundle. */
  largest: { name: string; bytes: number }[];
}

/** {@link BundleSize} with the bundle's modules. */
export interface BundleMeasure extends BundleSize {
  /** Every module in the bundle, as esbuild's metafile names it (relative to the repository). */
  inputs: string[];
}

/** The entry {@link measureBundle} bundles: what a function importing `RateLimiter` ships. */
export const LIMITER_ENTRY = 'export { RateLimiter } from "./mod.ts";';

/** The fields esbuild reads a package's entry from: ES module builds first, as the AWS SDK needs. */
export const ESM_MAIN_FIELDS: readonly string[] = ["module", "main"];

/**
 * Bundles `entry` (resolved from the repository's root) with esbuild as a function would ship it:
 * platform node, ESM, minified, one file. Returns the code and esbuild's metafile. `mainFields`
 * left out is esbuild's default for platform node (`main`, then `module`).
 *
 * @example
 * ```ts ignore
 * const { code, metafile } = await bundleEntry('export { Limit } from "./mod.ts";');
 * ```
 */
export async function bundleEntry(
  entry: string = LIMITER_ENTRY,
  options: { mainFields?: readonly string[] } = {},
): Promise<{ code: Uint8Array; metafile: esbuild.Metafile }> {
  try {
    const out = await esbuild.build({
      stdin: { contents: entry, resolveDir: ROOT, loader: "ts", sourcefile: "entry.ts" },
      bundle: true,
      write: false,
      platform: "node",
      format: "esm",
      target: "node20",
      minify: true,
      legalComments: "none",
      metafile: true,
      logLevel: "silent",
      ...(options.mainFields ? { mainFields: [...options.mainFields] } : {}),
    });
    return { code: out.outputFiles[0].contents, metafile: out.metafile };
  } finally {
    await esbuild.stop();
  }
}

/**
 * Bundles `export { RateLimiter } from "./mod.ts"` with {@link bundleEntry} from the packages' ES
 * module builds ({@link ESM_MAIN_FIELDS}) and sums the bytes each package (from the metafile's
 * outputs) takes in it; bundles it once more with esbuild's default fields for the main-first size.
 *
 * @example
 * ```ts ignore
 * const { bytes } = await measureBundle();
 * ```
 */
export async function measureBundle(): Promise<BundleMeasure> {
  const { code, metafile } = await bundleEntry(LIMITER_ENTRY, { mainFields: ESM_MAIN_FIELDS });
  const mainFirst = await bundleEntry(LIMITER_ENTRY);
  const byPackage = new Map<string, number>();
  const inputs: string[] = [];
  for (const output of Object.values(metafile.outputs)) {
    for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
      inputs.push(path);
      const m = path.match(/node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/);
      const name = m ? m[1] : "local";
      byPackage.set(name, (byPackage.get(name) ?? 0) + bytesInOutput);
    }
  }
  const largest = [...byPackage].map(([name, b]) => ({ name, bytes: b }))
    .sort((a, b) => b.bytes - a.bytes).slice(0, 8);
  return { bytes: code.byteLength, mainFirstBytes: mainFirst.code.byteLength, largest, inputs };
}

const LIMITS = [Limit.perMinute("rpm", 1_000), Limit.perMinute("tpm", 100_000)];
const CONSUME = { rpm: 1, tpm: 500 };

/** Result of {@link measureRequestBody}. */
export interface RequestBody {
  /** The call of the warm acquire, e.g. `UpdateItem`. */
  command: string;
  /** Bytes of its serialised body (UTF-8). */
  bytes: number;
  /** Calls the warm acquire + commit made. */
  calls: number;
}

/**
 * The serialised body of a warm 2-limit acquire + commit on DynamoDB Local, captured at the
 * SDK's `finalizeRequest` step (after serialisation, before signing and sending).
 *
 * @example
 * ```ts ignore
 * const { bytes } = await measureRequestBody({ endpoint: "http://127.0.0.1:8000" });
 * ```
 */
export async function measureRequestBody(options: { endpoint: string }): Promise<RequestBody> {
  const client = benchClient(options.endpoint);
  const bodies: { command: string; bytes: number }[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      const body = (args.request as { body?: unknown }).body;
      const bytes = typeof body === "string"
        ? new TextEncoder().encode(body).byteLength
        : body instanceof Uint8Array
        ? body.byteLength
        : NaN;
      bodies.push({ command: String(context.commandName).replace(/Command$/, ""), bytes });
      return next(args);
    },
    { step: "finalizeRequest", name: "zaeBenchBody" },
  );
  const limiter = new RateLimiter({
    tableName: `bench_body_${Date.now().toString(36)}`,
    client,
    createTable: true,
  });
  const request = { entityId: "key-1", resource: "gpt-4", limits: LIMITS, consume: CONSUME };
  try {
    // Cold (metadata read, first write), then warm.
    for (let i = 0; i < 3; i++) await (await limiter.acquire(request)).commit();
    bodies.length = 0;
    await (await limiter.acquire(request)).commit();
    const biggest = bodies.reduce((a, b) => (b.bytes > a.bytes ? b : a), bodies[0]);
    return { command: biggest.command, bytes: biggest.bytes, calls: bodies.length };
  } finally {
    await limiter.close();
    client.destroy();
  }
}

/** Result of {@link measureConfigExpiry}. */
export interface ConfigExpiry {
  /** Round trips the acquire + commit waited for (calls that ended before it returned). */
  roundTrips: number;
  /** Calls the acquire + commit made in all, a background refresh included. */
  calls: number;
  /** Calls by command. */
  commands: Record<string, number>;
  /** The cache lifetime used, ms. */
  ttlMs: number;
}

/**
 * A warm acquire (`useStoredLimits: true`, 2 stored limits) of an entity whose cached config ran
 * out: `limitsCacheTtlMs` is short, and both the injected clock and real time move past it.
 * Counts the calls the acquire + commit waited for, and any made in the background.
 *
 * @example
 * ```ts ignore
 * const { roundTrips } = await measureConfigExpiry({ endpoint: "http://127.0.0.1:8000" });
 * ```
 */
export async function measureConfigExpiry(
  options: { endpoint: string; ttlMs?: number },
): Promise<ConfigExpiry> {
  const { endpoint, ttlMs = 1_000 } = options;
  const client = benchClient(endpoint);
  const meter = new Meter(client);
  const tracer = new Tracer(client);
  let now = Date.now();
  const limiter = new RateLimiter({
    tableName: `bench_ttl_${Date.now().toString(36)}`,
    client,
    createTable: true,
    clock: () => now,
    limitsCacheTtlMs: ttlMs,
  });
  const request = {
    entityId: "key-1",
    resource: "gpt-4",
    limits: [Limit.perMinute("rpm", 10)],
    consume: CONSUME,
    useStoredLimits: true,
  };
  try {
    await limiter.setLimits({ entityId: "key-1", resource: "gpt-4", limits: LIMITS });
    for (let i = 0; i < 2; i++) await (await limiter.acquire(request)).commit();
    now += ttlMs + 1_000;
    await new Promise((resolve) => setTimeout(resolve, ttlMs + 50));
    meter.reset();
    tracer.reset();
    await (await limiter.acquire(request)).commit();
    const returned = performance.now();
    const waited = tracer.calls.filter((c) => c.end <= returned);
    // Let a background refresh, if any, land before counting every call.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const commands: Record<string, number> = {};
    for (const c of meter.calls) {
      const name = c.command.replace(/Command$/, "");
      commands[name] = (commands[name] ?? 0) + 1;
    }
    return { roundTrips: countWaves(waited), calls: meter.count, commands, ttlMs };
  } finally {
    await limiter.close();
    client.destroy();
  }
}
