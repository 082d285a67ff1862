/**
 * Downloads AWS's DynamoDB Local (shipped inside the npm package `amplify-dynamodb-simulator`)
 * from the npm registry into a per-user cache, verified against the integrity pinned in the code
 * (and the registry's published `dist.integrity`), and re-verified before every start.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import {
  access,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, resolve, sep } from "node:path";
import process from "node:process";
import { createGunzip } from "node:zlib";
import { LocalDynamoError } from "./errors.ts";
import { takeLock } from "./lock.ts";
import { readTar } from "./tar.ts";

/**
 * The npm package that ships `DynamoDBLocal.jar` (under `package/emulator/`).
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_PACKAGE, DYNAMODB_LOCAL_PACKAGE_VERSION } from "./install.ts";
 * // The registry metadata read for the tarball's address and integrity:
 * const metaUrl =
 *   `https://registry.npmjs.org/${DYNAMODB_LOCAL_PACKAGE}/${DYNAMODB_LOCAL_PACKAGE_VERSION}`;
 * console.assert(metaUrl.endsWith("/amplify-dynamodb-simulator/2.9.30"));
 * ```
 */
export const DYNAMODB_LOCAL_PACKAGE = "amplify-dynamodb-simulator";
/**
 * The pinned version of {@link DYNAMODB_LOCAL_PACKAGE}.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_PACKAGE_VERSION } from "./install.ts";
 * console.assert(/^\d+\.\d+\.\d+$/.test(DYNAMODB_LOCAL_PACKAGE_VERSION));
 * ```
 */
export const DYNAMODB_LOCAL_PACKAGE_VERSION = "2.9.30";
/**
 * The DynamoDB Local version inside that package.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_VERSION } from "./install.ts";
 * console.log(`DynamoDB Local ${DYNAMODB_LOCAL_VERSION}`);
 * ```
 */
export const DYNAMODB_LOCAL_VERSION = "1.25.1";
/**
 * The integrity of the pinned tarball, kept in the code so that neither a registry nor a proxy
 * can swap it: the download must hash to this, whatever the registry publishes.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_INTEGRITY } from "./install.ts";
 * console.assert(DYNAMODB_LOCAL_INTEGRITY.startsWith("sha512-"));
 * ```
 */
export const DYNAMODB_LOCAL_INTEGRITY =
  "sha512-xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6JqlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ==";
/**
 * The sha256 of the pinned version's unpacked files: the sha256 of the sorted `<sha256>  <path>`
 * lines of every file under the install folder but the marker and the metadata file DynamoDB
 * Local writes there. Checked before every start, so that a cached file changed after the install
 * is refused.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_FILES_SHA256 } from "./install.ts";
 * console.assert(/^[0-9a-f]{64}$/.test(DYNAMODB_LOCAL_FILES_SHA256));
 * ```
 */
export const DYNAMODB_LOCAL_FILES_SHA256 =
  "0d532737d6f490bd20bc410520d9e35c12da296ec25f93fa6af1d6750f73b128";

const DEFAULT_REGISTRY = "https://registry.npmjs.org/";
const MARKER = ".zae-limiter-complete";
const ARCHIVE_PREFIX = "package/emulator/";
/** Written by DynamoDB Local into its working folder at run time (an id, no code). */
const RUNTIME_FILE = "dynamodb-local-metadata.json";

/**
 * Options of {@link ensureDynamoDBLocal}.
 *
 * @example
 * ```ts ignore
 * import { ensureDynamoDBLocal, type EnsureOptions } from "./mod.ts";
 * // Through a company mirror, into a project-local cache.
 * const options: EnsureOptions = { registry: "https://npm.example.com/", cacheDir: ".cache" };
 * await ensureDynamoDBLocal(options);
 * ```
 */
export interface EnsureOptions {
  /**
   * The zae-limiter cache folder; DynamoDB Local goes in `<cacheDir>/dynamodb-local/<version>`.
   * @default `$ZAE_LIMITER_CACHE_DIR`, else `$XDG_CACHE_HOME/zae-limiter`, else
   *   `%LOCALAPPDATA%\zae-limiter` on Windows, else `~/.cache/zae-limiter`
   */
  cacheDir?: string;
  /**
   * The npm registry to download from.
   * @default `$NPM_CONFIG_REGISTRY`, else `$npm_config_registry`, else `https://registry.npmjs.org/`
   */
  registry?: string;
  /** The `fetch` to use (for tests or proxies). @default `globalThis.fetch` */
  fetch?: typeof fetch;
  /** Aborts the download. */
  signal?: AbortSignal;
  /**
   * The integrity (SRI) the tarball must have. Only for mirrors of a repackaged emulator and for
   * tests: with another value the cached files are checked against the manifest written at
   * install instead of {@link DYNAMODB_LOCAL_FILES_SHA256}.
   * @default {@link DYNAMODB_LOCAL_INTEGRITY}
   */
  integrity?: string;
  /** Called as the tarball downloads (only when it is not cached yet). */
  onProgress?: (progress: DownloadProgress) => void;
}

