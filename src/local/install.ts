/**
 * Downloads AWS's DynamoDB Local (shipped inside the npm package `amplify-dynamodb-simulator`)
 * from the npm registry into a per-user cache, verified against the integrity pinned in the code
 * (and the registry's published `dist.integrity`), and re-verified before every start.
 *
 * This module installs; its parts are `release.ts` (the pinned release and its hashes),
 * `cache_dir.ts` (where the cache is), `download.ts` (fetch and check the tarball), `unpack.ts`
 * (extract the emulator) and `verify.ts` (hash the cached files before each start).
 *
 * @module
 */

import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import process from "node:process";
import { exists, msg } from "./_util.ts";
import { dynamoDBLocalDir, MARKER } from "./cache_dir.ts";
import { download } from "./download.ts";
import { LocalDynamoError } from "./errors.ts";
import type { DynamoDBLocalInstall, EnsureOptions } from "./install_options.ts";
import { takeLock } from "./lock.ts";
import {
  DYNAMODB_LOCAL_PACKAGE,
  DYNAMODB_LOCAL_PACKAGE_VERSION,
  DYNAMODB_LOCAL_VERSION,
} from "./release.ts";
import { extract } from "./unpack.ts";
import { fileHashes, verifyInstall } from "./verify.ts";

export { defaultCacheDir, dynamoDBLocalDir } from "./cache_dir.ts";
export { parseIntegrity } from "./download.ts";
export type { DownloadProgress, DynamoDBLocalInstall, EnsureOptions } from "./install_options.ts";
export {
  DYNAMODB_LOCAL_FILES_SHA256,
  DYNAMODB_LOCAL_INTEGRITY,
  DYNAMODB_LOCAL_PACKAGE,
  DYNAMODB_LOCAL_PACKAGE_VERSION,
  DYNAMODB_LOCAL_VERSION,
} from "./release.ts";

/**
 * Makes sure DynamoDB Local is in the cache and returns where. The first call downloads the
 * `amplify-dynamodb-simulator` tarball (about 57 MB) from the npm registry, checks it against
 * {@link DYNAMODB_LOCAL_INTEGRITY} and the registry's `dist.integrity` before unpacking anything,
 * unpacks only `package/emulator/**` and records the sha256 of every file. Later calls reuse the
 * cache (a marker file, written last, tells a complete one from a half-written one) after hashing
 * its files again (about 64 MB, 0.15 s) against {@link DYNAMODB_LOCAL_FILES_SHA256}: a changed,
 * added or removed file is refused with `INTEGRITY_MISMATCH`. Concurrent callers, even in other processes, are safe: each unpacks
 * into a temporary folder and renames it into place; a loser of that race uses the winner's copy.
 *
 * @throws {LocalDynamoError} `DOWNLOAD_FAILED`, `INTEGRITY_MISMATCH` or `EXTRACT_FAILED`.
 *
 * @example
 * ```ts
 * import { ensureDynamoDBLocal } from "./mod.ts";
 * const { dir, jar, downloaded } = await ensureDynamoDBLocal();
 * console.log(jar, downloaded ? "(downloaded)" : "(cached)");
 * ```
 */
export async function ensureDynamoDBLocal(opts: EnsureOptions = {}): Promise<DynamoDBLocalInstall> {
  const dir = dynamoDBLocalDir(opts);
  const jar = join(dir, "DynamoDBLocal.jar");
  if (await exists(join(dir, MARKER))) {
    await verifyInstall(dir, opts);
    return { dir, jar, downloaded: false };
  }

  const root = dirname(dir);
  try {
    await mkdir(root, { recursive: true });
  } catch (e) {
    throw new LocalDynamoError(
      "EXTRACT_FAILED",
      `Cannot create the DynamoDB Local cache folder ${root}: ${msg(e)}. ` +
        `Set ZAE_LIMITER_CACHE_DIR or pass cacheDir to use another folder.`,
      { cause: e },
    );
  }
  const release = await lock(root, join(dir, MARKER));
  let result: DynamoDBLocalInstall;
  if (release === "done") result = { dir, jar, downloaded: false };
  else {
    try {
      result = await install(opts, root, dir, jar);
    } finally {
      await release();
    }
  }
  await verifyInstall(dir, opts);
  return result;
}

async function install(
  opts: EnsureOptions,
  root: string,
  dir: string,
  jar: string,
): Promise<DynamoDBLocalInstall> {
  // Checked again under the lock: another process may have finished meanwhile.
  if (await exists(join(dir, MARKER))) return { dir, jar, downloaded: false };
  const staging = await mkdtemp(join(root, `.staging-${DYNAMODB_LOCAL_PACKAGE_VERSION}-`));
  try {
    const tgz = join(staging, "package.tgz");
    const integrity = await download(opts, tgz);
    const out = join(staging, "emulator");
    await extract(tgz, out);
    await writeFile(
      join(out, MARKER),
      JSON.stringify({
        package: `${DYNAMODB_LOCAL_PACKAGE}@${DYNAMODB_LOCAL_PACKAGE_VERSION}`,
        dynamodbLocal: DYNAMODB_LOCAL_VERSION,
        integrity,
        installedAt: new Date().toISOString(),
        files: await fileHashes(out),
      }) + "\n",
    );
    await publish(out, dir);
    return { dir, jar, downloaded: true };
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
    await sweepStale(root);
  }
}

/**
 * Takes the install lock, so that concurrent callers download once. Waits while another live
 * process holds it; returns `"done"` if that one finished the install meanwhile. A lock whose
 * process is gone, or older than 10 minutes, is broken. After 10 minutes of waiting it goes on
 * without the lock (the atomic rename still keeps it safe).
 */
async function lock(root: string, marker: string): Promise<"done" | (() => Promise<void>)> {
  const got = await takeLock(join(root, `.lock-${DYNAMODB_LOCAL_PACKAGE_VERSION}`), {
    waitMs: 600_000,
    staleMs: 600_000,
    done: () => exists(marker),
  }).catch(() => undefined);
  if (got?.kind === "done") return "done";
  return got?.kind === "held" ? got.release : async () => {};
}

/** Renames the finished `out` to `dir`; if another process got there first, keeps theirs. */
async function publish(out: string, dir: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await rename(out, dir);
      return;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "EPERM" && code !== "EACCES") {
        throw new LocalDynamoError(
          "EXTRACT_FAILED",
          `Cannot move DynamoDB Local into ${dir}: ${msg(e)}`,
          { cause: e },
        );
      }
      if (await exists(join(dir, MARKER))) return; // lost the race to a complete copy
      // An incomplete leftover (from an older, crashed writer): move it aside, then retry.
      const trash = `${dir}.stale-${process.pid}-${Date.now()}-${attempt}`;
      await rename(dir, trash).catch(() => {});
      await rm(trash, { recursive: true, force: true }).catch(() => {});
    }
  }
  if (!(await exists(join(dir, MARKER)))) {
    throw new LocalDynamoError("EXTRACT_FAILED", `Cannot move DynamoDB Local into ${dir}`);
  }
}

/** Removes staging folders left by crashed processes (older than an hour). */
async function sweepStale(root: string): Promise<void> {
  try {
    for (const name of await readdir(root)) {
      if (!name.startsWith(".staging-") && !name.includes(".stale-")) continue;
      const p = join(root, name);
      const s = await stat(p).catch(() => undefined);
      if (s && Date.now() - s.mtimeMs > 3_600_000) {
        await rm(p, { recursive: true, force: true }).catch(() => {});
      }
    }
  } catch {
    // best effort
  }
}
