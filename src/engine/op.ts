/**
 * Operation ids and the exactly-once bookkeeping of one logical write: {@link Op} and
 * {@link UncertainOutcome}.
 *
 * @module
 */

import { ZaeLimiterError } from "../errors.ts";
import { BOUND_REACH } from "../keys.ts";

/**
 * A fresh operation id: 12 random base-36 characters (about 62 bits), so two operations whose
 * receipts are on one item at the same time (a few dozen at most) share an id with a chance of
 * about 2 × 10⁻¹⁶ (a shared id would make the newer one look applied).
 */
export function newOpId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n.toString(36).padStart(12, "0").slice(-12);
}

/**
 * One logical write (an acquire, a commit, a rollback...) and every attempt at it: its id, and per
 * bucket the bound on the item's write count that its attempts carry. Once an attempt may have
 * landed unseen the bounds are frozen, so a late or resent copy can never pass after its receipt
 * may have been swept from the item (see docs/design.md, "Exactly once through outages").
 */
export class Op {
  /** The operation id, which names the receipt every write of it leaves (`r_{id}`). */
  readonly id: string;
  /** Whether an attempt may have landed without the answer reaching us. */
  ambiguous = false;
  /**
   * Buckets where the operation is known to have landed. An operation that writes several buckets
   * one by one (a give-back, a failed-open recording) and is retried as a whole must not write
   * them again: the receipt of a landed write may have been swept since.
   */
  readonly applied = new Set<string>();
  readonly #bounds = new Map<string, bigint>();

  /** @param id The operation id. @default a fresh one */
  constructor(id: string = newOpId()) {
    this.id = id;
  }

  /** The write-count bound for a bucket, from a lower bound of its current count. */
  bound(bucket: string, knownWrites: bigint | undefined): bigint {
    const frozen = this.#bounds.get(bucket);
    if (frozen !== undefined && this.ambiguous) return frozen;
    const bound = (knownWrites ?? 0n) + BigInt(BOUND_REACH);
    this.#bounds.set(bucket, bound);
    return bound;
  }
}

/**
 * Whether an operation landed cannot be known any more: its answer was lost and its item then
 * took more writes than its write-count bound allows, so its receipt may be gone. Found in
 * `RateLimiter.unresolvedWrites`; never guessed.
 *
 * @example
 * ```ts
 * import { UncertainOutcome } from "./op.ts";
 * const e = new UncertainOutcome("commit of key-1/gpt-4");
 * console.assert(e.message.startsWith("Cannot tell whether commit of key-1/gpt-4"));
 * ```
 */
export class UncertainOutcome extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "UncertainOutcome";
  /**
   * Creates the error.
   *
   * @param what The operation.
   */
  constructor(what: string) {
    super(
      `Cannot tell whether ${what} was applied: its item took ${BOUND_REACH} more writes before ` +
        "DynamoDB answered",
    );
  }
}
