/**
 * An entity's live buckets, read in one Query (`PK = ENTITY#{id}`, `SK` beginning `#BUCKET#`):
 * for each resource and limit, the tokens available now and the time until the bucket is full,
 * from the item alone with the exact integer math of `bucket.ts`. A sharded bucket's shards are
 * added up. What the item does not record (a quota's or a concurrent limit's capacity) is taken
 * from the limits the caller passes, else left out.
 *
 * A rate limit is shown under the spec its tat was written with (`k_n`, `C/R/P`): a limit changed
 * since is converted by the bucket's next write, not by this read.
 *
 * @module
 */

import * as math from "./bucket.ts";
import type { StoredBucket, StoredLimit } from "./bucket_items.ts";
import { queryPages } from "./calls.ts";
import { isConcurrentKey } from "./engine/concurrency.ts";
import { quotaOfKey, quotaWindow } from "./engine/quota.ts";
import { ValidationError } from "./errors.ts";
import * as keys from "./keys.ts";
import type { Limit } from "./limit.ts";
import { limiterState } from "./limiter_admin.ts";
import type { LimiterLimits } from "./limiter_limits.ts";
import { parseBucket } from "./repository.ts";
import { validateEntityId } from "./validate.ts";

/** One limit of one of an entity's buckets, as it stands at the read. */
export interface BucketLevel {
  /** The resource (a sharded bucket's shards are one entry). */
  resource: string;
  /** The limit's name. */
  limit: string;
  /** `rate` (a token bucket), `quota` or `concurrent`. */
  kind: "rate" | "quota" | "concurrent";
  /**
   * Whole tokens available now, rounded down (negative in debt; a top-up's credit included); for
   * a concurrent limit, the free slots. `undefined` when the capacity is not known (a quota or a
   * concurrent limit without its `Limit`).
   */
  available?: number;
  /** The capacity (a quota's amount, a concurrent limit's slots); `undefined` when not known. */
  capacity?: number;
  /**
   * Milliseconds until the bucket is full again (0 when full), rounded up: a quota's window end
   * when some of it is used, a concurrent limit's last slot expiry (a lease may end sooner).
   */
  msUntilFull: number;
  /** The items the bucket is split into (1 when unsharded). */
  shards: number;
}

/** What {@link readEntityBuckets} read. */
export interface EntityBuckets {
  /** The limiter's clock at the read, epoch ms. */
  nowMs: number;
  /** One entry per resource and limit, sorted by resource, then limit. */
  buckets: BucketLevel[];
}

/**
 * The levels of one bucket item at `nowMs`, one per limit it holds. `limits` (the bucket's
 * limits, when known) give what the item does not record: a quota's and a concurrent limit's
 * capacity. Integer arithmetic throughout; availability rounds down, waits round up.
 *
 * @example
 * ```ts
 * import { bucketLevels } from "./entity_buckets.ts";
 * // rpm: 100 per minute (`k_rpm` = C/R/P in thousandths and ms); 40 tokens taken at t = 0, so
 * // the tat is 40 000 thousandths × 60 000 ms. Read 6 s later: 10 tokens came back.
 * const item = { limits: new Map([["rpm", { key: "100000/100000/60000", tat: 40_000n * 60_000n }]]) };
 * const [rpm] = bucketLevels("api", item, 6_000n);
 * console.assert(rpm.available === 70 && rpm.capacity === 100 && rpm.msUntilFull === 18_000);
 * ```
 */
export function bucketLevels(
  resource: string,
  item: StoredBucket,
  nowMs: bigint,
  limits: readonly Limit[] = [],
): BucketLevel[] {
  const out: BucketLevel[] = [];
  for (const [name, st] of item.limits) {
    const level = limitLevel(st, nowMs, limits.find((l) => l.name === name));
    if (level) out.push({ resource, limit: name, ...level, shards: 1 });
  }
  return out;
}

function limitLevel(
  st: StoredLimit,
  nowMs: bigint,
  limit: Limit | undefined,
): Omit<BucketLevel, "resource" | "limit" | "shards"> | undefined {
  if (st.held !== undefined || st.slots !== undefined || isConcurrentKey(st.key)) {
    // Slots past their expiry count as free (the next acquire takes them back).
    let live = st.held ?? 0n;
    let last = -1n;
    for (const exp of st.slots?.values() ?? []) {
      if (exp < nowMs) live--;
      else if (exp > last) last = exp;
    }
    const capacity = limit?.concurrent ? limit.capacity : undefined;
    return {
      kind: "concurrent",
      available: capacity === undefined ? undefined : Math.max(0, capacity - Number(live)),
      capacity,
      msUntilFull: last < 0n || live <= 0n ? 0 : Number(last + 1n - nowMs),
    };
  }
  if (quotaOfKey(st.key) !== undefined) {
    const w = quotaWindow(st.key!, st, nowMs);
    const capacity = limit?.quota ? limit.capacity : undefined;
    return {
      kind: "quota",
      available: limit?.quota
        ? Number(math.floorDiv(limit.capacityMilli - w.used, 1000n))
        : undefined,
      capacity,
      msUntilFull: w.used > 0n ? Number(w.end - nowMs) : 0,
    };
  }
  const spec = st.key === undefined ? undefined : math.parseSpecKey(st.key);
  if (spec === undefined) return undefined; // a credit or a usage total alone: no bucket to show
  const milli = math.availableMilli(spec, st.tat, nowMs) + (st.credit ?? 0n);
  const fullAt = st.tat === undefined ? nowMs : math.tatToMs(spec, st.tat);
  return {
    kind: "rate",
    available: Number(math.floorDiv(milli, 1000n)),
    capacity: Number(spec.capacityMilli) / 1000,
    msUntilFull: fullAt > nowMs ? Number(fullAt - nowMs) : 0,
  };
}

