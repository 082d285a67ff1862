/**
 * The error type of the DynamoDB Local module.
 *
 * @module
 */

import { ZaeLimiterError } from "../errors.ts";

/**
 * Why a DynamoDB Local operation failed; see {@link LocalDynamoError.code}.
 *
 * @example
 * ```ts
 * import { type LocalDynamoErrorCode, startDynamoDBLocal } from "./mod.ts";
 * let code: LocalDynamoErrorCode | undefined;
 * try {
 *   await startDynamoDBLocal({ port: -1 });
 * } catch (e) {
 *   code = (e as { code?: LocalDynamoErrorCode }).code;
 * }
 * console.assert(code === "INVALID_OPTION");
 * ```
 */
export type LocalDynamoErrorCode =
  /** No Java runtime at `javaPath`, `$JAVA_HOME/bin/java` or `java` on the PATH. */
  | "JAVA_NOT_FOUND"
  /** The requested port is already taken. */
  | "PORT_IN_USE"
  /** The registry metadata or tarball could not be fetched. */
  | "DOWNLOAD_FAILED"
  /** The tarball does not match the registry's published `dist.integrity`. */
  | "INTEGRITY_MISMATCH"
  /** The tarball could not be unpacked into the cache. */
  | "EXTRACT_FAILED"
  /** The Java process exited (or failed) before DynamoDB Local answered. */
  | "EARLY_EXIT"
  /** DynamoDB Local did not answer within `startupTimeoutMs`. */
  | "STARTUP_TIMEOUT"
  /** A process could not be stopped, or is not DynamoDB Local. */
  | "STOP_FAILED"
  /** An option has an invalid value. */
  | "INVALID_OPTION";

/**
 * Thrown by the DynamoDB Local helpers when Java is missing, the port is taken, the download or its
 * integrity check fails, or the emulator does not come up. The message names the problem and what
 * to do; `code` tells the cases apart programmatically.
 *
 * @example
 * ```ts
 * import { LocalDynamoError, startDynamoDBLocal } from "./mod.ts";
 * try {
 *   await startDynamoDBLocal({ javaPath: "/nonexistent/java" });
 * } catch (e) {
 *   if (e instanceof LocalDynamoError && e.code === "JAVA_NOT_FOUND") console.error(e.message);
 *   else throw e;
 * }
 * ```
 */
export class LocalDynamoError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LocalDynamoError";
  /** A stable identifier of the failure, e.g. `"PORT_IN_USE"`. */
  readonly code: LocalDynamoErrorCode;

  /**
   * Creates the error.
   *
   * @param code Which failure this is.
   * @param message What went wrong and what to do about it.
   * @param options `cause`, when another error led to this one.
   */
  constructor(code: LocalDynamoErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
