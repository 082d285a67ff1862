/**
 * Concurrency limits in the planner: a concurrent limit `n` keeps, on the bucket item, its count
 * of slots taken (`cc_n`) and one attribute per slot (`s_n_{opId}`, the slot's expiry in epoch
 * ms). An acquire takes a slot (`cc_n < :max`), reclaiming in the same write the expired slots it
 * knows of; commit and rollback free it. Pure; see docs/design.md, "Concurrency limits".
 *
 * @module
 */

import { LeaseExpiredError, type LimitStatus, ValidationError } from "../errors.ts";
import type { Limit } from "../limit.ts";
import type { LimitOp, StoredLimit } from "../repository.ts";
import type { LeaseTarget, Target } from "./types.ts";

/** Prefix of a concurrent limit's spec key (never stored: its slots have no spec). */
export const CONCURRENT_KEY_PREFIX = "n:";
/** Expired slots one write reclaims at most (keeps the request small). */
export const RECLAIM_PER_WRITE = 8;
/** The longest `leaseTimeoutMs`: every rate-limit write's TTL (an hour past now) covers a slot. */
export const MAX_LEASE_TIMEOUT_MS = 3_600_000;

/** The spec key of a concurrent limit. */
export function concurrentKey(limit: Limit): string {
  return `${CONCURRENT_KEY_PREFIX}${limit.capacity}`;
}

/** Whether a spec key is a concurrent limit's. */
export function isConcurrentKey(key: string | undefined): boolean {
  return key !== undefined && key.startsWith(CONCURRENT_KEY_PREFIX);
}

/** The slot an acquire takes: its write, its status, and the state just after it. */
export function planSlot(
  base: { entityId: string; resource: string },
  limit: Limit,
  st: StoredLimit | undefined,
  opId: string,
  nowMs: bigint,
  timeoutMs: bigint,
): { op: LimitOp; status: LimitStatus; after: StoredLimit; exp: bigint } {
  const max = BigInt(limit.capacity);
  const reclaim: string[] = [];
  for (const [id, exp] of st?.slots ?? []) {
    if (exp < nowMs && reclaim.length < RECLAIM_PER_WRITE) reclaim.push(id);
  }
  const k = BigInt(reclaim.length);
  const live = (st?.held ?? 0n) - k;
  const exp = nowMs + timeoutMs;
  const slots = new Map([...(st?.slots ?? [])].filter(([id]) => !reclaim.includes(id)));
  slots.set(opId, exp);
  return {
    op: { kind: "slotTake", name: limit.name, id: opId, exp, max: max + k, now: nowMs, reclaim },
    status: slotStatus(base, limit, live, false),
    after: { held: live + 1n, slots },
    exp,
  };
}

/**
 * A concurrent limit's status with `live` slots taken (before the acquire unless `admitted`).
 * A full one's wait is unknown (a slot frees when a lease ends): `retryAfterSeconds` is 0.
 */
export function slotStatus(
  base: { entityId: string; resource: string },
  limit: Limit,
  live: bigint,
  admitted: boolean,
): LimitStatus {
  const max = BigInt(limit.capacity);
  const left = max - live;
  return {
    entityId: base.entityId,
    resource: base.resource,
    limitName: limit.name,
    limit,
    available: Number(left > 0n ? left : 0n),
    requested: admitted ? 0 : 1,
    exceeded: !admitted && left <= 0n,
    retryAfterSeconds: 0,
  };
}

/**
 * The slot frees of a closing write of `t`, given the item's known state (`fresh`: read from the
 * item just now); the limits whose slot is gone (taken back after expiry) when known.
 */
export function planSlotFrees(
  t: LeaseTarget,
  state: Map<string, StoredLimit> | undefined,
  fresh: boolean,
): { ops: LimitOp[]; expired: string[] } {
  const ops: LimitOp[] = [];
  const expired: string[] = [];
  if (!t.slot) return { ops, expired };
  for (const name of t.slot.names) {
    if (fresh && !state?.get(name)?.slots?.has(t.slot.id)) expired.push(name);
    else ops.push({ kind: "slotFree", name, id: t.slot.id });
  }
  return { ops, expired };
}

/** The error of a closing write that found its slots gone. */
export function leaseExpired(t: LeaseTarget, names: string[]): LeaseExpiredError {
  return new LeaseExpiredError(t.entityId, t.resource, names);
}

/**
 * Refuses, before any write, a call with a concurrent limit that cannot hold a slot exactly:
 * without `leaseTimeoutMs`, in shadow mode, from token batches, across several items (`also`,
 * `cascade` to a parent's limits) or on a sharded bucket.
 */
export function checkConcurrent(
  targets: Target[],
  how: { leaseTimeoutMs?: number; batch: boolean; shadow: boolean },
): void {
  const c = targets.flatMap((t) => t.limits.filter((l) => l.concurrent));
  if (c.length === 0) return;
  const name = c[0].name;
  const refuse = (field: string, value: unknown, why: string) => {
    throw new ValidationError(field, value, `cannot hold concurrent limit ${name}: ${why}`);
  };
  if (how.leaseTimeoutMs === undefined) {
    refuse("leaseTimeoutMs", undefined, "required with a concurrent limit");
  }
  if (how.shadow) refuse("shadow", true, "shadow mode never refuses, a slot must");
  if (how.batch) refuse("batch", true, "a concurrent limit is never served from token batches");
  if (targets.length > 1) {
    refuse("targets", targets.length, "a concurrent limit needs one item (no also, no cascade)");
  }
  // Stored limits always carry a layout, of one item unless split; only a split one has no count.
  const shard = targets[0].shard;
  if (shard && shard.count > 1) refuse("shards", shard.count, "a sharded bucket has no count");
}
