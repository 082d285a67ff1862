/**
 * Operators' changes to a bucket's state: **reset** (the bucket is full again) and **top-up**
 * (add tokens to one limit, once per idempotency key). Each is one transaction with its audit
 * event; the hot path is untouched. See docs/design.md, "Reset and top-up".
 *
 * @module
 */

import { type AdminCall, adminCaller } from "./admin_call.ts";
import type { Auditor } from "./audit.ts";
import * as math from "./bucket.ts";
import type { Backend } from "./backend.ts";
import type { AdminBucketChange, AdminLimitOp, StoredBucket } from "./bucket_items.ts";
import { quotaOfKey } from "./engine/quota.ts";
import { layoutAt, shardResource } from "./engine/shards.ts";
import type { BucketWriter } from "./engine/writer.ts";
import { RateLimiterUnavailable, ValidationError } from "./errors.ts";
import { BOUND_REACH } from "./keys.ts";
import {
  checkObject,
  MAX_AMOUNT,
  toMilliCeil,
  validateEntityId,
  validateLimitName,
  validateResource,
} from "./validate.ts";

/**
 * Options of `limiter.resetBucket`.
 *
 * @example
 * ```ts
 * import type { ResetBucketOptions } from "./bucket_admin.ts";
 * const options: ResetBucketOptions = { entityId: "key-1", resource: "gpt-4", limits: ["rpm"] };
 * console.assert(options.limits?.length === 1);
 * ```
 */
export interface ResetBucketOptions {
  /** The entity. */
  entityId: string;
  /** The bucket's resource. */
  resource: string;
  /** The limits to make full. @default every limit of the bucket */
  limits?: string[];
}

/**
 * Options of `limiter.topUp`.
 *
 * @example
 * ```ts
 * import type { TopUpOptions } from "./bucket_admin.ts";
 * const options: TopUpOptions = {
 *   entityId: "key-1", resource: "gpt-4", limit: "tpm", amount: 5000, idempotencyKey: "inc-42",
 * };
 * console.assert(options.amount === 5000);
 * ```
 */
export interface TopUpOptions {
  /** The entity. */
  entityId: string;
  /** The bucket's resource. */
  resource: string;
  /** The limit to add tokens to. */
  limit: string;
  /** Tokens to add (more than 0, whole thousandths): the bucket is filled first, the rest is credit. */
  amount: number;
  /**
   * Makes the top-up happen once: a later top-up with the same key on the same bucket changes
   * nothing and returns `applied: false` (kept as long as audit events, 90 days by default).
   */
  idempotencyKey: string;
}

/**
 * What a reset or top-up did: `applied` is false for a repeated top-up (its key was used);
 * `before` and `after` are the available tokens per limit (summed over shards).
 *
 * @example
 * ```ts
 * import type { BucketChangeResult } from "./bucket_admin.ts";
 * const r: BucketChangeResult = { applied: true, before: { rpm: 0 }, after: { rpm: 100 } };
 * console.assert(r.after.rpm === 100);
 * ```
 */
export interface BucketChangeResult {
  /** Whether this call changed the bucket (false: an earlier top-up with the same key did). */
  applied: boolean;
  /** Available tokens per limit before the change (rounded down). */
  before: Record<string, number>;
  /** Available tokens per limit after the change (rounded down). */
  after: Record<string, number>;
}

/** What {@link BucketAdmin} needs of the limiter. */
export interface BucketAdminOptions {
  backend: Backend;
  writer: BucketWriter;
  ready: (deadline: number) => Promise<number>;
  timeoutMs: number;
  auditor: Auditor;
  /** How long a top-up's idempotency key is kept, days. */
  keyRetentionDays: number;
}

const IDEMPOTENCY_KEY = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
/** Attempts when the bucket changes between the read and the transaction. */
const ATTEMPTS = 8;

interface ItemState {
  resource: string;
  bucket?: StoredBucket;
}

/** Resets and tops up buckets. */
export class BucketAdmin {
  readonly #o: BucketAdminOptions;
  /** Runs one admin call: its deadline, retries and failure (src/admin_call.ts). */
  readonly #run: AdminCall;

  constructor(options: BucketAdminOptions) {
    this.#o = options;
    this.#run = adminCaller(options.writer, options.ready, options.timeoutMs);
  }