/**
 * How far a download of DynamoDB Local has got; see {@link EnsureOptions.onProgress}.
 *
 * @example
 * ```ts
 * import type { DownloadProgress } from "./install.ts";
 * const show = (p: DownloadProgress) =>
 *   `${(p.receivedBytes / 1e6).toFixed(1)} MB${p.done ? " done" : ""}`;
 * console.assert(show({ receivedBytes: 2e6, totalBytes: 57e6, done: false }) === "2.0 MB");
 * ```
 */
export interface DownloadProgress {
  /** Bytes received so far. */
  receivedBytes: number;
  /** The size announced by the registry (`content-length`), when it did. */
  totalBytes: number | undefined;
  /** True once, at the end of a complete download. */
  done: boolean;
}

/**
 * Where DynamoDB Local is installed.
 *
 * @example
 * ```ts
 * import { type DynamoDBLocalInstall, ensureDynamoDBLocal } from "./mod.ts";
 * const install: DynamoDBLocalInstall = await ensureDynamoDBLocal(); // downloads on first use
 * console.assert(install.jar.endsWith("DynamoDBLocal.jar") && install.jar.startsWith(install.dir));
 * ```
 */
export interface DynamoDBLocalInstall {
  /** The folder holding `DynamoDBLocal.jar` and `DynamoDBLocal_lib/`. */
  dir: string;
  /** The absolute path of `DynamoDBLocal.jar`. */
  jar: string;
  /** Whether this call downloaded it (false when the cache was reused). */
  downloaded: boolean;
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * The zae-limiter cache folder used when no `cacheDir` option is given.
 *
 * @example
 * ```ts
 * import { defaultCacheDir } from "./mod.ts";
 * console.log(defaultCacheDir()); // e.g. /home/me/.cache/zae-limiter
 * ```
 */
export function defaultCacheDir(): string {
  const own = env("ZAE_LIMITER_CACHE_DIR");
  if (own) return resolve(own);
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return join(resolve(xdg), "zae-limiter");
  const local = process.platform === "win32" ? env("LOCALAPPDATA") : undefined;
  if (local) return join(local, "zae-limiter");
  return join(homedir(), ".cache", "zae-limiter");
}

/**
 * The folder DynamoDB Local is (or would be) installed in, without touching the disk.
 *
 * @example
 * ```ts
 * import { dynamoDBLocalDir } from "./mod.ts";
 * console.log(dynamoDBLocalDir({ cacheDir: "/tmp/zl" })); // /tmp/zl/dynamodb-local/2.9.30
 * ```
 */
export function dynamoDBLocalDir(opts: Pick<EnsureOptions, "cacheDir"> = {}): string {
  const base = opts.cacheDir !== undefined ? resolve(opts.cacheDir) : defaultCacheDir();
  return join(base, "dynamodb-local", DYNAMODB_LOCAL_PACKAGE_VERSION);
}

function registryUrl(opts: EnsureOptions): string {
  const r = opts.registry ?? env("NPM_CONFIG_REGISTRY") ?? env("npm_config_registry") ??
    DEFAULT_REGISTRY;
  return r.endsWith("/") ? r : `${r}/`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

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

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

/** The sha256 of every file under `dir` but the marker, by path relative to `dir` (with `/`). */
async function fileHashes(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (path === MARKER || path === RUNTIME_FILE) continue;
      if (entry.isDirectory()) await walk(path);
      // The install never creates links or special files: one found here was put there later.
      else files[path] = entry.isFile() ? await sha256File(join(dir, path)) : "not-a-file";
    }
  };
  await walk("");
  return files;
}

function digestOf(files: Record<string, string>): string {
  const lines = Object.keys(files).sort().map((path) => `${files[path]}  ${path}\n`);
  return createHash("sha256").update(lines.join("")).digest("hex");
}

