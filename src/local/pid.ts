/**
 * What a process id names now: alive or not, its start time, the ports it listens on.
 *
 * @module
 */

import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import process from "node:process";
import { LocalDynamoError } from "./errors.ts";

/** Throws `INVALID_OPTION` unless `pid` is a positive integer. */
export function validatePid(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new LocalDynamoError("INVALID_OPTION", `Invalid pid ${pid}: use a positive integer`);
  }
}

/**
 * Whether a process with this id exists (a zombie counts as gone, on Linux).
 *
 * @example
 * ```ts
 * import { isProcessAlive } from "./mod.ts";
 * console.log(isProcessAlive(12345));
 * ```
 */
export function isProcessAlive(pid: number): boolean {
  validatePid(pid);
  try {
    process.kill(pid, 0);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ESRCH") return false;
    if (code !== "EPERM") throw e;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return false;
  } catch {
    // no /proc (not Linux) or the process just went away
  }
  return true;
}

/**
 * Whether a process runs DynamoDB Local, judged by its command line; `undefined` when that cannot
 * be told (no `/proc`, i.e. not Linux) or the process is gone.
 *
 * @example
 * ```ts
 * import { isDynamoDBLocalProcess } from "./mod.ts";
 * if (isDynamoDBLocalProcess(12345) === false) console.log("pid 12345 is something else now");
 * ```
 */
export function isDynamoDBLocalProcess(pid: number): boolean | undefined {
  validatePid(pid);
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("DynamoDBLocal");
  } catch {
    return undefined;
  }
}

/**
 * When a process started, as `/proc/<pid>/stat` field 22 (clock ticks since boot): with the pid,
 * it names one process, even after the pid is reused. `undefined` when the process is gone or
 * there is no `/proc` (not Linux).
 *
 * @example
 * ```ts
 * import process from "node:process";
 * import { processStartTime } from "./mod.ts";
 * console.log(processStartTime(process.pid)); // e.g. "1234567"
 * ```
 */
export function processStartTime(pid: number): string | undefined {
  validatePid(pid);
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

/**
 * The TCP ports a process listens on (IPv4 and IPv6), read from `/proc`; `undefined` when that
 * cannot be told (no `/proc`, another user's process, or it is gone).
 *
 * @example
 * ```ts
 * import process from "node:process";
 * import { listeningPorts } from "./mod.ts";
 * console.log(listeningPorts(process.pid)); // e.g. [] or [8000]
 * ```
 */
export function listeningPorts(pid: number): number[] | undefined {
  validatePid(pid);
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return undefined;
  }
  const ports = new Set<number>();
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, field 9 is the socket's inode.
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9])) {
        ports.add(parseInt(f[1].slice(f[1].lastIndexOf(":") + 1), 16));
      }
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/**
 * What a recorded pid is now: `"running"` when it is the same process (same start time, when one
 * was recorded; DynamoDB Local by its command line otherwise) and listens on the recorded port;
 * `"gone"` when no such process is alive; `"other"` when the pid now belongs to another process,
 * or that process does not listen on the port. Where `/proc` is missing, only liveness is checked.
 *
 * @example
 * ```ts
 * import { identifyProcess } from "./mod.ts";
 * // e.g. from a state file written by `local up`:
 * const verdict = identifyProcess({ pid: 12345, startTime: "987654", port: 8000 });
 * if (verdict !== "running") console.log("the recorded DynamoDB Local is not running");
 * ```
 */
export function identifyProcess(
  recorded: { pid: number; startTime?: string; port?: number },
): "running" | "gone" | "other" {
  const { pid, startTime, port } = recorded;
  if (!isProcessAlive(pid)) return "gone";
  const now = processStartTime(pid);
  if (now === undefined) return "running"; // cannot tell more without /proc
  if (startTime !== undefined ? now !== startTime : isDynamoDBLocalProcess(pid) === false) {
    return "other";
  }
  if (port !== undefined) {
    const ports = listeningPorts(pid);
    if (ports !== undefined && !ports.includes(port)) return "other";
  }
  return "running";
}
