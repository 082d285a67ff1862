/**
 * Shards of a bucket: a bucket split into `N` items, each a bucket of its own with `⌊C/N⌋` and
 * `⌊R/N⌋` (thousandths), so that one key or project takes up to `N` items' write ceilings. The
 * count is stored with the entity's limits; the writer, receipts, outbox, deny cache and batches
 * see a shard as just another bucket. See docs/hot-keys.md, "Shards".
 *
 * @module
 */

import * as math from "../bucket.ts";
import type { StoredShards } from "../entities.ts";
import { ValidationError } from "../errors.ts";
import { Limit } from "../limit.ts";

/** The largest shard count. */
export const MAX_SHARDS = 64;

/** Which shard of which bucket a target is. */
export interface ShardInfo {
  /** The bucket's resource (the target's own `resource` names the shard's item). */
  resource: string;
  index: number;
  count: number;
  /** When this layout took over: its items count as empty then. */
  sinceMs?: bigint;
  /** When this layout hands over to a newer one (its items are not written from then on). */
  untilMs?: bigint;
  /** Resource of the stored limits that hold the count (`undefined`: the entity-wide ones). */
  source?: string;
  /** The bucket's limits, before splitting. */
  whole: Limit[];
}

/** The resource part of shard `index` of `count`'s sort key; the resource itself when `count` is 1. */
export function shardResource(resource: string, index: number, count: number): string {
  return count === 1 ? resource : `${resource}#${index}/${count}`;
}

export { parseShardResource } from "../keys.ts";

/** A shard's limits: capacity and refill divided by `count`, rounded down (never more in all). */
export function shardLimits(limits: Limit[], count: number): Limit[] {
  if (count === 1) return limits;
  const n = BigInt(count);
  return limits.map((l) =>
    Limit.custom({
      name: l.name,
      capacity: Number(l.capacityMilli / n) / 1000,
      refillAmount: Number(l.refillMilli / n) / 1000,
      refillPeriodSeconds: l.refillPeriodSeconds,
      soft: l.soft,
    })
  );
}

/**
 * Checks a shard count, and that every limit still makes sense split that many ways: each shard
 * must hold at least one token and refill some. Throws `ValidationError` naming `field`.
 */
export function checkShards(field: string, count: unknown, limits: Limit[]): number {
  if (!(typeof count === "number" && Number.isInteger(count) && count >= 1)) {
    throw new ValidationError(field, count, `must be a whole number from 1 to ${MAX_SHARDS}`);
  }
  if (count > MAX_SHARDS) {
    throw new ValidationError(field, count, `must be a whole number from 1 to ${MAX_SHARDS}`);
  }
  const n = BigInt(count);
  // Every window of a schedule too: a shard must stay valid whichever applies.
  for (const l of limits.flatMap((x) => x.variants())) {
    if (l.quota && count > 1) {
      throw new ValidationError(
        field,
        count,
        `limit ${l.name} is a quota: a quota is never split over shards (its window is one count)`,
      );
    }
    if (l.concurrent && count > 1) {
      // (Automatic doubling checks this too, so it never splits such a bucket.)
      throw new ValidationError(
        field,
        count,
        `limit ${l.name} is a concurrent limit: its slots are one count, never split over shards`,
      );
    }
    const cap = l.capacityMilli / n;
    if (cap < 1000n || l.refillMilli / n === 0n) {
      const most = Number(cap) / 1000;
      throw new ValidationError(
        field,
        count,
        `splits limit ${l.name} (capacity ${l.capacity}, refill ${l.refillAmount}) into shards of ` +
          `capacity ${most} and refill ${Number(l.refillMilli / n) / 1000}: each shard must hold ` +
          `at least 1 token and refill more than 0 (the largest single request that passes is ` +
          `C/N = ${most}); use at most ${largestCount(l)} shards`,
      );
    }
  }
  return count;
}

/** The largest shard count that keeps a limit valid. */
export function largestCount(l: Limit): number {
  const byCap = l.capacityMilli / 1000n;
  const byRefill = l.refillMilli;
  const most = byCap < byRefill ? byCap : byRefill;
  return Number(most < BigInt(MAX_SHARDS) ? most : BigInt(MAX_SHARDS));
}

/**
 * The lowest tat an item of a shard layout can have: empty when the layout began, refilling from
 * then (`since + τ`). `undefined` for a bucket never resharded.
 */
export function startTat(spec: math.BucketSpec, sinceMs: bigint | undefined): bigint | undefined {
  return sinceMs === undefined ? undefined : math.scaledNow(spec, sinceMs) + math.tolerance(spec);
}

/** A shard layout: the count, and when it takes over and hands over (epoch ms). */
export interface Layout {
  count: number;
  sinceMs?: number;
  untilMs?: number;
}

/**
 * The layout in force at `nowMs` (the limiter's clock): a change of N is scheduled, so the
 * previous layout serves until the change's switch moment and the new one from it on.
 */
export function layoutAt(shards: StoredShards | undefined, nowMs: number): Layout {
  if (!shards) return { count: 1 };
  const { prev } = shards;
  if (prev && shards.sinceMs !== undefined && nowMs < shards.sinceMs) {
    return { count: prev.count, sinceMs: prev.sinceMs, untilMs: shards.sinceMs };
  }
  return { count: shards.count, sinceMs: shards.sinceMs };
}

/**
 * The stored setting after a change to `count` at `nowMs`: the layout in force now becomes the
 * previous one, and the new one takes over `delayMs` later. Throws `ValidationError` on
 * `field` while an earlier change is still pending (two schedules in caches at once could
 * overlap).
 */
export function scheduleChange(
  field: string,
  stored: StoredShards | undefined,
  count: number,
  nowMs: number,
  delayMs: number,
): StoredShards {
  const now = layoutAt(stored, nowMs);
  if (now.untilMs !== undefined) {
    throw new ValidationError(
      field,
      count,
      `cannot change the shard count while the change to ${stored!.count} is pending ` +
        `(until ${new Date(now.untilMs).toISOString()}); try again then`,
    );
  }
  return {
    count,
    sinceMs: nowMs + delayMs,
    prev: { count: now.count, ...(now.sinceMs === undefined ? {} : { sinceMs: now.sinceMs }) },
  };
}

/**
 * How long after a change of N the new layout takes over, ms: past the longest any process can
 * keep the old N cached (twice `limitsCacheTtlMs`), the clocks' disagreement (twice the
 * tolerance) and the longest the write that stores the change can take (`writeMs`).
 */
export function switchDelayMs(
  limitsCacheTtlMs: number,
  clockToleranceMs: number,
  writeMs: number,
): number {
  return Math.ceil(2 * limitsCacheTtlMs + 2 * clockToleranceMs + writeMs);
}

/** A random shard other than those in `tried`; `undefined` when every shard was tried. */
export function pickShard(
  count: number,
  tried: ReadonlySet<number> = new Set(),
): number | undefined {
  if (tried.size >= count) return undefined;
  const left = Array.from({ length: count }, (_, i) => i).filter((i) => !tried.has(i));
  return left[Math.floor(Math.random() * left.length)];
}
