/**
 * A bucket item's TTL: when a write sends one, and the moment an item's stored tats are full
 * again. Expiry must never forgive debt: an item may expire only once every tat it holds is full
 * again, and then it is the same as no item (see docs/design.md, "TTL: expiry never forgives
 * debt").
 *
 * @module
 */

import * as math from "../bucket.ts";
import type { StoredBucket, StoredLimit } from "../repository.ts";
import { BUCKET_GRACE_SECONDS } from "./types.ts";

/**
 * Seconds a written TTL goes past what its write needs, so that the writes of the next half hour
 * need not send it again.
 */
export const TTL_SLACK_SECONDS = 1800n;

/**
 * The TTL a write sends, given what its plan needs (`needed`, epoch s): none when the item exists
 * (the write's condition asks it) and the TTL last seen on it covers `needed`; else `needed` plus
 * {@link TTL_SLACK_SECONDS}. A write that sets a TTL only where none is (`ifMissing`) sends it as
 * planned. No write lowers a TTL below what a write needed, so a TTL seen stays a lower bound of
 * what covers the item.
 *
 * @example
 * ```ts
 * console.assert(ttlToSend(100n, { itemExists: true, seen: 5000n }) === undefined);
 * console.assert(ttlToSend(100n, { itemExists: false, seen: 5000n }) === 1900n);
 * console.assert(ttlToSend(100n, { itemExists: true, seen: 99n }) === 1900n);
 * ```
 */
export function ttlToSend(
  needed: bigint | undefined,
  item: { itemExists?: boolean; seen?: bigint; ifMissing?: boolean },
): bigint | undefined {
  if (needed === undefined || item.ifMissing) return needed;
  if (item.itemExists && item.seen !== undefined && item.seen >= needed) return undefined;
  return needed + TTL_SLACK_SECONDS;
}

/**
 * The moment (epoch ms) every tat of `limits` is full again: the earliest the item may expire
 * without forgiving anything. 0 when none holds a tat.
 *
 * @example
 * ```ts
 * import { specKey } from "../bucket.ts";
 * const key = specKey({ capacityMilli: 100_000n, refillMilli: 100_000n, periodMs: 60_000n });
 * // A tat is kept in ms × refill units: this one is full at 1,000 ms.
 * console.assert(fullAtMs(new Map([["rpm", { tat: 100_000_000n, key }]])) === 1000n);
 * ```
 */
export function fullAtMs(limits: Map<string, StoredLimit>): bigint {
  let at = 0n;
  for (const st of limits.values()) {
    const spec = st.key === undefined ? undefined : math.parseSpecKey(st.key);
    if (spec && st.tat !== undefined) {
      const ms = math.tatToMs(spec, st.tat);
      if (ms > at) at = ms;
    }
  }
  return at;
}

/**
 * What to raise an answered item's TTL to when it falls short of what the write `needed` (another
 * process, whose calls name other limits, lowered it while this one relied on the TTL it had
 * seen); `undefined` when it covers it.
 *
 * @example
 * ```ts
 * console.assert(ttlShortfall(100n, { ttl: 99n }) === 1900n);
 * console.assert(ttlShortfall(100n, { ttl: 100n }) === undefined);
 * ```
 */
export function ttlShortfall(
  needed: bigint | undefined,
  item: Pick<StoredBucket, "ttl">,
  ifMissing?: boolean,
): bigint | undefined {
  // What a write to an existing item that saw this TTL would send.
  return ifMissing ? undefined : ttlToSend(needed, { itemExists: true, seen: item.ttl });
}

/**
 * What to raise an item's TTL to so that it covers the debt the item holds (its tats full again,
 * plus the grace hour), after a write that may leave more than it planned for (an adjustment, a
 * credit-paid write); `undefined` when the TTL covers it.
 *
 * @example
 * ```ts
 * import { specKey } from "../bucket.ts";
 * const key = specKey({ capacityMilli: 100_000n, refillMilli: 100_000n, periodMs: 60_000n });
 * const limits = new Map([["rpm", { tat: 100_000_000n * 1000n, key }]]); // full at 1,000 s
 * console.assert(ttlForDebt({ limits, ttl: 999n }) === 4600n);
 * console.assert(ttlForDebt({ limits, ttl: 1000n }) === undefined);
 * ```
 */
export function ttlForDebt(item: Pick<StoredBucket, "limits" | "ttl">): bigint | undefined {
  const needed = math.ceilDiv(fullAtMs(item.limits), 1000n);
  return item.ttl !== undefined && item.ttl >= needed ? undefined : needed + BUCKET_GRACE_SECONDS;
}
