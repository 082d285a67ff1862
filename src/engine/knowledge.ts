/**
 * What a process knows of each bucket it wrote or read: lower bounds of its limits' tats (with the
 * spec each is written under), of its write count, and the TTL it was last seen with. Kept for the
 * most recently used buckets only.
 *
 * @module
 */

import { TtlCache } from "../cache.ts";
import type { StoredBucket, StoredLimit } from "../repository.ts";
import { bucketId, type CachedBucket } from "./types.ts";

/**
 * The process's knowledge of buckets, by bucket id (`entityId#resource`).
 *
 * @example
 * ```ts
 * const known = new BucketKnowledge(10);
 * const t = { entityId: "e1", resource: "api" };
 * known.remember(t, new Map([["rpm", { tat: 5n, key: "1/1/1" }]]), 3n, 100n);
 * known.remember(t, new Map(), 2n); // an older count is no news
 * console.assert(known.get("e1#api")?.writes === 3n && known.get("e1#api")?.ttl === 100n);
 * known.forget("e1");
 * console.assert(known.get("e1#api") === undefined);
 * ```
 */
export class BucketKnowledge {
  readonly #buckets: TtlCache<string, CachedBucket>;

  /** Remembers at most `maxBuckets` buckets (the least recently used go first). */
  constructor(maxBuckets: number) {
    this.#buckets = new TtlCache(Infinity, maxBuckets);
  }

  /** What is known of bucket `id`. */
  get(id: string): CachedBucket | undefined {
    return this.#buckets.get(id);
  }

  /** Forgets bucket `id` (the item is gone). */
  delete(id: string): void {
    this.#buckets.delete(id);
  }

  /** Forgets every bucket of an entity (its limits changed, or it was deleted). */
  forget(entityId: string): void {
    this.#buckets.deleteWhere((k) => k.startsWith(`${entityId}#`));
  }

  /**
   * Merges what a write or a read showed: its limits replace the known ones of the same name, the
   * write count only grows, and a TTL replaces the known one (none given keeps it).
   */
  remember(
    t: { entityId: string; resource: string },
    limits: Map<string, StoredLimit>,
    writes: bigint | undefined,
    ttl?: bigint,
  ): void {
    const id = bucketId(t);
    const known = this.#buckets.get(id);
    const merged = new Map(known?.limits ?? []);
    for (const [name, st] of limits) merged.set(name, st);
    const count = known?.writes === undefined || (writes !== undefined && writes > known.writes)
      ? writes
      : known.writes;
    this.#buckets.set(id, { limits: merged, writes: count, ttl: ttl ?? known?.ttl });
  }

  /** An item DynamoDB returned: its TTL is the truth (none when it has none). */
  sawTtl(id: string, item: Pick<StoredBucket, "ttl">): void {
    const known = this.#buckets.get(id);
    if (known) known.ttl = item.ttl;
  }
}
