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
 * The receipts waiting to be removed, per bucket id.
 *
 * @example
 * ```ts
 * const sweep = new ReceiptSweep(100);
 * sweep.add("b1", "op1");
 * console.assert(sweep.next("b1")?.[0] === "op1");
 * sweep.removed("b1", ["op1"]);
 * console.assert(sweep.next("b1") === undefined);
 * ```
 */
export class ReceiptSweep {
  readonly #waiting: TtlCache<string, Set<string>>;

  /** Remembers at most `maxBuckets` buckets (the least recently used go first). */
  constructor(maxBuckets: number) {
    this.#waiting = new TtlCache(Infinity, maxBuckets);
  }

  /** The receipts the next write to `bucket` removes; `undefined` when none waits. */
  next(bucket: string): string[] | undefined {
    const waiting = this.#waiting.get(bucket);
    return waiting && waiting.size > 0 ? [...waiting].slice(0, SWEEP_PER_WRITE) : undefined;
  }

  /** A write that removed `opIds` from `bucket` landed. */
  removed(bucket: string, opIds: string[] | undefined): void {
    const waiting = this.#waiting.get(bucket);
    for (const id of opIds ?? []) waiting?.delete(id);
  }

  /** Notes a receipt that no copy can need any more, to remove with a later write. */
  add(bucket: string, opId: string): void {
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