/**
 * Checks the cached files before each start: against {@link DYNAMODB_LOCAL_FILES_SHA256} for the
 * pinned tarball, else against the manifest written at install. About 64 MB are hashed (0.3 s).
 */
async function verifyInstall(dir: string, opts: EnsureOptions): Promise<void> {
  const expected = opts.integrity ?? DYNAMODB_LOCAL_INTEGRITY;
  const refuse = (why: string): never => {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Refusing to run the cached DynamoDB Local in ${dir}: ${why}. It may have been tampered ` +
        `with or damaged; delete that folder to download and verify it again.`,
    );
  };
  let marker: { integrity?: unknown; files?: unknown };
  try {
    marker = JSON.parse(await readFile(join(dir, MARKER), "utf8"));
  } catch (e) {
    return refuse(`its install record ${MARKER} is unreadable (${msg(e)})`);
  }
  if (marker.integrity !== expected) {
    return refuse(
      `it was installed from a tarball with integrity ${String(marker.integrity)}, ` +
        `not the expected ${expected}`,
    );
  }
  const recorded = typeof marker.files === "object" && marker.files !== null
    ? marker.files as Record<string, string>
    : undefined;
  let actual: Record<string, string>;
  try {
    actual = await fileHashes(dir);
  } catch (e) {
    return refuse(`its files cannot be read (${msg(e)})`);
  }
  const want = expected === DYNAMODB_LOCAL_INTEGRITY
    ? DYNAMODB_LOCAL_FILES_SHA256
    : recorded && digestOf(recorded);
  if (want === undefined) return refuse(`its install record has no file manifest`);
  if (digestOf(actual) === want) return;
  const changed = recorded
    ? [...new Set([...Object.keys(recorded), ...Object.keys(actual)])].sort()
      .filter((path) => recorded[path] !== actual[path])
    : [];
  return refuse(
    changed.length > 0
      ? `${changed.slice(0, 3).join(", ")}${changed.length > 3 ? ", …" : ""} changed since ` +
        `it was installed (sha256 differs, or the file was added or removed)`
      : `its files do not hash to the pinned sha256 ${want}`,
  );
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

function msg(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? ` (${e.cause.message})` : "";
    return e.message + cause;
  }
  return String(e);
}

async function get(url: string, opts: EnsureOptions, accept: string): Promise<Response> {
  const f = opts.fetch ?? globalThis.fetch;
  let res: Response;
  try {
    res = await f(url, { headers: { accept }, signal: opts.signal, redirect: "follow" });
  } catch (e) {
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: GET ${url} failed: ${msg(e)}. ` +
        `Check your network, or point NPM_CONFIG_REGISTRY (or the registry option) at a reachable npm registry.`,
      { cause: e },
    );
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: GET ${url} answered ${res.status} ${res.statusText}`
        .trim(),
    );
  }
  return res;
}

interface Sri {
  algorithm: "sha512" | "sha384" | "sha256";
  digest: string;
}

/**
 * Picks the strongest supported hash (sha512, sha384, sha256) of a Subresource Integrity string
 * such as npm's `dist.integrity`; `undefined` when it has none.
 *
 * @example
 * ```ts
 * import { parseIntegrity } from "./install.ts";
 * parseIntegrity("sha1-abc= sha512-xTee+Q=="); // { algorithm: "sha512", digest: "xTee+Q==" }
 * ```
 */
export function parseIntegrity(integrity: string): Sri | undefined {
  const rank = { sha256: 1, sha384: 2, sha512: 3 } as const;
  let best: Sri | undefined;
  for (const token of integrity.trim().split(/\s+/)) {
    const m = /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(token);
    if (!m) continue;
    const algorithm = m[1] as Sri["algorithm"];
    if (!best || rank[algorithm] > rank[best.algorithm]) best = { algorithm, digest: m[2] };
  }
  return best;
}

/** Downloads the tarball to `dest`, hashing as it goes; returns the verified integrity. */
async function download(opts: EnsureOptions, dest: string): Promise<string> {
  const registry = registryUrl(opts);
  const metaUrl = `${registry}${DYNAMODB_LOCAL_PACKAGE}/${DYNAMODB_LOCAL_PACKAGE_VERSION}`;
  const res = await get(metaUrl, opts, "application/json");
  let meta: { dist?: { tarball?: unknown; integrity?: unknown } };
  try {
    meta = await res.json();
  } catch (e) {
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: ${metaUrl} did not answer with JSON package metadata`,
      { cause: e },
    );
  }
  const tarball = meta?.dist?.tarball;
  const integrity = meta?.dist?.integrity;
  if (typeof tarball !== "string" || tarball === "") {
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: ${metaUrl} has no dist.tarball`,
    );
  }
  const sri = typeof integrity === "string" ? parseIntegrity(integrity) : undefined;
  if (!sri) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Refusing to use ${DYNAMODB_LOCAL_PACKAGE}@${DYNAMODB_LOCAL_PACKAGE_VERSION}: ${metaUrl} ` +
        `publishes no usable dist.integrity (sha256/384/512), so the download cannot be verified`,
    );
  }
  const pinnedText = opts.integrity ?? DYNAMODB_LOCAL_INTEGRITY;
  const pinned = parseIntegrity(pinnedText);
  if (!pinned) {
    throw new LocalDynamoError(
      "INVALID_OPTION",
      `Invalid integrity ${JSON.stringify(pinnedText)}: use a sha256, sha384 or sha512 SRI string`,
    );
  }
  if (pinned.algorithm === sri.algorithm && pinned.digest !== sri.digest) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Refusing to download ${DYNAMODB_LOCAL_PACKAGE}@${DYNAMODB_LOCAL_PACKAGE_VERSION}: ` +
        `${metaUrl} publishes ${sri.algorithm}-${sri.digest} but zae-limiter expects ` +
        `${pinnedText}. Check your registry or proxy.`,
    );
  }
  const tarballUrl = new URL(tarball, metaUrl).href;
  const body = await get(tarballUrl, opts, "application/octet-stream");
  const hash = createHash(sri.algorithm);
  const pinnedHash = createHash(pinned.algorithm);
  const totalBytes = Number(body.headers.get("content-length")) || undefined;
  let receivedBytes = 0;
  const fh = await open(dest, "w");
  try {
    if (body.body) {
      for await (const chunk of body.body) {
        hash.update(chunk);
        pinnedHash.update(chunk);
        await fh.write(chunk);
        receivedBytes += chunk.byteLength;
        opts.onProgress?.({ receivedBytes, totalBytes, done: false });
      }
    }
  } catch (e) {
    if (e instanceof LocalDynamoError) throw e;
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: reading ${tarballUrl} failed: ${msg(e)}`,
      { cause: e },
    );
  } finally {
    await fh.close();
  }
  const actual = hash.digest("base64");
  if (actual !== sri.digest) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Integrity check failed for ${tarballUrl}: the registry publishes ` +
        `${sri.algorithm}-${sri.digest} but the download hashes to ${sri.algorithm}-${actual}. ` +
        `Nothing was unpacked; retry, or check your registry or proxy.`,
    );
  }
  const pinnedActual = pinnedHash.digest("base64");
  if (pinnedActual !== pinned.digest) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Integrity check failed for ${tarballUrl}: zae-limiter expects ${pinnedText} but the ` +
        `download hashes to ${pinned.algorithm}-${pinnedActual}. Nothing was unpacked; check ` +
        `your registry or proxy.`,
    );
  }
  opts.onProgress?.({ receivedBytes, totalBytes, done: true });
  return pinnedText;
}

