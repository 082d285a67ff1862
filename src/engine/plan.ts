/**
 * The planner: pure functions that turn what the process knows of a bucket into the write to send
 * (the idle, busy, add, sub and compare-and-swap expressions of docs/design.md) and the statuses
 * to report. No I/O.
 *
 * @module
 */

import * as math from "../bucket.ts";
import type { LimitStatus } from "../errors.ts";
import type { Limit } from "../limit.ts";
import type { BucketWrite, LimitOp, StoredLimit } from "../repository.ts";
import {
  planQuotaAdjust,
  quotaKeepMs,
  quotaKey,
  quotaOfKey,
  quotaOp,
  quotaStatus,
  quotaWindow,
} from "./quota.ts";
import { concurrentKey, isConcurrentKey, planSlot, planSlotFrees } from "./concurrency.ts";
import { type ShardInfo, shardLimits, shardResource, startTat } from "./shards.ts";
import { BUCKET_GRACE_SECONDS, type LeaseTarget, type Plan, type Target } from "./types.ts";
import { atLeast, creditedNow, effectiveTat, statusBase, tokens } from "./statuses.ts";

// The status builders moved to ./statuses.ts; re-exported so existing imports keep working.
export { effectiveTat, leaseTargetAfter, shadowRefusals, statusesAfter } from "./statuses.ts";

/**
 * The target of a bucket with `limits`; with `shard`, the target of that shard (its own item, its
 * limits divided by the count).
 */
export function makeTarget(
  entityId: string,
  resource: string,
  limits: Limit[],
  shard?: ShardInfo,
): Target {
  if (shard) {
    const t = makeTarget(
      entityId,
      shardResource(resource, shard.index, shard.count),
      shardLimits(limits, shard.count),
    );
    return { ...t, shard, sinceMs: shard.sinceMs, untilMs: shard.untilMs };
  }
  const specs = new Map<string, math.BucketSpec>();
  const keys = new Map<string, string>();
  for (const l of limits) {
    const spec = {
      capacityMilli: l.capacityMilli,
      refillMilli: l.refillMilli,
      periodMs: l.periodMs,
    };
    specs.set(l.name, spec);
    keys.set(l.name, l.quota ? quotaKey(l) : l.concurrent ? concurrentKey(l) : math.specKey(spec));
  }
  return { entityId, resource, limits, specs, keys };
}

export function amountsFor(t: Target, consume: Map<string, bigint>): Map<string, bigint> {
  return new Map(t.limits.map((l) => [l.name, consume.get(l.name) ?? 0n]));
}

