/**
 * Stopping DynamoDB Local: a child of this process, or any process by its id (checked to be
 * DynamoDB Local first, so that a reused pid is left alone).
 *
 * @module
 */

import type { ChildProcess } from "node:child_process";
import process from "node:process";
import { sleep, within } from "./_util.ts";
import { LocalDynamoError } from "./errors.ts";
import { identifyProcess, isDynamoDBLocalProcess, isProcessAlive, validatePid } from "./pid.ts";

/**
 * Options of {@link LocalDynamo.stop} and {@link stopByPid}.
 *
 * @example
 * ```ts
 * import { startDynamoDBLocal, type StopOptions } from "./mod.ts";
 * const ddb = await startDynamoDBLocal();
 * const options: StopOptions = { graceMs: 2_000 }; // SIGKILL after 2 s
 * await ddb.stop(options);
 * ```
 */
export interface StopOptions {
  /** How long to wait after SIGTERM before sending SIGKILL. @default 5000 */
  graceMs?: number;
  /** How long to wait in all for the process to be gone. @default graceMs + 5000 */
  timeoutMs?: number;
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`; throws if it outlives `timeoutMs`. */
export async function killChild(
  child: ChildProcess,
  exited: Promise<void>,
  opts: StopOptions = {},
) {
  const grace = opts.graceMs ?? 5_000;
  const total = opts.timeoutMs ?? grace + 5_000;
  if (child.pid === undefined || hasExited(child)) return;
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  if (await within(exited, grace)) return;
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  if (await within(exited, Math.max(total - grace, 0))) return;
  throw new LocalDynamoError(
    "STOP_FAILED",
    `DynamoDB Local (pid ${child.pid}) did not exit within ${total} ms of being stopped`,
  );
}

/**
 * Stops a DynamoDB Local by process id, e.g. one started by {@link startDetached} from another
 * process: SIGTERM, then SIGKILL after `graceMs`, then waits until it is gone. Resolves `false` if
 * no such process was running, or (given `startTime` or `port`, see {@link identifyProcess}) the
 * pid now names another process, which is then left alone. Refuses (unless `force`) when the pid now belongs to a process that
 * is not DynamoDB Local, as can happen when a stale pid was reused.
 *
 * @throws {LocalDynamoError} `STOP_FAILED` when it is not DynamoDB Local, cannot be signalled, or
 *   outlives `timeoutMs`; `INVALID_OPTION` for a pid that is not a positive integer.
 *
 * @example
 * ```ts
 * import { stopByPid } from "./mod.ts";
 * const pid = 12345; // e.g. read from the CLI's state file
 * if (!(await stopByPid(pid))) console.log("was not running");
 * ```
 */
export async function stopByPid(
  pid: number,
  opts: StopOptions & { force?: boolean; startTime?: string; port?: number } = {},
): Promise<boolean> {
  validatePid(pid);
  if (!isProcessAlive(pid)) return false;
  if (opts.startTime !== undefined || opts.port !== undefined) {
    // The recorded process is gone when its pid now names another one: never signal that.
    if (identifyProcess({ pid, startTime: opts.startTime, port: opts.port }) !== "running") {
      return false;
    }
  }
  if (!opts.force && isDynamoDBLocalProcess(pid) === false) {
    throw new LocalDynamoError(
      "STOP_FAILED",
      `Process ${pid} is not DynamoDB Local (its pid may have been reused); not stopping it`,
    );
  }
  const grace = opts.graceMs ?? 5_000;
  const total = opts.timeoutMs ?? grace + 5_000;
  const start = Date.now();
  const signal = (sig: "SIGTERM" | "SIGKILL") => {
    try {
      process.kill(pid, sig);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "ESRCH") return;
      throw new LocalDynamoError(
        "STOP_FAILED",
        `Cannot stop process ${pid}: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
  };
  signal("SIGTERM");
  let killed = false;
  while (isProcessAlive(pid)) {
    const waited = Date.now() - start;
    if (!killed && waited >= grace) {
      signal("SIGKILL");
      killed = true;
    }
    if (waited >= total) {
      throw new LocalDynamoError(
        "STOP_FAILED",
        `Process ${pid} did not exit within ${total} ms of being stopped`,
      );
    }
    await sleep(50);
  }
  return true;
}
