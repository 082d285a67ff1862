/**
 * Unpacks the emulator's files from the downloaded tarball with the npm CLI's own tar parser
 * (`tar`), streaming: one gunzip chunk and the entries inside it are in memory at a time, and each
 * file is written as its bytes arrive. Only regular files and folders under `package/emulator/`
 * are created; links and special files are skipped, any path that would land outside the target
 * folder is refused, and the archive's size and entry count are capped.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { type FileHandle, mkdir, open } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { createGunzip } from "node:zlib";
import type { ReadEntry } from "tar/read-entry";
import { msg } from "./_util.ts";
import { LocalDynamoError } from "./errors.ts";

const ARCHIVE_PREFIX = "package/emulator/";
const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);

/**
 * Caps on what one tarball may unpack to.
 *
 * @example
 * ```ts
 * import type { ExtractLimits } from "./unpack.ts";
 * const small: ExtractLimits = { maxBytes: 1 << 20, maxEntries: 100 };
 * console.assert(small.maxEntries === 100);
 * ```
 */
export interface ExtractLimits {
  /** The most bytes the gunzipped archive may have. */
  maxBytes: number;
  /** The most entries (files, folders, links; not the pax or long-name records) it may have. */
  maxEntries: number;
}

/**
 * The caps {@link extract} applies unless told otherwise: 1 GiB and 20,000 entries.
 *
 * @example
 * ```ts
 * import { EXTRACT_LIMITS } from "./unpack.ts";
 * console.assert(EXTRACT_LIMITS.maxBytes === 1024 ** 3);
 * ```
 */
export const EXTRACT_LIMITS: ExtractLimits = { maxBytes: 1 << 30, maxEntries: 20_000 };

/** The target of an archive path under `base`, or `undefined` when it is not to be unpacked. */
function targetOf(base: string, entryPath: string): string | undefined {
  const path = entryPath.replace(/^\.\//, "");
  if (!path.startsWith(ARCHIVE_PREFIX)) return undefined;
  const rel = path.slice(ARCHIVE_PREFIX.length).replace(/\/+$/, "");
  if (rel === "") return undefined;
  const parts = rel.split("/");
  const target = join(base, ...parts);
  if (
    parts.some((p) => p === ".." || p === "" || p === ".") || rel.includes("\\") ||
    !target.startsWith(base + sep)
  ) {
    throw new Error(`unsafe path in archive: ${JSON.stringify(entryPath)}`);
  }
  return target;
}

/** Writes one entry's bytes to `target` as they arrive; `writing` holds it until it is done. */
async function writeEntry(entry: ReadEntry, target: string, writing: Set<ReadEntry>) {
  writing.add(entry);
  try {
    await mkdir(dirname(target), { recursive: true });
    const fh: FileHandle = await open(target, "w", ((entry.mode ?? 0o644) & 0o777) | 0o600);
    try {
      if (entry.destroyed) return; // the unpack failed meanwhile: no bytes will come
      for await (const chunk of entry) await fh.write(chunk);
    } finally {
      await fh.close();
    }
  } finally {
    writing.delete(entry);
  }
}

/**
 * Unpacks `package/emulator/**` of the tarball into `out` (prefix stripped).
 *
 * @throws {LocalDynamoError} `EXTRACT_FAILED` when the archive is corrupt or truncated, has an
 *   unsafe path, is over `limits`, or has no `DynamoDBLocal.jar`.
 *
 * @example
 * ```ts ignore
 * import { extract } from "./unpack.ts";
 * await extract("/tmp/amplify-dynamodb-simulator-2.9.30.tgz", "/tmp/dynamodb-local");
 * ```
 */
export async function extract(
  tgz: string,
  out: string,
  limits: ExtractLimits = EXTRACT_LIMITS,
): Promise<void> {
  // Loaded here, not at the top: a start from a warm cache (most of them) never needs the parser,
  // and a script that imports this folder by path, with no import map, can still start one.
  const { Parser } = await import("tar/parse").catch((err) => {
    // An npm install without the optional `tar` (it ships with @zae/limiter-cli).
    throw new Error(
      "unpacking DynamoDB Local needs the npm package `tar` (an optional peer dependency of " +
        '@zae/limiter): npm install tar@"^7.5.23", or install @zae/limiter-cli',
      { cause: err },
    );
  });
  const base = resolve(out);
  await mkdir(base, { recursive: true });
  const input = createReadStream(tgz);
  const gunzip = createGunzip();
  input.on("error", (e) => gunzip.destroy(e));
  input.pipe(gunzip);

  let failure: unknown;
  let wake: (() => void) | undefined;
  const fail = (e: unknown) => {
    failure ??= e;
    wake?.();
  };
  const wait = (event: "drain" | "end") =>
    new Promise<void>((r) => {
      wake = r;
      parser.once(event, r);
      if (failure !== undefined) r();
    }).finally(() => (wake = undefined));

  let sawJar = false;
  let entries = 0;
  const writing = new Set<ReadEntry>();
  let writes: Promise<void> = Promise.resolve(); // one entry after the other; never rejects
  const parser = new Parser({
    strict: true, // a bad checksum, a truncated entry or an unknown format is an error
    onReadEntry(entry: ReadEntry) {
      let target: string | undefined;
      try {
        if (++entries > limits.maxEntries) {
          throw new Error(`the archive has more than ${limits.maxEntries} entries`);
        }
        target = targetOf(base, entry.path);
      } catch (e) {
        fail(e);
      }
      const to = target;
      const isFile = FILE_TYPES.has(entry.type);
      if (to === undefined || failure !== undefined || !(isFile || entry.type === "Directory")) {
        return void entry.resume(); // links and special files are not needed and not created
      }
      if (isFile && to === join(base, "DynamoDBLocal.jar")) sawJar = true;
      writes = writes.then(async () => {
        if (failure !== undefined) return void entry.resume();
        if (isFile) await writeEntry(entry, to, writing);
        else {
          await mkdir(to, { recursive: true });
          entry.resume();
        }
      }).catch((e) => {
        fail(e);
        entry.resume();
      });
    },
  });
  parser.on("error", fail);

  try {
    let bytes = 0;
    for await (const chunk of gunzip as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      if (bytes > limits.maxBytes) {
        throw new Error(`the archive unpacks to more than ${limits.maxBytes} bytes`);
      }
      if (!parser.write(chunk)) await wait("drain");
      if (failure !== undefined) throw failure;
    }
    // A tar archive is whole 512-byte blocks: a shorter tail is a header cut short.
    if (bytes % 512 !== 0) throw new Error(`unexpected end of archive after ${bytes} bytes`);
    const ended = wait("end");
    parser.end();
    await ended;
    await writes;
    if (failure !== undefined) throw failure;
  } catch (e) {
    fail(e);
    for (const entry of writing) entry.destroy(); // ends a write waiting for bytes that won't come
    await writes;
    throw new LocalDynamoError(
      "EXTRACT_FAILED",
      `Could not unpack DynamoDB Local: ${msg(e)}`,
      { cause: e },
    );
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  if (!sawJar) {
    throw new LocalDynamoError(
      "EXTRACT_FAILED",
      `Could not unpack DynamoDB Local: the tarball has no ${ARCHIVE_PREFIX}DynamoDBLocal.jar`,
    );
  }
}