export function planAcquire(
  t: Target,
  state: Map<string, StoredLimit> | undefined,
  fresh: boolean,
  milli: Map<string, bigint>,
  nowMs: bigint,
  opId: string,
  maxWrites: bigint,
  inFlight?: Map<string, bigint>,
  requests = 1,
  keepTtl?: bigint,
  shadow = false,
): Plan {
  nowMs = creditedNow(t, nowMs);
  const ops: LimitOp[] = [];
  const statuses: LimitStatus[] = [];
  const after = new Map<string, StoredLimit>();
  let maxFullMs = nowMs;
  for (const limit of t.limits) {
    const spec = t.specs.get(limit.name)!;
    const key = t.keys.get(limit.name)!;
    const m = milli.get(limit.name) ?? 0n;
    const st = state?.get(limit.name);
    if (limit.concurrent) {
      // A slot per acquire (see concurrency.ts); a lease's `consume` (no request) takes none.
      if (requests === 0) continue;
      const slot = planSlot(statusBase(t), limit, st, opId, nowMs, t.leaseTimeoutMs ?? 0n);
      ops.push(slot.op);
      statuses.push(slot.status);
      after.set(limit.name, slot.after);
      if (slot.exp > maxFullMs) maxFullMs = slot.exp;
      continue;
    }
    if (limit.quota) {
      // A quota: into the item's window or a new one (see quota.ts); no credit, no drip.
      const w = quotaWindow(key, st, nowMs);
      const hard = !(limit.soft || shadow);
      ops.push(quotaOp(limit.name, key, w, m, hard ? limit.capacityMilli : undefined));
      statuses.push(quotaStatus(statusBase(t), limit, w, m, nowMs, false));
      after.set(limit.name, { tat: w.used + m, key, window: w.start });
      if (w.end > maxFullMs) maxFullMs = w.end;
      continue;
    }
    const n = math.scaledNow(spec, nowMs);
    const c = math.cost(spec, m);
    // A shard layout's items start empty at its start: no tat below it counts, and the idle
    // expression writes from it (`s`) rather than from now while it lies ahead.
    const floor = startTat(spec, t.sinceMs);
    const s = floor !== undefined && floor > n ? floor : n;
    // This process's own writes still in flight will have raised the tat: guess busy, so
    // concurrent writers of one process don't all make the idle guess and collide. Only a
    // guess: the statuses below use what is known.
    const flying = fresh ? undefined : inFlight?.get(limit.name);
    // A soft limit (every limit in shadow mode) is debited whatever its balance: its busy write
    // has no upper bound (tat ≥ now, then tat += cost), so it may go into debt but never fails
    // for lack of tokens (see docs/design.md, "Soft limits").
    const soft = limit.soft || shadow;
    // The busy expression: tat ∈ [now, now + τ − cost], then tat += cost.
    const busy: LimitOp = soft ? { kind: "add", name: limit.name, key, n: s, add: c } : {
      kind: "addBounded",
      name: limit.name,
      key,
      n: s,
      max: n + math.tolerance(spec) - c,
      add: c,
    };
    const idle: LimitOp = { kind: "fromNow", name: limit.name, key, n: s, newTat: s + c };
    let tat: bigint | undefined;
    if (flying !== undefined && flying > n && (st?.tat === undefined || st.key === key)) {
      tat = atLeast(st?.tat, floor);
      ops.push(busy);
    } else if (st?.tat === undefined) {
      tat = floor;
      ops.push(
        fresh && st?.key !== undefined
          ? { kind: "cas", name: limit.name, key, newTat: s + c }
          : idle,
      );
    } else if (st.key !== key) {
      if (fresh) {
        tat = effectiveTat(spec, key, st, nowMs, floor);
        ops.push({
          kind: "cas",
          name: limit.name,
          key,
          expectKey: st.key,
          expectTat: st.tat,
          newTat: math.consumeTat(spec, tat, nowMs, m),
        });
      } else {
        // Stale cache under another spec: guess an idle bucket; a failed guess returns the truth.
        tat = floor;
        ops.push(idle);
      }
    } else {
      tat = atLeast(st.tat, floor);
      // Idle under the spec the writer saw: the shorter write that asks for that spec.
      ops.push(st.tat <= s ? { ...idle, known: true } : busy);
    }
    const ok = math.fits(spec, tat, nowMs, m);
    const credit = st?.credit ?? 0n;
    // The bucket first; the credit pays the whole amount when the bucket cannot (a guess from
    // what is known: a wrong one fails `c_n >= :c` and returns the truth).
    // A soft limit never spends credit: it is metered, not gated.
    const byCredit = !ok && !limit.soft && payable(credit, m);
    // More than the capacity: only the credit can ever pay it (and a range on the tat would be
    // empty), so a request sent anyway is the credit's (a soft one's goes into debt).
    const viaCredit = byCredit || (m > spec.capacityMilli && !soft);
    if (viaCredit) {
      ops[ops.length - 1] = { kind: "credit", name: limit.name, take: m, min: m > 0n ? m : 1n };
    }
    const wait = byCredit || limit.soft ? 0n : math.waitMs(spec, tat, nowMs, m);
    statuses.push({
      entityId: t.entityId,
      resource: t.shard?.resource ?? t.resource,
      limitName: limit.name,
      limit,
      available: tokens(math.availableMilli(spec, tat, nowMs) + credit),
      requested: Number(m) / 1000,
      exceeded: !ok && !byCredit && !limit.soft,
      retryAfterSeconds: wait === undefined ? Infinity : Number(wait) / 1000,
      ...(limit.soft ? { soft: true as const } : {}),
    });
    if (viaCredit) {
      after.set(limit.name, { tat: st?.tat, key: st?.key, credit: credit - m });
      // The tat stays as it is: the TTL covers it as known (the item's own TTL, kept by
      // `keepTtl`, covers what others wrote since).
      const fullMs = tat === undefined ? nowMs : math.tatToMs(spec, tat);
      if (fullMs > maxFullMs) maxFullMs = fullMs;
      continue;
    }
    const newTat = math.consumeTat(spec, tat, nowMs, m);
    after.set(
      limit.name,
      st?.credit === undefined ? { tat: newTat, key } : {
        tat: newTat,
        key,
        credit: st.credit,
      },
    );
    // Every tat this write can leave is at most now + τ: the TTL covers it. A soft write may
    // leave more (debt): as known; the writer raises the TTL if the answer shows more yet.
    const bound = n + math.tolerance(spec);
    const fullMs = math.tatToMs(spec, soft && newTat > bound ? newTat : bound);
    if (fullMs > maxFullMs) maxFullMs = fullMs;
  }
  const write: BucketWrite = {
    entityId: t.entityId,
    resource: t.resource,
    ops,
    // A concurrent limit counts slots, not tokens: no running total (as its give-backs).
    used: new Map([...milli].filter(([name]) => !isConcurrentKey(t.keys.get(name)))),
    requests,
    nowMs,
    opId,
    maxWrites,
    ttlSec: keep(math.ceilDiv(maxFullMs, 1000n) + BUCKET_GRACE_SECONDS, keepTtl),
  };
  // In shadow mode nothing refuses: the writer tells a would-be refusal from the item it wrote.
  return { write, statuses, exceeded: !shadow && statuses.some((s) => s.exceeded), after };
}

