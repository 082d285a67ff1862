/**
 * A lock file shared by processes: created with `O_EXCL` (flag `wx`), holding the owner's pid and
 * start time, and broken when that owner is gone (or its pid was reused), or when it is older than
 * `staleMs`.
 *
 * @module
 */

import { open, readFile, rm, stat } from "node:fs/promises";
import process from "node:process";
import { isProcessAlive, processStartTime } from "./pid.ts";

/** Options of {@link takeLock}. */
export interface LockOptions {
  /** How long to wait for another holder. */
  waitMs: number;
  /** A lock older than this is broken even if its holder still runs. @default Infinity */
  staleMs?: number;
  /** Checked while waiting: when it answers true, stop waiting (what the lock guards is done). */
  done?: () => Promise<boolean>;
}

/** What {@link takeLock} got. */
export type LockResult =
  | { kind: "held"; release: () => Promise<void> }
  | { kind: "done" }
  | { kind: "timeout"; holder: string };

function ownerLine(): string {
  return `${process.pid} ${processStartTime(process.pid) ?? ""}`.trim();
}

/** Whether the owner written in a lock file (`<pid> [<start time>]`) is gone. */
function ownerGone(text: string): boolean {
  const [pidText, startTime] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false; // half-written: judged by age
  if (pid === process.pid) return false;
  if (!isProcessAlive(pid)) return true;
  return startTime !== undefined && processStartTime(pid) !== undefined &&
    processStartTime(pid) !== startTime;
}

/**
 * Takes the lock `file`, waiting while a live process holds it.
 *
 * @example
 * ```ts ignore
 * const lock = await takeLock("/tmp/x.lock", { waitMs: 10_000 });
 * if (lock.kind === "held") await lock.release();
 * ```
 */
export async function takeLock(file: string, opts: LockOptions): Promise<LockResult> {
  const { waitMs, staleMs = Infinity } = opts;
  const started = Date.now();
  let holder = "";
  while (true) {
    try {
      const fh = await open(file, "wx");
      try {
        await fh.writeFile(`${ownerLine()}\n`);
      } finally {
        await fh.close();
      }
      return { kind: "held", release: () => rm(file, { force: true }).catch(() => {}) };
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    if (opts.done && await opts.done()) return { kind: "done" };
    const [text, st] = await Promise.all([
      readFile(file, "utf8").catch(() => undefined),
      stat(file).catch(() => undefined),
    ]);
    if (text === undefined || st === undefined) continue; // just released
    holder = text.trim();
    const age = Date.now() - st.mtimeMs;
    const stale = age > staleMs || ownerGone(text) || (holder === "" && age > 10_000);
    // Re-read just before breaking it, so that a lock taken meanwhile by another waiter is kept.
    if (stale && (await readFile(file, "utf8").catch(() => undefined)) === text) {
      await rm(file, { force: true }).catch(() => {});
      continue;
    }
    if (Date.now() - started >= waitMs) return { kind: "timeout", holder };
    await new Promise((r) => setTimeout(r, 100));
  }
}
