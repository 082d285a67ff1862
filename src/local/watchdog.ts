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

// Both scripts: ignore SIGINT and SIGHUP, and `alive PID` (a zombie counts as dead).
const PRELUDE = `trap "" INT HUP
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  read -r st < "/proc/$1/stat" || return 1
  case "\${st##*) }" in Z*|X*) return 1;; esac
}`;

// Polls, once a second, whether the parent ($2) is still alive (a zombie counts as dead); when it
// is gone, however it ended (signal, SIGKILL, crash), sends SIGTERM to the guarded pid ($1), then
// SIGKILL after 5 s. Only `sleep` forks. It ignores SIGINT and SIGHUP, so that a Ctrl-C or a closed
// terminal reaches the parent first. (A pipe whose EOF tells the parent's death was tried first:
// under Deno the child sometimes sees EOF while the parent still runs.)
const WATCHDOG_SCRIPT = `${PRELUDE}
while alive "$2"; do sleep 1; done
kill -TERM "$1" 2>/dev/null || exit 0
i=0
while alive "$1"; do
  i=$((i+1))
  if [ "$i" -ge 50 ]; then kill -KILL "$1" 2>/dev/null; exit 0; fi
  sleep 0.1
done`;

// Linux: started before the child, so there is no moment when the child runs unguarded. It knows
// the child by a mark on its command line (`-Dzae.limiter.watchdog=<token>`, which Java ignores),
// not by pid. When the parent ($1) is gone it looks for processes whose command line matches $2
// (the mark as a regular expression with escaped dots, so that neither this shell's nor grep's own
// command line matches it) for 3 s, for a child exec'd just as the parent died; each it finds gets
// SIGTERM, and SIGKILL from 5 s on.
const MARKED_SCRIPT = `${PRELUDE}
while alive "$1"; do sleep 1; done
i=0
while [ "$i" -lt 80 ]; do
  found=$(grep -lsa -- "$2" /proc/[0-9]*/cmdline 2>/dev/null | sed 's|^/proc/||; s|/cmdline$||')
  if [ -n "$found" ]; then
    if [ "$i" -lt 50 ]; then kill -TERM $found 2>/dev/null; else kill -KILL $found 2>/dev/null; fi
  elif [ "$i" -ge 30 ]; then
    exit 0
  fi
  i=$((i+1))
  sleep 0.1
done`;

/** The system property that marks a guarded child's command line (see {@link watchdogMark}). */
const MARK_PROPERTY = "zae.limiter.watchdog";

/**
 * A mark for a child's command line that a watchdog started before it can find it by: a JVM
 * option (`-D…`, ignored by DynamoDB Local) with a random token. `undefined` where the watchdog
 * cannot read command lines (no `/proc`): there it guards the pid, once known.
 */
export function watchdogMark(): string | undefined {
  if (process.platform !== "linux") return undefined;
  const token = crypto.getRandomValues(new Uint32Array(2)).reduce(
    (a, x) => a + x.toString(16).padStart(8, "0"),
    "",
  );
  return `-D${MARK_PROPERTY}=${token}`;
}

/**
 * Starts a tiny `/bin/sh` supervisor that stops the child when this process dies, by any means,
 * SIGKILL included: the child with `mark` on its command line (see {@link watchdogMark}; the
 * watchdog may then start before the child), or else the process `pid`. None on Windows (no
 * `/bin/sh`), where only the exit hook remains.
 */
export function startWatchdog(target: { pid?: number; mark?: string }): Watchdog | undefined {
  if (process.platform === "win32") return undefined;
  const { pid, mark } = target;
  let args: string[];
  if (mark !== undefined) {
    const pattern = mark.replace(/^-D/, "").replaceAll(".", "\\.");
    args = ["-c", MARKED_SCRIPT, "zae-limiter-watchdog", String(process.pid), pattern];
  } else if (pid !== undefined) {
    args = ["-c", WATCHDOG_SCRIPT, "zae-limiter-watchdog", String(pid), String(process.pid)];
  } else return undefined;
  let dog: ChildProcess;
  try {
    dog = spawn("/bin/sh", args, { stdio: "ignore", detached: true });
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
