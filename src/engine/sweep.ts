/**
 * Receipt sweeping: per bucket, the receipts (`r_{opId}`) that no copy of their operation can need
 * any more, removed a few at a time by this process's next writes to the bucket (see
 * docs/design.md, "Exactly once").
 *
 * @module
 */

import { TtlCache } from "../cache.ts";
import type { StoredBucket } from "../repository.ts";

/** Receipts removed by one write at most (keeps the request small). */
const SWEEP_PER_WRITE = 4;
/** Receipts waiting to be removed per bucket at most (the rest go once their bound has passed). */
const MAX_SWEEP = 64;

/**
 * The receipts waiting to be removed, per bucket id. A write claims a few; writes in flight at the
 * same time on one bucket claim different ones (else a hot bucket's writes all remove the same
 * few and the rest pile up on the item), and a write that did not land gives its claim back.
 *
 * @example
 * ```ts
 * const sweep = new ReceiptSweep(100);
 * sweep.add("b1", "op1");
 * sweep.add("b1", "op2");
 * const first = sweep.claim("b1", undefined, 1);
 * const second = sweep.claim("b1", undefined, 1);
 * console.assert(first?.[0] === "op1" && second?.[0] === "op2");
 * sweep.settle("b1", first, true); // removed by a write that landed
 * sweep.settle("b1", second, false); // refused: op2 waits again
 * console.assert(sweep.claim("b1")?.join() === "op2");
 * ```
 */
export class ReceiptSweep {
  readonly #waiting: TtlCache<string, Set<string>>;
  /** Per bucket, the receipts claimed by writes in flight. */
  readonly #claimed = new Map<string, Set<string>>();

  /** Remembers at most `maxBuckets` buckets (the least recently used go first). */
  constructor(maxBuckets: number) {
    this.#waiting = new TtlCache(Infinity, maxBuckets);
  }

  /**
   * Takes up to `max` receipts for a write to `bucket` to remove, never `except` (the write's own);
   * `undefined` when none waits.
   * Give them back with {@link settle} once the write is answered.
   */
  claim(bucket: string, except?: string, max = SWEEP_PER_WRITE): string[] | undefined {
    const waiting = this.#waiting.get(bucket);
    if (!waiting || waiting.size === 0) return undefined;
    const ids: string[] = [];
    for (const id of waiting) {
      if (ids.length >= max) break;
      if (id !== except) ids.push(id);
    }
    if (ids.length === 0) return undefined;
    let claimed = this.#claimed.get(bucket);
    if (!claimed) this.#claimed.set(bucket, claimed = new Set());
    for (const id of ids) {
      waiting.delete(id);
      claimed.add(id);
    }
    return ids;
  }

  /** The write that claimed `opIds` is answered: they are gone if it `landed`, else they wait. */
  settle(bucket: string, opIds: string[] | undefined, landed: boolean): void {
    if (!opIds) return;
    const claimed = this.#claimed.get(bucket);
    for (const id of opIds) claimed?.delete(id);
    if (claimed?.size === 0) this.#claimed.delete(bucket);
    if (!landed) { for (const id of opIds) this.add(bucket, id); }
  }

  /** Notes a receipt that no copy can need any more, to remove with a later write. */
  add(bucket: string, opId: string): void {
    if (this.#claimed.get(bucket)?.has(opId)) return;
    let waiting = this.#waiting.get(bucket);
    if (!waiting) this.#waiting.set(bucket, waiting = new Set());
    if (waiting.size < MAX_SWEEP) waiting.add(opId);
  }

  /** Receipts whose bound `item` has passed: no copy of their operation can land any more. */
  observe(bucket: string, item: StoredBucket): void {
    if (!item.receipts || item.writes === undefined) return;
    for (const [opId, bound] of item.receipts) {
      if ((bound < 0n ? -bound : bound) <= item.writes) this.add(bucket, opId);
    }
  }
}
