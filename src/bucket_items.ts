/**
 * The shapes of a bucket item as read ({@link StoredBucket}) and of a conditional write to it
 * ({@link BucketWrite}, one {@link LimitOp} per limit), shared by the planner, the writer and the
 * backends. `src/repository.ts` turns them into DynamoDB expressions.
 *
 * @module
 */

/**
 * One limit's stored state on a bucket item.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const backend = new InMemoryBackend();
 * const limiter = new RateLimiter({ tableName: "unit-test", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
 * const rpm = (await backend.buckets.getBucket("key-1", "api"))?.limits.get("rpm");
 * console.assert(rpm?.tat !== undefined && rpm.key !== undefined);
 * ```
 */
export interface StoredLimit {
  /** Theoretical arrival time (scaled); `undefined` when never written. */
  tat?: bigint;
  /** Spec the tat is written under. */
  key?: string;
  /**
   * Credit: thousandths of a token granted past capacity by top-ups (`c_n`), spent by a request
   * the bucket cannot cover. `undefined` (or 0) when none. See docs/design.md, "Credit".
   */
  credit?: bigint;
  /**
   * A quota's window start (`w_n`, epoch ms); its `tat` is then the thousandths used in that
   * window. See docs/design.md, "Quotas".
   */
  window?: bigint;
  /** A concurrent limit's slots taken (`cc_n`). See docs/design.md, "Concurrency limits". */
  held?: bigint;
  /** A concurrent limit's slots: the acquire's operation id → its expiry, epoch ms (`s_n_{id}`). */
  slots?: Map<string, bigint>;
}

/**
 * A bucket item as read: limit name → state.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const backend = new InMemoryBackend();
 * const limiter = new RateLimiter({ tableName: "unit-test", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10), Limit.perMinute("tpm", 1000)], consume: { rpm: 1 } });
 * const bucket = await backend.buckets.getBucket("key-1", "api");
 * console.assert(bucket?.limits.size === 2 && bucket.receipts?.size === 1);
 * ```
 */
export interface StoredBucket {
  /** Limit states by name. */
  limits: Map<string, StoredLimit>;
  /** TTL, epoch seconds. */
  ttl?: bigint;
  /**
   * Receipts of operations applied to the item: id → the write-count bound the operation carried
   * (negative for a cancel mark). See `BucketWrite.opId`.
   */
  receipts?: Map<string, bigint>;
  /** How many writes the item has taken (`wc`). */
  writes?: bigint;
}

/**
 * One limit's part of a bucket write.
 *
 * @example
 * ```ts
 * import type { Backend } from "./backend.ts";
 * import type { BucketWrite, LimitOp } from "./repository.ts";
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * // Records the bucket writes a limiter sends, around the in-memory backend.
 * const inner = new InMemoryBackend();
 * const writes: BucketWrite[] = [];
 * const backend: Backend = {
 *   entities: inner.entities,
 *   buckets: {
 *     ...inner.buckets,
 *     writeBucket: (w, signal) => {
 *       writes.push(w);
 *       return inner.buckets.writeBucket(w, signal);
 *     },
 *   },
 * };
 * const limiter = new RateLimiter({ tableName: "recorded", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
 * const op: LimitOp = writes[0].ops[0];
 * console.assert(op.name === "rpm" && op.kind === "fromNow"); // a bucket never used
 * ```
 */
