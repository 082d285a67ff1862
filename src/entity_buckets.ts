/**
 * An entity's live buckets: for each resource and limit, the tokens available now, the capacity
 * and the time until the bucket is full.
 *
 * A resource whose limits are stored at some level (the entity's for the resource, the entity's
 * for every resource, the resource's defaults, the system's) is read as `available()` reads it
 * (`BucketReader.levels` of `reads.ts`): the limits in force, the shards of the layout in force,
 * a tat written under another spec converted to the limit in force. A resource with no stored
 * limits (the app passes them in code) has only its bucket item's own spec: its unsharded item is
 * read with the exact integer math of `bucket.ts`, under the limits of the bucket's last write.
 *
 * @module
 */

import * as math from "./bucket.ts";
import type { StoredBucket, StoredLimit } from "./bucket_items.ts";
import { type Item, queryPages } from "./calls.ts";
import { isConcurrentKey } from "./engine/concurrency.ts";
import { quotaOfKey, quotaWindow } from "./engine/quota.ts";
import * as keys from "./keys.ts";
import { checkOpen, limiterState } from "./limiter_admin.ts";
import type { LimiterLimits } from "./limiter_limits.ts";
import { liveSlots } from "./reads.ts";
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
  /**
   * `true` when no limits are stored for the resource at any level: the level is read from the
   * bucket item under the limits of its last write (the ones the app passed in code then).
   */
  fromLastWrite?: true;
}

/** What {@link readEntityBuckets} read. */
export interface EntityBuckets {
  /** The limiter's clock at the read, epoch ms. */
  nowMs: number;
  /** One entry per resource and limit, sorted by resource, then limit. */
  buckets: BucketLevel[];
}

