/**
 * Quotas in the planner: a quota limit `n` keeps, on the bucket item, the start of its window
 * (`w_n`, epoch ms), the amount used in it (`t_n`, thousandths) and its spec key (`k_n`,
 * `q:` and the reset's text form). A write either counts into the window the item holds
 * (`k_n = :k AND w_n >= :lo`) or starts a new one (`attribute_not_exists(w_n) OR w_n < :lo OR
 * k_n <> :k`): exactly one holds, so a window resets once. Pure; see docs/design.md, "Quotas".
 *
 * @module
 */

import { windowAt } from "../calendar/reset.ts";
import { parseReset, type QuotaReset } from "../calendar/text.ts";
import type { LimitStatus } from "../errors.ts";
import type { Limit } from "../limit.ts";
import type { LimitOp, StoredLimit } from "../repository.ts";
import type { LeaseTarget } from "./types.ts";

/** Prefix of a quota's spec key (`k_n`): never a token bucket's `C/R/P`. */
export const QUOTA_KEY_PREFIX = "q:";
const DAY = 86_400_000n;
/** A window ending further than this is `impossible` to wait for. */
const YEAR_MS = 366n * DAY;
/** The longest a calendar window can last (a DST hour added), by reset period. */
const LONGEST: Record<string, bigint> = {
  day: DAY + 3_600_000n,
  week: 7n * DAY + 3_600_000n,
  month: 31n * DAY + 3_600_000n,
};

/** The spec key of a quota limit. */
export function quotaKey(limit: Limit): string {
  return QUOTA_KEY_PREFIX + limit.resetText;
}

const parsed = new Map<string, QuotaReset | undefined>();

/** The reset a quota spec key names; `undefined` for any other key. */
export function quotaOfKey(key: string | undefined): QuotaReset | undefined {
  if (key === undefined || !key.startsWith(QUOTA_KEY_PREFIX)) return undefined;
  if (!parsed.has(key)) {
    if (parsed.size > 1000) parsed.clear();
    let q: QuotaReset | undefined;
    try {
      q = parseReset(key.slice(QUOTA_KEY_PREFIX.length));
    } catch {
      q = undefined;
    }
    parsed.set(key, q);
  }
  return parsed.get(key);
}

/** Calendar windows by reset text, kept until they end (`windowAt` is not cheap). */
const windows = new Map<string, { startMs: number; endMs: number }>();

function calendarWindow(q: QuotaReset & { kind: "calendar" }, text: string, nowMs: bigint) {
  const now = Number(nowMs);
  const known = windows.get(text);
  if (known && now >= known.startMs && now < known.endMs) return known;
  const w = windowAt(q.reset, now);
  if (windows.size > 1000) windows.clear();
  windows.set(text, w);
  return w;
}

/** A quota's window at `nowMs` as a writer sees it, from what it knows of the item. */
export interface QuotaWindow {
  /** The write counts into the item's window (else it starts a new one). */
  same: boolean;
  /** The window's start: the item's, or the new one's. */
  start: bigint;
  /** The window's end. */
  end: bigint;
  /** `w_n >= lo` iff the item's window is still current. */
  lo: bigint;
  /** Thousandths used in the window, as known. */
  used: bigint;
}

/** The window of the quota with key `key` at `nowMs`, given the item's known state `st`. */
export function quotaWindow(key: string, st: StoredLimit | undefined, nowMs: bigint): QuotaWindow {
  const q = quotaOfKey(key)!;
  const mine = st?.key === key && st.window !== undefined ? st.window : undefined;
  if (q.kind === "after") {
    const d = BigInt(q.durationMs);
    const lo = nowMs - d + 1n;
    if (mine !== undefined && mine >= lo) {
      return { same: true, start: mine, end: mine + d, lo, used: st?.tat ?? 0n };
    }
    return { same: false, start: nowMs, end: nowMs + d, lo, used: 0n };
  }
  const text = key.slice(QUOTA_KEY_PREFIX.length);
  const w = calendarWindow(q, text, nowMs);
  const lo = BigInt(w.startMs);
  if (mine !== undefined && mine >= lo) {
    // A process whose clock runs ahead may have opened the next window already: count there.
    const end = mine === lo ? BigInt(w.endMs) : BigInt(windowAt(q.reset, Number(mine)).endMs);
    return { same: true, start: mine, end, lo, used: st?.tat ?? 0n };
  }
  return { same: false, start: lo, end: BigInt(w.endMs), lo, used: 0n };
}