/** Whether a credit of `credit` pays `m` thousandths (a zero amount needs some credit). */
export function payable(credit: bigint, m: bigint): boolean {
  return credit >= (m > 0n ? m : 1n);
}

/**
 * A write's TTL on an item that holds credit: never below the TTL the item is known to have (a
 * top-up with credit raised it to keep the credit; see docs/design.md, "Credit").
 */
function keep(ttlSec: bigint, keepTtl: bigint | undefined): bigint {
  return keepTtl !== undefined && keepTtl > ttlSec ? keepTtl : ttlSec;
}

/**
 * The TTL a write to an item must keep: its known TTL when it is known to hold credit, else none
 * (the write sends today's TTL).
 */
export function creditTtl(
  limits: Map<string, StoredLimit> | undefined,
  ttl: bigint | undefined,
): bigint | undefined {
  if (ttl === undefined || !limits) return undefined;
  for (const st of limits.values()) if ((st.credit ?? 0n) > 0n) return ttl;
  return undefined;
}

/** Cas writes converting limits stored under another spec; `undefined` when none differ. */
export function planConversion(
  t: Target,
  state: Map<string, StoredLimit> | undefined,
  nowMs: bigint,
  opId: string,
  maxWrites: bigint,
  keepTtl?: bigint,
): BucketWrite | undefined {
  nowMs = creditedNow(t, nowMs);
  const ops: LimitOp[] = [];
  let maxFullMs = nowMs;
  for (const limit of t.limits) {
    const st = state?.get(limit.name);
    const spec = t.specs.get(limit.name)!;
    const key = t.keys.get(limit.name)!;
    // A quota converts itself: a write under another key starts a new window.
    if (limit.quota) {
      const keepMs = quotaKeepMs(key, nowMs)!;
      if (keepMs > maxFullMs) maxFullMs = keepMs;
      continue;
    }
    if (st?.tat === undefined || st.key === key) continue;
    const newTat = effectiveTat(spec, key, st, nowMs, startTat(spec, t.sinceMs)) ??
      math.scaledNow(spec, nowMs);
    ops.push({ kind: "cas", name: limit.name, key, expectKey: st.key, expectTat: st.tat, newTat });
    const fullMs = math.tatToMs(spec, newTat);
    if (fullMs > maxFullMs) maxFullMs = fullMs;
  }
  if (ops.length === 0) return undefined;
  return {
    entityId: t.entityId,
    resource: t.resource,
    ops,
    used: new Map(),
    requests: 0,
    nowMs,
    opId,
    maxWrites,
    ttlSec: keep(math.ceilDiv(maxFullMs, 1000n) + BUCKET_GRACE_SECONDS, keepTtl),
  };
}