  /** Makes the bucket (every limit, or the named ones) full again, on every shard item. */
  async reset(options: ResetBucketOptions): Promise<BucketChangeResult> {
    checkObject("options", options);
    const entityId = validateEntityId(options.entityId);
    const resource = validateResource(options.resource);
    let names: string[] | undefined;
    if (options.limits !== undefined) {
      if (!Array.isArray(options.limits) || options.limits.length === 0) {
        throw new ValidationError("limits", options.limits, "must be a non-empty array of names");
      }
      names = options.limits.map((n, i) => validateLimitName(n, `limits[${i}]`));
    }
    return await this.#change("resetBucket", entityId, resource, async (items, known, nowMs) => {
      for (const n of names ?? []) checkKnown("limits", n, known);
      const change: AdminBucketChange = {
        entityId,
        items: items.map(({ resource: r, bucket }) => ({
          resource: r,
          exists: bucket !== undefined,
          ops: [...(bucket?.limits.keys() ?? [])]
            .filter((n) => names === undefined || names.includes(n))
            .map((name): AdminLimitOp => ({ kind: "refill", name })),
        })),
      };
      const before = availableOf(items, nowMs, names);
      const after = fullOf(items, names);
      const audit = await this.#o.auditor.record({
        action: "bucket.reset",
        scope: { kind: "entity", entityId },
        resource,
        before: { available: before },
        after: { available: after, ...(names ? { limits: names } : {}) },
      });
      return { change, audit, before, after };
    });
  }

  /**
   * Adds `amount` tokens to one limit, once per idempotency key: the bucket is filled first, the
   * rest becomes credit past capacity.
   */
  async topUp(options: TopUpOptions): Promise<BucketChangeResult> {
    checkObject("options", options);
    const entityId = validateEntityId(options.entityId);
    const resource = validateResource(options.resource);
    const limit = validateLimitName(options.limit, "limit");
    const { amount } = options;
    if (
      typeof amount !== "number" || !Number.isFinite(amount) || amount <= 0 || amount > MAX_AMOUNT
    ) {
      throw new ValidationError(
        "amount",
        amount,
        `must be a number above 0, at most ${MAX_AMOUNT}`,
      );
    }
    const milli = toMilliCeil(amount);
    if (Math.abs(Number(milli) - amount * 1000) > 1e-6 * Math.max(1, amount * 1000)) {
      throw new ValidationError(
        "amount",
        amount,
        "must be a whole number of thousandths of a token",
      );
    }
    const key = options.idempotencyKey;
    if (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)) {
      throw new ValidationError(
        "idempotencyKey",
        key,
        "must be 1-128 characters of letters, digits and _ . - : @, starting with a letter or digit",
      );
    }
    return await this.#change("topUp", entityId, resource, async (items, known, nowMs, quotas) => {
      checkKnown("limit", limit, known);
      if (quotas.has(limit)) {
        throw new ValidationError(
          "limit",
          limit,
          "is a quota: a top-up adds no credit to a quota (reset it to make it full again)",
        );
      }
      // Split over the shard items as capacity is: ⌊X/N⌋ each, the remainder to the first ones.
      // On each item the bucket is filled first, the rest becomes credit (see giveOps).
      const n = BigInt(items.length);
      const keepSec = math.ceilDiv(nowMs, 1000n) + BigInt(this.#o.keyRetentionDays) * 86_400n;
      const change: AdminBucketChange = {
        entityId,
        items: items.map(({ resource: r, bucket }, i) => {
          const ops = giveOps(limit, bucket, milli / n + (BigInt(i) < milli % n ? 1n : 0n), nowMs);
          if (!ops.some((o) => o.kind === "credit")) {
            return { resource: r, exists: bucket !== undefined, ops };
          }
          const ttl = bucket?.ttl;
          return {
            resource: r,
            exists: bucket !== undefined,
            ops,
            credit: {
              ttlSec: ttl !== undefined && ttl > keepSec ? ttl : keepSec,
              writes: BigInt(BOUND_REACH),
            },
          };
        }),
        marker: {
          resource,
          key,
          expiresAtSec: Math.floor(Date.now() / 1000) + this.#o.keyRetentionDays * 86_400,
        },
      };
      const before = availableOf(items, nowMs, [limit]);
      const after = availableOf(items, nowMs, [limit], change);
      const audit = await this.#o.auditor.record({
        action: "bucket.top-up",
        scope: { kind: "entity", entityId },
        resource,
        before: { available: before },
        after: { available: after, limit, amount, idempotencyKey: key },
      });
      return { change, audit, before, after };
    });
  }

  /** Reads the bucket's items, plans, writes; again when an item changed meanwhile. */
  async #change(
    operation: string,
    entityId: string,
    resource: string,
    plan: (
      items: ItemState[],
      known: Set<string>,
      nowMs: bigint,
      quotas: Set<string>,
    ) => Promise<{
      change: AdminBucketChange;
      audit: Awaited<ReturnType<Auditor["record"]>>;
      before: Record<string, number>;
      after: Record<string, number>;
    }>,
  ): Promise<BucketChangeResult> {
    const b = this.#o.backend;
    for (let attempt = 1;; attempt++) {
      const [own, all] = await this.#run(operation, (signal) =>
        Promise.all([
          b.entities.getLimits(entityId, resource, signal),
          b.entities.getLimits(entityId, undefined, signal),
        ]));
      const stored = own ?? all;
      const nowMs = this.#o.writer.now();
      const count = layoutAt(stored?.shards, Number(nowMs)).count;
      const resources = Array.from({ length: count }, (_, i) => shardResource(resource, i, count));
      const buckets = await this.#run(
        operation,
        (signal) => Promise.all(resources.map((r) => b.buckets.getBucket(entityId, r, signal))),
      );
      const items = resources.map((r, i) => ({ resource: r, bucket: buckets[i] }));
      const known = new Set(stored?.limits.map((l) => l.name) ?? []);
      for (const it of items) for (const n of it.bucket?.limits.keys() ?? []) known.add(n);
      const quotas = new Set(stored?.limits.filter((l) => l.quota).map((l) => l.name) ?? []);
      for (const it of items) {
        for (const [n, st] of it.bucket?.limits ?? []) if (quotaOfKey(st.key)) quotas.add(n);
      }
      const { change, audit, before, after } = await plan(items, known, nowMs, quotas);
      const outcome = await this.#run(
        operation,
        (signal) => b.buckets.adminWrite(change, signal, audit),
      );
      if (outcome.ok || outcome.reason === "repeated") {
        // This process's knowledge of the bucket (and its deny cache) is stale at once.
        this.#o.writer.knowledge.forget(entityId);
        return outcome.ok
          ? { applied: true, before, after }
          : { applied: false, before, after: before };
      }
      if (attempt >= ATTEMPTS) {
        throw new RateLimiterUnavailable(
          operation,
          new Error(`the bucket changed under each of ${ATTEMPTS} attempts`),
        );
      }
    }
  }
}