/**
 * An upper bound of when an item holding a quota under `key` may be forgotten, written at
 * `nowMs`: the longest window from now. `undefined` for a key that is no quota's.
 */
export function quotaKeepMs(key: string | undefined, nowMs: bigint): bigint | undefined {
  const q = quotaOfKey(key);
  if (!q) return undefined;
  return nowMs + (q.kind === "after" ? BigInt(q.durationMs) : LONGEST[q.reset.every]);
}

/** The write of `m` thousandths to a quota: into the known window or a new one. */
export function quotaOp(
  name: string,
  key: string,
  w: QuotaWindow,
  m: bigint,
  cap: bigint | undefined,
): LimitOp {
  // More than a hard quota's capacity never fits, not even a new window: a bound no item meets.
  const never = cap !== undefined && m > cap;
  return {
    kind: "quota",
    name,
    key,
    same: w.same || never,
    lo: w.lo,
    start: w.start,
    add: m,
    ...(cap !== undefined && (w.same || never) ? { max: cap - m } : {}),
  };
}

/** The status of a quota: what is left in the window, and the wait to its end when refused. */
export function quotaStatus(
  base: { entityId: string; resource: string },
  limit: Limit,
  w: QuotaWindow,
  m: bigint,
  nowMs: bigint,
  admitted: boolean,
): LimitStatus {
  const cap = limit.capacityMilli;
  const fits = w.used + m <= cap;
  const exceeded = !admitted && !fits && !limit.soft;
  let retry = 0;
  if (exceeded) {
    // Only a new window can admit it: at the window's end, unless it never can.
    retry = m > cap || w.end - nowMs > YEAR_MS ? Infinity : Number(w.end - nowMs) / 1000;
  }
  const left = cap - w.used - (admitted ? m : 0n);
  return {
    entityId: base.entityId,
    resource: base.resource,
    limitName: limit.name,
    limit,
    available: Number(left >= 0n ? left / 1000n : -((-left + 999n) / 1000n)),
    requested: Number(m) / 1000,
    exceeded,
    retryAfterSeconds: retry,
    ...(limit.soft ? { soft: true as const } : {}),
    window: {
      lengthSeconds: Number(w.end - w.start) / 1000,
      endsInSeconds: Number(w.end > nowMs ? w.end - nowMs : 0n) / 1000,
    },
  };
}

/**
 * A give-back of `sub` thousandths to the quota under `key`, into the window the tokens were
 * taken from (`window`); none when that window is over or not known (a new window is already
 * full). With `fresh` state, clamped to what the window holds.
 */
export function quotaGiveBack(
  name: string,
  key: string,
  window: bigint | undefined,
  st: StoredLimit | undefined,
  fresh: boolean,
  sub: bigint,
  nowMs: bigint,
): LimitOp | undefined {
  const current = quotaWindow(key, st, nowMs);
  const from = window ?? (current.same ? current.start : undefined);
  if (from === undefined || from < current.lo) return undefined; // that window is over
  if (fresh) {
    if (st?.key !== key || st.window !== from) return undefined;
    const held = st.tat ?? 0n;
    if (held < sub) sub = held;
  }
  if (sub <= 0n) return undefined;
  return { kind: "quotaSub", name, key, window: from, sub };
}

/**
 * A lease's adjustment of a quota at `nowMs` (the time it was made; `realNowMs` is the time it
 * is written, later for a write kept back by an outage). More: debited to the window of `nowMs`
 * without the capacity condition (an adjustment may go into debt), and dropped when that window
 * is over by `realNowMs`. Less: given back to the window the tokens were taken from, if current.
 */
export function planQuotaAdjust(
  t: LeaseTarget,
  name: string,
  key: string,
  st: StoredLimit | undefined,
  fresh: boolean,
  d: bigint,
  nowMs: bigint,
  realNowMs: bigint,
): LimitOp | undefined {
  if (d < 0n) {
    return quotaGiveBack(name, key, t.windows?.get(name), st, fresh, -d, realNowMs);
  }
  const w = quotaWindow(key, st, nowMs);
  if (w.end <= realNowMs) return undefined; // recorded for a window that is over: dropped
  return quotaOp(name, key, w, d, undefined);
}
