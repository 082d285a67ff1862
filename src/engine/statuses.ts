/**
 * The statuses the planner reports after a write (admitted, or refused in shadow mode) and the
 * tat arithmetic they share with the planner (plan.ts): pure functions, no I/O.
 *
 * @module
 */

import * as math from "../bucket.ts";
import type { LimitStatus } from "../errors.ts";
import type { BucketWrite, StoredLimit } from "../repository.ts";
import { quotaStatus, quotaWindow } from "./quota.ts";
import { slotStatus } from "./concurrency.ts";
import { startTat } from "./shards.ts";
import type { LeaseTarget, Plan, Target } from "./types.ts";

/**
 * The tat to reason with: converted when stored under another spec, `undefined` when full; never
 * below `floor` (a shard layout's start: see {@link startTat}).
 */
export function effectiveTat(
  spec: math.BucketSpec,
  key: string,
  st: StoredLimit | undefined,
  nowMs: bigint,
  floor?: bigint,
): bigint | undefined {
  return atLeast(storedTat(spec, key, st, nowMs), floor);
}

function storedTat(
  spec: math.BucketSpec,
  key: string,
  st: StoredLimit | undefined,
  nowMs: bigint,
): bigint | undefined {
  if (st?.tat === undefined) return undefined;
  if (st.key === key) return st.tat;
  const from = st.key === undefined ? undefined : math.parseSpecKey(st.key);
  return from ? math.convertTat(from, st.tat, spec, nowMs) : undefined;
}

/**
 * The time to credit refill up to: an outgoing shard layout's items refill no further than its
 * hand-over (the new layout's items refill from then), so no refill counts twice.
 */
export function creditedNow(t: { untilMs?: bigint }, nowMs: bigint): bigint {
  return t.untilMs !== undefined && nowMs > t.untilMs ? t.untilMs : nowMs;
}

/** The larger of a tat and a floor (either may be missing). */
export function atLeast(tat: bigint | undefined, floor: bigint | undefined): bigint | undefined {
  if (floor === undefined) return tat;
  return tat === undefined || tat < floor ? floor : tat;
}

/** Thousandths as whole tokens, rounded down. */
export function tokens(milli: bigint): number {
  return Number(math.floorDiv(milli, 1000n));
}

/** The entity and resource a target's statuses name (a shard's resource for a shard). */
export function statusBase(t: Target): { entityId: string; resource: string } {
  return { entityId: t.entityId, resource: t.shard?.resource ?? t.resource };
}

/** The status of every limit of a target just after an admitted acquire. */
export function statusesAfter(
  t: Target,
  state: Map<string, StoredLimit>,
  milli: Map<string, bigint>,
  nowMs: bigint,
): LimitStatus[] {
  nowMs = creditedNow(t, nowMs);
  return t.limits.map((limit) => {
    if (limit.concurrent) {
      return slotStatus(statusBase(t), limit, state.get(limit.name)?.held ?? 0n, true);
    }
    if (limit.quota) {
      const w = quotaWindow(t.keys.get(limit.name)!, state.get(limit.name), nowMs);
      return quotaStatus(statusBase(t), limit, w, 0n, nowMs, true);
    }
    const spec = t.specs.get(limit.name)!;
    const tat = effectiveTat(
      spec,
      t.keys.get(limit.name)!,
      state.get(limit.name),
      nowMs,
      startTat(spec, t.sinceMs),
    );
    return {
      entityId: t.entityId,
      resource: t.shard?.resource ?? t.resource,
      limitName: limit.name,
      limit,
      available: tokens(
        math.availableMilli(spec, tat, nowMs) + (state.get(limit.name)?.credit ?? 0n),
      ),
      requested: Number(milli.get(limit.name) ?? 0n) / 1000,
      exceeded: false,
      retryAfterSeconds: 0,
      ...(limit.soft ? { soft: true as const } : {}),
    };
  });
}

/**
 * What a lease keeps of a target after its acquire landed, `state` being the bucket just after it;
 * in shadow mode with the statuses that would have refused it (see {@link shadowRefusals}).
 */
export function leaseTargetAfter(
  t: Target,
  state: Map<string, StoredLimit>,
  plan: Plan,
  milli: Map<string, bigint>,
  nowMs: bigint,
  shadow: boolean,
): LeaseTarget {
  const refusals = shadow ? shadowRefusals(t, state, plan.write, milli, nowMs) : [];
  const windows = new Map<string, bigint>();
  for (const l of t.limits) {
    const w = l.quota ? state.get(l.name)?.window : undefined;
    if (w !== undefined) windows.set(l.name, w);
  }
  // The slots this acquire took: named by its operation id, freed by the lease's commit.
  const slotNames = plan.write.ops.flatMap((o) => (o.kind === "slotTake" ? [o.name] : []));
  return {
    entityId: t.entityId,
    resource: t.resource,
    specs: t.specs,
    keys: t.keys,
    consumed: milli,
    statuses: statusesAfter(t, state, milli, nowMs),
    ...(windows.size > 0 ? { windows } : {}),
    ...(slotNames.length > 0 ? { slot: { id: plan.write.opId, names: slotNames } } : {}),
    ...(refusals.length > 0 ? { shadowRefusals: refusals } : {}),
  };
}

/**
 * Shadow mode: the statuses of the hard limits that would have refused an acquire written as
 * soft, told from the bucket's state just after the write (`after`, exact when DynamoDB returned
 * it) and the write's ops. A limit paid by its credit refused nothing. Empty when none would have.
 */
export function shadowRefusals(
  t: Target,
  after: Map<string, StoredLimit>,
  write: BucketWrite,
  milli: Map<string, bigint>,
  nowMs: bigint,
): LimitStatus[] {
  nowMs = creditedNow(t, nowMs);
  const out: LimitStatus[] = [];
  for (const limit of t.limits) {
    if (limit.soft || limit.concurrent) continue;
    if (limit.quota) {
      // Refused iff the window holds more than the capacity after the write.
      const st = after.get(limit.name);
      const m = milli.get(limit.name) ?? 0n;
      if (st?.key !== t.keys.get(limit.name) || (st?.tat ?? 0n) <= limit.capacityMilli) continue;
      const before = { ...st, tat: st!.tat! - m };
      const w = quotaWindow(t.keys.get(limit.name)!, before, nowMs);
      out.push(quotaStatus(statusBase(t), limit, w, m, nowMs, false));
      continue;
    }
    const op = write.ops.find((o) => o.name === limit.name);
    if (!op || op.kind === "credit") continue;
    const spec = t.specs.get(limit.name)!;
    const m = milli.get(limit.name) ?? 0n;
    const floor = startTat(spec, t.sinceMs);
    const tatAfter = effectiveTat(
      spec,
      t.keys.get(limit.name)!,
      after.get(limit.name),
      nowMs,
      floor,
    );
    const n = math.scaledNow(spec, nowMs);
    // The request fits iff max(tat, now) + cost ≤ now + τ, and the write left that sum.
    if (tatAfter === undefined || tatAfter <= n + math.tolerance(spec)) continue;
    const before = tatAfter - math.cost(spec, m);
    const wait = math.waitMs(spec, before, nowMs, m);
    out.push({
      entityId: t.entityId,
      resource: t.shard?.resource ?? t.resource,
      limitName: limit.name,
      limit,
      available: tokens(
        math.availableMilli(spec, before, nowMs) + (after.get(limit.name)?.credit ?? 0n),
      ),
      requested: Number(m) / 1000,
      exceeded: true,
      retryAfterSeconds: wait === undefined ? Infinity : Number(wait) / 1000,
    });
  }
  return out;
}