export type LimitOp =
  /**
   * tat ≤ now (or absent): set it to `newTat` = now + cost. `known`: the writer saw the tat under
   * this spec, so the write asks for it (`k_n = :k AND t_n <= :n`, no absent case) and leaves
   * `k_n` as it is; should the item have gone since, the failure returns the truth.
   */
  | { kind: "fromNow"; name: string; key: string; n: bigint; newTat: bigint; known?: true }
  /** now ≤ tat ≤ `max`: add `add`. Never over-admits, whatever other writers did. */
  | { kind: "addBounded"; name: string; key: string; n: bigint; max: bigint; add: bigint }
  /** tat ≥ now: add `add` (adjustments, which may go into debt). */
  | { kind: "add"; name: string; key: string; n: bigint; add: bigint }
  /** Return `sub` (rollback, negative adjustment). */
  | { kind: "sub"; name: string; key: string; sub: bigint }
  /** The exact state is known: replace it (spec changes). */
  | {
    kind: "cas";
    name: string;
    key: string;
    expectKey?: string;
    expectTat?: bigint;
    newTat: bigint;
  }
  /**
   * Paid by the credit: only if `c_n ≥ min` (`min` = max(take, 1 thousandth)), `c_n −= take`;
   * the tat is left alone.
   */
  | { kind: "credit"; name: string; take: bigint; min: bigint }
  /**
   * A quota. `same`: only if `k_n = key` and `w_n ≥ lo` (the item's window is current) and, with
   * `max`, `t_n ≤ max`: `t_n += add`. Else: only if `w_n` is missing, `w_n < lo` or `k_n ≠ key`:
   * a new window, `w_n ← start`, `t_n ← add`, `k_n ← key`.
   */
  | {
    kind: "quota";
    name: string;
    key: string;
    same: boolean;
    lo: bigint;
    start: bigint;
    add: bigint;
    max?: bigint;
  }
  /** A give-back to a quota: only if `k_n = key`, `w_n = window` and `t_n ≥ sub`: `t_n −= sub`. */
  | { kind: "quotaSub"; name: string; key: string; window: bigint; sub: bigint }
  /**
   * A concurrent limit's slot: only if `cc_n` is missing or `cc_n < max`, and each slot of
   * `reclaim` still exists with its expiry below `now`: `s_n_{id} ← exp`, the reclaimed slots
   * removed, `cc_n += 1 − reclaim.length` (`max` already counts the reclaimed slots).
   */
  | {
    kind: "slotTake";
    name: string;
    id: string;
    exp: bigint;
    max: bigint;
    now: bigint;
    reclaim: string[];
  }
  /** Frees the slot `s_n_{id}`: only if it exists; removed, `cc_n −= 1`. */
  | { kind: "slotFree"; name: string; id: string };

/**
 * A conditional write to one bucket item.
 *
 * @example
 * ```ts
 * import type { Backend } from "./backend.ts";
 * import type { BucketWrite } from "./repository.ts";
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * // Records the bucket writes a limiter sends, around the in-memory backend.
 * const inner = new InMemoryBackend();
 * const writes: BucketWrite[] = [];
 * const backend: Backend = {
 *   entities: inner.entities,
 *   buckets: {
 *     ...inner.buckets,
 *     writeBucket: (w, signal) => {
 *       writes.push(w);
 *       return inner.buckets.writeBucket(w, signal);
 *     },
 *   },
 * };
 * const limiter = new RateLimiter({ tableName: "recorded", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
 * console.assert(writes[0].requests === 1 && writes[0].used.get("rpm") === 1000n);
 * ```
 */
export interface BucketWrite {
  /** Entity owning the bucket. */
  entityId: string;
  /** Resource of the bucket. */
  resource: string;
  /** One op per limit written. */
  ops: LimitOp[];
  /** Change of each limit's running consumption total (thousandths). */
  used: Map<string, bigint>;
  /** Change of the request count. */
  requests: number;
  /** The caller's now, epoch ms. */
  nowMs: bigint;
  /** New TTL (epoch s), for writes that may raise a tat. */
  ttlSec?: bigint;
  /** Set `ttlSec` only on an item that has no TTL yet (writes that change no tat). */
  ttlIfMissing?: boolean;
  /**
   * The operation's id. The write leaves a receipt (`r_{opId}`) and its condition refuses an item
   * that has one already, so a resent or late-delivered duplicate is never applied twice.
   */
  opId: string;
  /**
   * A cancel mark: the write applies nothing but a negative receipt, under the same condition, so
   * that no copy of the operation can be applied after it (see the outbox).
   */
  cancel?: boolean;
  /**
   * The write is refused once the item has taken this many writes (its write count `wc`): a copy
   * delivered after its receipt may have been swept away can then never be applied.
   */
  maxWrites: bigint;
  /** Receipts no copy can need any more, removed by this write (see docs/design.md). */
  sweep?: string[];
  /** The writer knows the item exists (it has a write count): a shorter condition. */
  itemExists?: boolean;
}

