/**
 * The in-memory backend's bucket items: their state, and the conditions and updates of bucket
 * writes and admin changes, evaluated exactly as DynamoDB evaluates the expressions that
 * `src/repository.ts` and `src/bucket_admin_store.ts` build.
 *
 * @module
 */

import type { AdminBucketChange, AdminLimitOp } from "../bucket_items.ts";
import type { BucketWrite, LimitOp, StoredBucket, StoredLimit } from "../repository.ts";

/** One limit of an item in memory: the stored attributes, and `u_n` (consumed, thousandths). */
export interface MemLimit extends StoredLimit {
  used: bigint;
}

/** A bucket item in memory. */
export interface MemBucket {
  limits: Map<string, MemLimit>;
  /** Receipts: operation id → the bound it carried (negative for a cancel mark). */
  receipts: Map<string, bigint>;
  writes: bigint;
  requests: bigint;
  writtenAt: bigint;
  ttl?: bigint;
}

/** A new, empty item. */
export function emptyBucket(): MemBucket {
  return { limits: new Map(), receipts: new Map(), writes: 0n, requests: 0n, writtenAt: 0n };
}

/** The condition of a write, as DynamoDB evaluates the expression built by the repository. */
export function writeHolds(b: MemBucket | undefined, w: BucketWrite): boolean {
  if (b?.receipts.has(w.opId)) return false;
  if (b !== undefined && b.writes >= w.maxWrites) return false;
  // `itemExists`: `wc < :wb`, false on a missing item.
  if (b === undefined && w.itemExists) return false;
  return w.ops.every((op: LimitOp) => {
    const l = b?.limits.get(op.name);
    const tat = l?.tat;
    const key = l?.key;
    switch (op.kind) {
      case "fromNow":
        // `known`: `k_n = :k AND t_n <= :n`, false on a missing attribute.
        return (!op.known && tat === undefined) ||
          (key === op.key && tat !== undefined && tat <= op.n);
      case "addBounded":
        return key === op.key && tat !== undefined && tat >= op.n && tat <= op.max;
      case "add":
        return key === op.key && tat !== undefined && tat >= op.n;
      case "sub":
        return key === op.key && tat !== undefined;
      case "cas":
        return op.expectTat === undefined
          ? tat === undefined
          : key === op.expectKey && tat === op.expectTat;
      case "credit":
        // `c_n >= :c`: false when the attribute is missing.
        return l?.credit !== undefined && l.credit >= op.min;
      case "quota": {
        const w = l?.window;
        if (!op.same) {
          // `attribute_not_exists(w_n) OR w_n < :lo OR k_n <> :k` (`<>` is false on a missing k_n).
          return w === undefined || w < op.lo || (key !== undefined && key !== op.key);
        }
        // `k_n = :k AND w_n >= :lo [AND t_n <= :max]` (false on a missing attribute).
        return key === op.key && w !== undefined && w >= op.lo &&
          (op.max === undefined || (tat !== undefined && tat <= op.max));
      }
      case "quotaSub":
        return key === op.key && l?.window === op.window && tat !== undefined && tat >= op.sub;
      case "slotTake":
        // `(attribute_not_exists(cc_n) OR cc_n < :max) AND s_n_{x} < :now` for each reclaimed.
        return (l?.held === undefined || l.held < op.max) &&
          op.reclaim.every((id) => {
            const exp = l?.slots?.get(id);
            return exp !== undefined && exp < op.now;
          });
      case "slotFree":
        return l?.slots?.has(op.id) === true;
    }
  });
}

