/**
 * Small in-process caches: a size-bounded map with per-entry expiry.
 *
 * @module
 */

/** A map that forgets its oldest entries past `maxEntries` and entries older than `ttlMs`. */
export class TtlCache<K, V> {
  #map = new Map<K, { value: V; expires: number }>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  /**
   * @param ttlMs Lifetime of an entry (0: the cache holds nothing; Infinity: no expiry).
   * @param maxEntries Size bound.
   * @param now Clock in ms.
   */
  constructor(ttlMs: number, maxEntries: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  /** The live entry for `key`, if any. */
  get(key: K): V | undefined {
    const hit = this.#map.get(key);
    if (!hit) return undefined;
    if (hit.expires <= this.#now()) {
      this.#map.delete(key);
      return undefined;
    }
    return hit.value;
  }

  /** Stores `value`; a no-op when the TTL is 0. */
  set(key: K, value: V): void {
    if (this.#ttlMs <= 0) return;
    this.#map.delete(key);
    this.#map.set(key, { value, expires: this.#now() + this.#ttlMs });
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
