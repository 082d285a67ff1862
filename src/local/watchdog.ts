/**
 * A supervisor that stops a child process when its parent dies, however the parent ends.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

/** A running watchdog; see {@link startWatchdog}. */
export interface Watchdog {
  /** Stops the watchdog without touching the process it guards. */
  cancel(): void;
}

// Polls, once a second, whether the parent ($2) is still alive (a zombie counts as dead); when it
// is gone, however it ended (signal, SIGKILL, crash), sends SIGTERM to the guarded pid ($1), then
// SIGKILL after 5 s. Only `sleep` forks. It ignores SIGINT and SIGHUP, so that a Ctrl-C or a closed
// terminal reaches the parent first. (A pipe whose EOF tells the parent's death was tried first:
// under Deno the child sometimes sees EOF while the parent still runs.)
const WATCHDOG_SCRIPT = `trap "" INT HUP
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  read -r st < "/proc/$1/stat" || return 1
  case "\${st##*) }" in Z*|X*) return 1;; esac
}
while alive "$2"; do sleep 1; done
kill -TERM "$1" 2>/dev/null || exit 0
i=0
while alive "$1"; do
  i=$((i+1))
  if [ "$i" -ge 50 ]; then kill -KILL "$1" 2>/dev/null; exit 0; fi
  sleep 0.1
done`;

/**
 * Starts a tiny `/bin/sh` supervisor that kills `pid` when this process dies, by any means,
 * SIGKILL included. None on Windows (no `/bin/sh`), where only the exit hook remains.
 */
export function startWatchdog(pid: number | undefined): Watchdog | undefined {
  if (pid === undefined || process.platform === "win32") return undefined;
  let dog: ChildProcess;
  try {
    dog = spawn(
      "/bin/sh",
      ["-c", WATCHDOG_SCRIPT, "zae-limiter-watchdog", String(pid), String(process.pid)],
      { stdio: "ignore", detached: true },
    );
  } catch {
    return undefined;
  }
  dog.on("error", () => {});
  dog.unref();
  return {
    cancel() {
      try {
        dog.kill("SIGKILL");
      } catch {
        // already gone
      }
    },
  };
}
