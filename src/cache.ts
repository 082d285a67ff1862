/**
 * Small in-process caches: a size-bounded map with per-entry expiry, and an optional window past
 * expiry in which an entry may still be served stale while the caller refreshes it.
 *
 * @module
 */

/** Options of {@link TtlCache}. */
export interface TtlCacheOptions {
  /** Clock in ms. @default Date.now */
  now?: () => number;
  /**
   * How long past its TTL an entry is still returned by {@link TtlCache.lookup}, marked stale;
   * past `ttlMs + staleMs` it is gone. {@link TtlCache.get} never returns a stale entry.
   * @default 0
   */
  staleMs?: number;
}

/** What {@link TtlCache.lookup} found: the value, and whether it is still within its TTL. */
export interface CacheHit<V> {
  value: V;
  /** `false` once the TTL ran out (the entry is within its stale window). */
  fresh: boolean;
}

/**
 * A map that forgets its oldest entries past `maxEntries` and entries older than `ttlMs` (or
 * `ttlMs + staleMs`, for {@link TtlCache.lookup}).
 *
 * @example
 * ```ts
 * let now = 0;
 * const cache = new TtlCache<string, number>(100, 10, { now: () => now, staleMs: 100 });
 * cache.set("a", 1);
 * now = 150;
 * console.assert(cache.get("a") === undefined);
 * console.assert(cache.lookup("a")?.fresh === false);
 * now = 200;
 * console.assert(cache.lookup("a") === undefined);
 * ```
 */
export class TtlCache<K, V> {
  #map = new Map<K, { value: V; at: number }>();
  readonly #ttlMs: number;
  readonly #maxAgeMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  /**
   * @param ttlMs Lifetime of an entry (0: the cache holds nothing; Infinity: no expiry).
   * @param maxEntries Size bound.
   * @param options Clock and stale window.
   */
  constructor(ttlMs: number, maxEntries: number, options: TtlCacheOptions = {}) {
    const { now = Date.now, staleMs = 0 } = options;
    this.#ttlMs = ttlMs;
    this.#maxAgeMs = ttlMs + staleMs;
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  /** The cache's clock, ms. */
  now(): number {
    return this.#now();
  }

  /** The entry for `key` within its TTL, if any. */
  get(key: K): V | undefined {
    const hit = this.lookup(key);
    return hit?.fresh ? hit.value : undefined;
  }

  /** The entry for `key` within its TTL or its stale window, and whether it is fresh. */
  lookup(key: K): CacheHit<V> | undefined {
    const hit = this.#map.get(key);
    if (!hit) return undefined;
    const age = this.#now() - hit.at;
    if (!(age < this.#maxAgeMs)) {
      this.#map.delete(key);
      return undefined;
    }
    return { value: hit.value, fresh: age < this.#ttlMs };
  }

  /**
   * Stores `value`, aged from `at` (e.g. when the read that produced it started); a no-op when
   * the TTL is 0.
   */
  set(key: K, value: V, at: number = this.#now()): void {
    if (this.#ttlMs <= 0) return;
    this.#map.delete(key);
    this.#map.set(key, { value, at });
    if (this.#map.size > this.#maxEntries) {
      this.#map.delete(this.#map.keys().next().value as K);
    }
  }

  /** Forgets `key`. */
  delete(key: K): void {
    this.#map.delete(key);
  }

  /** Forgets every key for which `pred` holds. */
  deleteWhere(pred: (key: K) => boolean): void {
    for (const key of [...this.#map.keys()]) if (pred(key)) this.#map.delete(key);
  }

  /** Forgets everything. */
  clear(): void {
    this.#map.clear();
  }
}
