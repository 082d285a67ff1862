/**
 * What the write-ceiling harness charges: the WCU a write costs each item it writes, and the
 * per-item token buckets of write capacity (pure logic, no I/O). See `ceiling.ts`.
 *
 * @module
 */

import { ValidationError } from "../errors.ts";

type Json = Record<string, unknown>;
type KeyOf = (table: string, item: Json) => Promise<Json>;

/** One item a write call charges. */
export interface ItemCharge {
  /** Table name. */
  table: string;
  /** The item's key as canonical JSON (attributes sorted). */
  key: string;
  /** WCU charged. */
  wcu: number;
}

/**
 * Token buckets of write capacity, one per item, in thousandths of a WCU: an item holds at most
 * `burst × 1000` and gains `wcuPerSecond` per millisecond. Pure logic (time is passed in).
 *
 * @example
 * ```ts
 * import { ItemBuckets } from "./ceiling.ts";
 * const b = new ItemBuckets(2, 2);
 * console.assert(b.take(["a", "a"], [1, 1], 0).length === 0);
 * console.assert(b.take(["a"], [1], 0)[0] === "a"); // empty until 500 ms later
 * console.assert(b.take(["a"], [1], 500).length === 0);
 * ```
 */
export class ItemBuckets {
  #level = new Map<string, { milli: number; at: number }>();

  /**
   * @param wcuPerSecond Refill per second, a positive integer.
   * @param burst Capacity in WCU, a positive integer.
   */
  constructor(public wcuPerSecond: number, public burst: number) {
    positiveInteger("wcuPerSecond", wcuPerSecond);
    positiveInteger("burst", burst);
  }

  /**
   * Charges `wcu[i]` to item `keys[i]` for every i at time `nowMs`, all or none. Returns the
   * items that lacked capacity (then nothing was charged); empty when the charge was taken.
   */
  take(keys: string[], wcu: number[], nowMs: number): string[] {
    const now = Math.floor(nowMs);
    const need = new Map<string, number>();
    keys.forEach((k, i) => need.set(k, (need.get(k) ?? 0) + wcu[i] * 1000));
    const cap = this.burst * 1000;
    const short: string[] = [];
    const levels = new Map<string, number>();
    for (const [k, milli] of need) {
      const b = this.#level.get(k);
      const level = b === undefined
        ? cap
        : Math.min(cap, b.milli + Math.max(0, now - b.at) * this.wcuPerSecond);
      levels.set(k, level);
      if (level < milli) short.push(k);
    }
    if (short.length > 0) return short;
    for (const [k, milli] of need) this.#level.set(k, { milli: levels.get(k)! - milli, at: now });
    if (this.#level.size > 10_000) this.#sweep(now);
    return [];
  }

  /** Forgets every item (all full again). */
  clear(): void {
    this.#level.clear();
  }

  /** Drops items that have refilled to full: they are as if never seen. */
  #sweep(now: number): void {
    const cap = this.burst * 1000;
    for (const [k, b] of this.#level) {
      if (b.milli + Math.max(0, now - b.at) * this.wcuPerSecond >= cap) this.#level.delete(k);
    }
  }
}

/** Canonical JSON of a key: attributes sorted by name, so `{PK, SK}` and `{SK, PK}` agree. */
export function canonicalKey(key: Json): string {
  return JSON.stringify(Object.keys(key).sort().map((name) => [name, key[name]]));
}

/** The write operations the harness charges. */
export const WRITES: ReadonlySet<string> = new Set([
  "PutItem",
  "UpdateItem",
  "DeleteItem",
  "TransactWriteItems",
  "BatchWriteItem",
]);

/**
 * The items a write call charges and their WCU (see the module's rule). `keyOf` gives the key
 * attributes of a whole item (a put names no key).
 */
export async function chargesOf(
  operation: string,
  body: Json,
  keyOf: KeyOf,
): Promise<ItemCharge[]> {
  const charge = async (table: string, wcu: number, key?: unknown, item?: unknown) => ({
    table,
    wcu,
    key: canonicalKey(key !== undefined ? key as Json : await keyOf(table, item as Json)),
  });
  switch (operation) {
    case "PutItem":
      return [await charge(String(body.TableName), 1, undefined, body.Item)];
    case "UpdateItem":
    case "DeleteItem":
      return [await charge(String(body.TableName), 1, body.Key)];
    case "TransactWriteItems":
      return await Promise.all(((body.TransactItems ?? []) as Json[]).map((entry) => {
        const action = (entry.Put ?? entry.Update ?? entry.Delete ?? entry.ConditionCheck ??
          {}) as Json;
        return charge(String(action.TableName), 2, action.Key, action.Item);
      }));
    case "BatchWriteItem": {
      const out: ItemCharge[] = [];
      for (const [table, requests] of Object.entries((body.RequestItems ?? {}) as Json)) {
        for (const r of requests as Json[]) {
          const put = r.PutRequest as Json | undefined;
          const del = r.DeleteRequest as Json | undefined;
          out.push(await charge(table, 1, del?.Key, put?.Item));
        }
      }
      return out;
    }
    default:
      return [];
  }
}

/** Checks a whole number ≥ 1. */
export function positiveInteger(field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(field, value, "must be a positive whole number of WCU");
  }
}