/**
 * Adds up the shards of one bucket (entries of the same resource and limit): available tokens
 * and capacities are summed, the wait is the longest.
 */
function mergeShards(levels: BucketLevel[]): BucketLevel[] {
  const byKey = new Map<string, BucketLevel>();
  for (const l of levels) {
    const key = `${l.resource}\u0000${l.limit}`;
    const seen = byKey.get(key);
    if (seen === undefined) {
      byKey.set(key, { ...l });
      continue;
    }
    seen.shards++;
    seen.available = seen.available === undefined || l.available === undefined
      ? undefined
      : seen.available + l.available;
    seen.capacity = seen.capacity === undefined || l.capacity === undefined
      ? undefined
      : seen.capacity + l.capacity;
    seen.msUntilFull = Math.max(seen.msUntilFull, l.msUntilFull);
  }
  return [...byKey.values()].sort((a, b) =>
    a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : a.limit < b.limit ? -1 : 1
  );
}

/**
 * Every bucket of an entity, read in one strongly consistent Query of its partition (the bucket
 * items only: one read unit per 4 KB of them), at the limiter's clock. `limitsFor` gives a
 * resource's limits when a quota or concurrent limit needs its capacity (called at most once per
 * such resource). Needs a limiter on DynamoDB (not a custom `backend`).
 *
 * @throws {ValidationError} When `entityId` breaks the id rule, or the limiter has a custom backend.
 * @throws {RateLimiterUnavailable} When DynamoDB cannot be reached.
 * @throws {ConfigurationError} On a misconfiguration (a missing table, access denied).
 *
 * @example
 * ```ts ignore
 * const { buckets } = await readEntityBuckets(limiter, { entityId: "key-1" });
 * for (const b of buckets) console.log(b.resource, b.limit, `${b.available}/${b.capacity}`);
 * ```
 */
export async function readEntityBuckets(
  limiter: LimiterLimits,
  options: {
    entityId: string;
    limitsFor?: (resource: string) => Promise<readonly Limit[] | undefined>;
  },
): Promise<EntityBuckets> {
  const entityId = validateEntityId(options?.entityId);
  const { parts } = limiterState(limiter);
  if (!parts.dynamo) {
    throw new ValidationError(
      "limiter",
      "backend",
      "must talk to DynamoDB: a limiter with a custom backend has no bucket listing",
    );
  }
  const items = await parts.run("entityBuckets", async (signal) => {
    const found = [];
    for await (
      const page of queryPages(parts.client, {
        TableName: parts.tableName,
        KeyConditionExpression: "PK = :pk AND begins_with(SK, :b)",
        ExpressionAttributeValues: {
          ":pk": { S: parts.keys.entityPk(entityId) },
          ":b": { S: keys.BUCKET_PREFIX },
        },
        ConsistentRead: true,
      }, signal)
    ) found.push(...page);
    return found;
  });
  const nowMs = parts.clock();
  const now = BigInt(Math.floor(nowMs));
  const known = new Map<string, Promise<readonly Limit[] | undefined>>();
  const levels: BucketLevel[] = [];
  for (const item of items) {
    const stored = keys.resourceOfBucketSk(item.SK?.S ?? "");
    if (stored === undefined) continue;
    const resource = keys.parseShardResource(stored)?.resource ?? stored;
    const bucket = parseBucket(item);
    let limits: readonly Limit[] = [];
    const needs = [...bucket.limits.values()].some((st) =>
      st.held !== undefined || st.slots !== undefined || isConcurrentKey(st.key) ||
      quotaOfKey(st.key) !== undefined
    );
    if (needs && options.limitsFor) {
      if (!known.has(resource)) known.set(resource, options.limitsFor(resource));
      limits = (await known.get(resource)) ?? [];
    }
    levels.push(...bucketLevels(resource, bucket, now, limits));
  }
  return { nowMs, buckets: mergeShards(levels) };
}