/** Applies a write whose condition holds; returns the item. */
export function applyWrite(found: MemBucket | undefined, w: BucketWrite): MemBucket {
  const b = found ?? emptyBucket();
  for (const op of w.ops) {
    const l = b.limits.get(op.name) ?? { used: 0n };
    switch (op.kind) {
      case "fromNow":
      case "cas":
        l.tat = op.newTat;
        l.key = op.key;
        break;
      case "addBounded":
      case "add":
        l.tat = l.tat! + op.add;
        break;
      case "sub":
        l.tat = l.tat! - op.sub;
        break;
      case "credit":
        if (op.take > 0n) l.credit = l.credit! - op.take;
        break;
      case "quota":
        if (op.same) {
          l.tat = l.tat! + op.add;
        } else {
          l.window = op.start;
          l.tat = op.add;
          l.key = op.key;
        }
        break;
      case "quotaSub":
        l.tat = l.tat! - op.sub;
        break;
      case "slotTake":
        l.slots ??= new Map();
        for (const id of op.reclaim) l.slots.delete(id);
        l.slots.set(op.id, op.exp);
        // `ADD cc_n :d` (none when d = 0): a missing count starts at 0.
        if (op.reclaim.length !== 1) l.held = (l.held ?? 0n) + 1n - BigInt(op.reclaim.length);
        break;
      case "slotFree":
        l.slots!.delete(op.id);
        l.held = (l.held ?? 0n) - 1n;
        break;
    }
    b.limits.set(op.name, l);
  }
  for (const [name, d] of w.used) {
    const l = b.limits.get(name) ?? { used: 0n };
    l.used += d;
    b.limits.set(name, l);
  }
  b.receipts.set(w.opId, w.cancel ? -w.maxWrites : w.maxWrites);
  for (const id of w.sweep ?? []) b.receipts.delete(id);
  b.writes += 1n;
  b.requests += BigInt(w.requests);
  b.writtenAt = w.nowMs;
  if (w.ttlSec !== undefined && !(w.ttlIfMissing && b.ttl !== undefined)) b.ttl = w.ttlSec;
  return b;
}

/** The condition of one item's part of an admin change (bucket_admin_store.ts's expression). */
export function adminItemHolds(
  b: MemBucket | undefined,
  item: AdminBucketChange["items"][number],
): boolean {
  if (item.credit) {
    // `attribute_not_exists(ttl) OR ttl <= :ttl`, and each op's own condition.
    if (b?.ttl !== undefined && b.ttl > item.credit.ttlSec) return false;
    return item.ops.every((op) => adminHolds(b?.limits.get(op.name), op));
  }
  if (!item.exists) return b === undefined;
  return b !== undefined && item.ops.every((op) => adminHolds(b.limits.get(op.name), op));
}

function adminHolds(l: MemLimit | undefined, op: AdminLimitOp): boolean {
  switch (op.kind) {
    case "refill":
    case "credit":
      return true;
    case "give":
      return l?.key === op.key && l.tat !== undefined && l.tat >= op.min;
  }
}

/** Applies one item's part of an admin change whose conditions hold; returns the item. */
export function applyAdminItem(
  found: MemBucket | undefined,
  item: AdminBucketChange["items"][number],
): MemBucket | undefined {
  if (!found && !item.credit) return undefined;
  const b = found ?? emptyBucket();
  for (const op of item.ops) {
    const l = b.limits.get(op.name) ?? (op.kind === "credit" ? { used: 0n } : undefined);
    if (!l) continue;
    if (op.kind === "refill") {
      l.tat = undefined;
      l.window = undefined;
    } else if (op.kind === "give") l.tat = l.tat! - op.sub;
    else l.credit = (l.credit ?? 0n) + op.add;
    b.limits.set(op.name, l);
  }
  b.writes += item.credit?.writes ?? 1n;
  if (item.credit) b.ttl = item.credit.ttlSec;
  return b;
}

/** The item as a read returns it. */
export function viewBucket(b: MemBucket): StoredBucket {
  const limits = new Map<string, StoredLimit>();
  for (const [name, l] of b.limits) {
    const slots = l.slots !== undefined && l.slots.size > 0 ? new Map(l.slots) : undefined;
    if (
      l.tat !== undefined || l.key !== undefined || l.credit !== undefined ||
      l.held !== undefined || slots
    ) {
      limits.set(name, {
        tat: l.tat,
        key: l.key,
        ...(l.credit !== undefined ? { credit: l.credit } : {}),
        ...(l.window !== undefined ? { window: l.window } : {}),
        ...(l.held !== undefined ? { held: l.held } : {}),
        ...(slots ? { slots } : {}),
      });
    }
  }
  return { limits, ttl: b.ttl, receipts: new Map(b.receipts), writes: b.writes };
}
