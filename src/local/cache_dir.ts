/**
 * Where DynamoDB Local is cached: the per-user cache folder, the install folder of the pinned
 * version, and the names of the files the install writes there.
 *
 * @module
 */

import { homedir } from "node:os";
import { join, resolve } from "node:path";
import process from "node:process";
import { env } from "./_util.ts";
import type { EnsureOptions } from "./install_options.ts";
import { DYNAMODB_LOCAL_PACKAGE_VERSION } from "./release.ts";

/** The install record, written last: its presence tells a complete install from a partial one. */
export const MARKER = ".zae-limiter-complete";
/** Written by DynamoDB Local into its working folder at run time (an id, no code). */
export const RUNTIME_FILE = "dynamodb-local-metadata.json";

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