export function planAdjust(
  t: LeaseTarget,
  state: Map<string, StoredLimit> | undefined,
  fresh: boolean,
  deltas: Map<string, bigint>,
  requests: number,
  nowMs: bigint,
  opId: string,
  maxWrites: bigint,
  keepTtl?: bigint,
  realNowMs = nowMs,
): { write: BucketWrite; expired: string[] } {
  nowMs = creditedNow(t, nowMs);
  // A closing write frees the lease's slots (those still there: see concurrency.ts).
  const { ops, expired } = planSlotFrees(t, state, fresh);
  const used = new Map<string, bigint>();
  let maxFullMs: bigint | undefined;
  // An item holding a quota lives until its window ends, whichever limits a write touches.
  for (const key of t.keys.values()) {
    const keepMs = quotaKeepMs(key, nowMs);
    if (keepMs !== undefined && (maxFullMs === undefined || keepMs > maxFullMs)) maxFullMs = keepMs;
  }
  for (const [name, d] of deltas) {
    const spec = t.specs.get(name);
    const key = t.keys.get(name);
    if (d === 0n || !spec || !key || isConcurrentKey(key)) continue;
    if (quotaOfKey(key)) {
      const op = planQuotaAdjust(t, name, key, state?.get(name), fresh, d, nowMs, realNowMs);
      if (op) {
        ops.push(op);
        used.set(name, d);
      }
      continue;
    }
    const now = math.scaledNow(spec, nowMs);
    const floor = startTat(spec, t.sinceMs);
    // From a shard layout's start while it lies ahead (see planAcquire).
    const n = floor !== undefined && floor > now ? floor : now;
    const c = math.cost(spec, d < 0n ? -d : d);
    const st = state?.get(name);
    used.set(name, d);
    if (d < 0n) {
      if (fresh && st?.tat === undefined) continue; // a full bucket: nothing to return
      if (fresh && st!.key !== key) {
        const tat = effectiveTat(spec, key, st, nowMs, floor)!;
        ops.push({
          kind: "cas",
          name,
          key,
          expectKey: st!.key,
          expectTat: st!.tat,
          newTat: tat - c,
        });
      } else {
        ops.push({ kind: "sub", name, key, sub: c });
      }
      continue;
    }
    let newTat: bigint;
    if (st?.tat !== undefined && st.key === key && st.tat >= n) {
      ops.push({ kind: "add", name, key, n, add: c });
      // Likely bound: the tat is rarely past now + τ; #raiseTtl mends the TTL when it is.
      const base = st.tat > now + math.tolerance(spec) ? st.tat : now + math.tolerance(spec);
      newTat = base + c;
    } else if (fresh && st?.tat !== undefined && st.key !== key) {
      const tat = effectiveTat(spec, key, st, nowMs, floor);
      newTat = math.consumeTat(spec, tat, nowMs, d);
      ops.push({ kind: "cas", name, key, expectKey: st.key, expectTat: st.tat, newTat });
    } else {
      newTat = n + c;
      ops.push(
        fresh && st?.tat === undefined && st?.key !== undefined
          ? { kind: "cas", name, key, newTat }
          : st?.tat !== undefined && st.key === key
          ? { kind: "fromNow", name, key, n, newTat, known: true }
          : { kind: "fromNow", name, key, n, newTat },
      );
    }
    const fullMs = math.tatToMs(spec, newTat);
    if (maxFullMs === undefined || fullMs > maxFullMs) maxFullMs = fullMs;
  }
  return {
    expired,
    write: {
      entityId: t.entityId,
      resource: t.resource,
      ops,
      used,
      requests,
      nowMs,
      opId,
      maxWrites,
      ttlSec: maxFullMs === undefined
        ? undefined
        : keep(math.ceilDiv(maxFullMs, 1000n) + BUCKET_GRACE_SECONDS, keepTtl),
    },
  };
}
