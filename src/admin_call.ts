/**
 * One admin call: its deadline (at least 10 s, plus the time the table set-up took), its retries
 * through the writer, and its failure as the limiter's error. Shared by every admin module.
 *
 * @module
 */

import type { BucketWriter } from "./engine/writer.ts";

/** Runs one admin call (see {@link adminCaller}). */
export type AdminCall = <T>(
  operation: string,
  fn: (signal: AbortSignal) => Promise<T>,
  timeoutMs?: number,
) => Promise<T>;

/**
 * The admin call runner of a limiter's parts.
 *
 * @example
 * ```ts ignore
 * const run = adminCaller(writer, ready, 2_000);
 * const entity = await run("getEntity", (signal) => backend.entities.get("key-1", signal));
 * ```
 */
export function adminCaller(
  writer: BucketWriter,
  ready: (deadline: number) => Promise<number>,
  timeoutMs: number,
): AdminCall {
  return async (operation, fn, callTimeoutMs) => {
    let deadline = Date.now() + (callTimeoutMs ?? Math.max(timeoutMs, 10_000));
    try {
      deadline += await ready(deadline); // the set-up may take longer than a call
      return await writer.call(undefined, fn, deadline, operation);
    } catch (err) {
      throw writer.fail(err, operation);
    }
  };
}