/** Unpacks `package/emulator/**` of the tarball into `out` (prefix stripped). */
async function extract(tgz: string, out: string): Promise<void> {
  const base = resolve(out);
  await mkdir(base, { recursive: true });
  const input = createReadStream(tgz);
  const gunzip = createGunzip();
  input.on("error", (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  let sawJar = false;
  try {
    for await (const entry of readTar(gunzip)) {
      const path = entry.path.replace(/^\.\//, "");
      if (!path.startsWith(ARCHIVE_PREFIX)) continue;
      const rel = path.slice(ARCHIVE_PREFIX.length).replace(/\/+$/, "");
      if (rel === "") continue;
      const parts = rel.split("/");
      if (parts.some((p) => p === ".." || p === "" || p === ".") || rel.includes("\\")) {
        throw new Error(`unsafe path in archive: ${JSON.stringify(entry.path)}`);
      }
      const target = join(base, ...parts);
      if (!target.startsWith(base + sep)) {
        throw new Error(`unsafe path in archive: ${JSON.stringify(entry.path)}`);
      }
      if (entry.type === "directory") {
        await mkdir(target, { recursive: true });
      } else if (entry.type === "file") {
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, entry.data, { mode: (entry.mode & 0o777) | 0o600 });
        if (rel === "DynamoDBLocal.jar") sawJar = true;
      } // links and special files are not needed and not created
    }
  } catch (e) {
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