function checkKnown(field: string, name: string, known: Set<string>): void {
  if (!known.has(name)) {
    throw new ValidationError(
      field,
      name,
      `names no limit of this bucket (stored or used: ${[...known].sort().join(", ") || "none"})`,
    );
  }
}

/**
 * The ops adding `milli` to `name` on one item: the bucket first, with the whole thousandths of
 * room the item shows (`tat ≥ N + g·P`, then `tat −= g·P`: holds whatever acquires do meanwhile,
 * as they only raise the tat), and the rest as credit (`ADD c_n`). Exactly `milli` in all.
 */
function giveOps(
  name: string,
  bucket: StoredBucket | undefined,
  milli: bigint,
  nowMs: bigint,
): AdminLimitOp[] {
  if (milli === 0n) return [];
  const st = bucket?.limits.get(name);
  const spec = st?.key === undefined ? undefined : math.parseSpecKey(st.key);
  let room = 0n;
  if (st?.tat !== undefined && spec !== undefined) {
    const n = math.scaledNow(spec, nowMs);
    if (st.tat > n) room = (st.tat - n) / spec.periodMs;
  }
  const g = room < milli ? room : milli;
  const ops: AdminLimitOp[] = [];
  if (g > 0n) {
    const sub = math.cost(spec!, g);
    ops.push({ kind: "give", name, key: st!.key!, min: math.scaledNow(spec!, nowMs) + sub, sub });
  }
  if (g < milli) ops.push({ kind: "credit", name, add: milli - g });
  return ops;
}

/**
 * Available tokens per limit over the items (after `change`, when given): the bucket's and the
 * credit, rounded down.
 */
function availableOf(
  items: ItemState[],
  nowMs: bigint,
  names: string[] | undefined,
  change?: AdminBucketChange,
): Record<string, number> {
  const sums = new Map<string, bigint>();
  items.forEach(({ bucket }, i) => {
    const ops = change?.items[i].ops ?? [];
    const seen = new Set([...bucket?.limits.keys() ?? [], ...ops.map((o) => o.name)]);
    for (const name of seen) {
      if (names && !names.includes(name)) continue;
      const st = bucket?.limits.get(name);
      const spec = st?.key === undefined ? undefined : math.parseSpecKey(st.key);
      let tat = st?.tat;
      let credit = st?.credit ?? 0n;
      for (const op of ops.filter((o) => o.name === name)) {
        if (op.kind === "give") tat = tat! - op.sub;
        else if (op.kind === "refill") tat = undefined;
        else credit += op.add;
      }
      const bucketMilli = spec ? math.availableMilli(spec, tat, nowMs) : 0n;
      if (!spec && credit === 0n) continue;
      sums.set(name, (sums.get(name) ?? 0n) + bucketMilli + credit);
    }
  });
  return Object.fromEntries(
    [...sums].map(([n, m]) => [n, Number(math.floorDiv(m, 1000n))]),
  );
}

/** Capacity per limit over the items: the state after a reset. */
function fullOf(items: ItemState[], names: string[] | undefined): Record<string, number> {
  const sums = new Map<string, bigint>();
  for (const { bucket } of items) {
    for (const [name, st] of bucket?.limits ?? []) {
      if (names && !names.includes(name)) continue;
      const spec = st.key === undefined ? undefined : math.parseSpecKey(st.key);
      if (spec) sums.set(name, (sums.get(name) ?? 0n) + spec.capacityMilli);
    }
  }
  return Object.fromEntries(
    [...sums].map(([n, m]) => [n, Number(math.floorDiv(m, 1000n))]),
  );
}