/**
 * The levels of one bucket item at `nowMs`, one per limit it holds, from the item alone: a rate
 * limit's spec is in the item; a quota's and a concurrent limit's capacity is not, so their
 * `available` and `capacity` stay unknown. Integer arithmetic throughout; availability rounds
 * down, waits round up.
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
): BucketLevel[] {
  const out: BucketLevel[] = [];
  for (const [name, st] of item.limits) {
    const level = limitLevel(st, nowMs);
    if (level) out.push({ resource, limit: name, ...level, shards: 1 });
  }
  return out;
}

function limitLevel(
  st: StoredLimit,
  nowMs: bigint,
): Omit<BucketLevel, "resource" | "limit" | "shards"> | undefined {
  if (st.held !== undefined || st.slots !== undefined || isConcurrentKey(st.key)) {
    // Slots past their expiry count as free (the next acquire takes them back).
    const live = liveSlots(st, nowMs);
    return {
      kind: "concurrent",
      msUntilFull: live.lastExpiry === undefined || live.count <= 0
        ? 0
        : Number(live.lastExpiry + 1n - nowMs),
    };
  }
  if (quotaOfKey(st.key) !== undefined) {
    const w = quotaWindow(st.key!, st, nowMs);
    return {
      kind: "quota",
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

/** The bucket items of an entity (`SK` beginning `#BUCKET#`), one strongly consistent Query. */
async function queryBucketItems(
  limiter: LimiterLimits,
  entityId: string,
): Promise<Item[]> {
  const { parts } = limiterState(limiter);
  if (!parts.dynamo) return []; // a custom backend lists no entity's buckets
  return await parts.run("entityBuckets", async (signal) => {
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
}

/** The resource of a bucket item and whether it is a shard's item. */
function resourceOfItem(item: Item) {
  const stored = keys.resourceOfBucketSk(item.SK?.S ?? "");
  if (stored === undefined) return undefined;
  const shard = keys.parseShardResource(stored);
  return { resource: shard?.resource ?? stored, shard: shard !== undefined };
}

/**
 * The resources an entity has a bucket item for (a sharded bucket's once), sorted: one Query of
 * its partition's bucket items on DynamoDB; none with a custom `backend` (it lists no entity's
 * buckets).
 *
 * @throws {ValidationError} When `entityId` breaks the id rule.
 * @throws {RateLimiterUnavailable} When DynamoDB cannot be reached.
 * @throws {ConfigurationError} On a misconfiguration (a missing table, access denied).
 *
 * @example
 * ```ts
 * import { listBucketResources } from "./entity_buckets.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * console.assert((await listBucketResources(createTestLimiter(), "key-1")).length === 0);
 * ```
 */
export async function listBucketResources(
  limiter: LimiterLimits,
  entityId: string,
): Promise<string[]> {
  const id = validateEntityId(entityId);
  checkOpen(limiterState(limiter));
  const items = await queryBucketItems(limiter, id);
  const found = new Set<string>();
  for (const item of items) {
    const r = resourceOfItem(item);
    if (r) found.add(r.resource);
  }
  return [...found].sort();
}

/**
 * Every bucket of an entity at the limiter's clock, one entry per resource and limit, sorted by
 * resource then limit. The resources: on DynamoDB those with a bucket item (one strongly
 * consistent Query of the partition's bucket items; a bucket never written is full, not shown);
 * with a custom `backend`, which lists no entity's buckets, those the entity stores limits for
 * (`listStoredLimits`). Each resource with stored limits at some level is read as
 * `limiter.available({ entityId, resource, useStoredLimits: true })` reads it (its limits resolved,
 * cached as for acquires, then one GetItem per shard of the layout in force), so the two agree;
 * the others from their unsharded item, under the limits of its last write (`fromLastWrite`),
 * where a quota's or a concurrent limit's capacity is not known and that limit is left out.
 * A disabled entity's buckets are read all the same.
 *
 * @throws {ValidationError} When `entityId` breaks the id rule.
 * @throws {RateLimiterUnavailable} When DynamoDB cannot be reached.
 * @throws {ConfigurationError} On a misconfiguration (a missing table, access denied).
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { readEntityBuckets } from "./entity_buckets.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * await limiter.setLimits({ entityId: "key-1", resource: "api", limits: [Limit.perMinute("rpm", 10)] });
 * await limiter.acquire({ entityId: "key-1", resource: "api", consume: { rpm: 4 } });
 * const { buckets: [rpm] } = await readEntityBuckets(limiter, { entityId: "key-1" });
 * console.assert(rpm.available === 6 && rpm.capacity === 10 && rpm.msUntilFull === 24_000);
 * ```
 */
export async function readEntityBuckets(
  limiter: LimiterLimits,
  options: { entityId: string },
): Promise<EntityBuckets> {
  const entityId = validateEntityId(options?.entityId);
  const state = limiterState(limiter);
  checkOpen(state);
  const { parts } = state;
  const items = await queryBucketItems(limiter, entityId);
  const nowMs = parts.clock();
  const now = BigInt(Math.floor(nowMs));
  const unsharded = new Map<string, Item>();
  const resources = new Set<string>();
  if (!parts.dynamo) {
    for (const s of await limiter.listStoredLimits({ entityId })) {
      if (s.resource !== undefined) resources.add(s.resource);
    }
  }
  for (const item of items) {
    const r = resourceOfItem(item);
    if (r === undefined) continue;
    resources.add(r.resource);
    if (!r.shard) unsharded.set(r.resource, item);
  }
  const per = await Promise.all([...resources].map(async (resource) => {
    const read = await parts.reader.levels({ entityId, resource }, now);
    if (read !== undefined) {
      return read.levels.map((l): BucketLevel => ({ resource, ...l }));
    }
    // No stored limits at any level: the item's own spec, of the unsharded layout (stored
    // limits alone carry a shard count).
    const item = unsharded.get(resource);
    if (item === undefined) return [];
    return bucketLevels(resource, parseBucket(item), now)
      .map((l): BucketLevel => ({ ...l, fromLastWrite: true }));
  }));
  return {
    nowMs,
    buckets: per.flat().sort((a, b) =>
      a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : a.limit < b.limit ? -1 : 1
    ),
  };
}