/**
 * Outcome of a conditional bucket write.
 *
 * @example
 * ```ts
 * import type { Backend } from "./backend.ts";
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import type { WriteOutcome } from "./repository.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const inner = new InMemoryBackend();
 * const outcomes: WriteOutcome[] = [];
 * const backend: Backend = {
 *   entities: inner.entities,
 *   buckets: {
 *     ...inner.buckets,
 *     writeBucket: async (w, signal) => {
 *       const outcome = await inner.buckets.writeBucket(w, signal);
 *       outcomes.push(outcome);
 *       return outcome;
 *     },
 *   },
 * };
 * const limiter = new RateLimiter({ tableName: "recorded", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
 * console.assert(outcomes[0].ok);
 * ```
 */
export type WriteOutcome =
  | { ok: true; item?: StoredBucket; retried?: boolean }
  | { ok: false; old?: StoredBucket; known: boolean; retried?: boolean };

/**
 * One limit's part of an admin change to a bucket item (reset, top-up): no receipt, no
 * consumption, but the write count `wc` goes up by one as for every bucket write.
 *
 * @example
 * ```ts
 * import type { AdminLimitOp } from "./bucket_items.ts";
 * // Make limit rpm full again, whatever its tat.
 * const op: AdminLimitOp = { kind: "refill", name: "rpm" };
 * console.assert(op.kind === "refill");
 * ```
 */
export type AdminLimitOp =
  /** Remove the tat: the limit is full (reset). */
  | { kind: "refill"; name: string }
  /** Only if `k = key` and `tat ≥ min`: `tat ← tat − sub` (a top-up that leaves it not over full). */
  | { kind: "give"; name: string; key: string; min: bigint; sub: bigint }
  /** Add `add` thousandths to the limit's credit (`ADD c_n`): the part of a top-up past full. */
  | { kind: "credit"; name: string; add: bigint };

/**
 * An admin change to bucket items of one entity, written in one transaction with its audit
 * event: all or none.
 *
 * @example
 * ```ts
 * import type { AdminBucketChange } from "./bucket_items.ts";
 * const change: AdminBucketChange = {
 *   entityId: "key-1",
 *   items: [{ resource: "api", exists: true, ops: [{ kind: "refill", name: "rpm" }] }],
 * };
 * console.assert(change.items.length === 1);
 * ```
 */
export interface AdminBucketChange {
  /** Entity owning the buckets. */
  entityId: string;
  /**
   * Per bucket item (a shard's resource names its item): with `exists`, the item must exist and
   * takes `ops`; without, the item must still be missing (it was when read). With `credit`, the
   * item takes `ops` whether it exists or not (it is created if missing), its TTL becomes
   * `credit.ttlSec` (only if that does not lower it: else the change is refused as `changed`)
   * and its write count goes up by `credit.writes` instead of 1 (see docs/design.md, "Credit").
   */
  items: {
    resource: string;
    exists: boolean;
    ops: AdminLimitOp[];
    credit?: { ttlSec: bigint; writes: bigint };
  }[];
  /**
   * A marker item that must not exist yet, written by the change: an idempotency key's record
   * (`#TOPUP#{resource}#{key}`), kept until `expiresAtSec`.
   */
  marker?: { resource: string; key: string; expiresAtSec: number };
}

/**
 * What became of an {@link AdminBucketChange}: written, refused because an item changed since it
 * was read (`changed`: read again and replan), or refused because its marker already exists
 * (`repeated`: the change was made before).
 *
 * @example
 * ```ts
 * import type { AdminOutcome } from "./bucket_items.ts";
 * const outcome: AdminOutcome = { ok: false, reason: "repeated" };
 * console.assert(!outcome.ok);
 * ```
 */
export type AdminOutcome = { ok: true } | { ok: false; reason: "changed" | "repeated" };
