/**
 * Reads of a bucket's state: `available` and `timeUntilAvailable`. One read of the item, with the
 * limits resolved as an acquire resolves them; no lease, so an outage throws in both failure
 * modes.
 *
 * @module
 */

import * as math from "./bucket.ts";
import type { Backend } from "./backend.ts";
import type { ConfigResolver } from "./config.ts";
import { effectiveTat, makeTarget, payable } from "./engine/plan.ts";
import { quotaStatus, quotaWindow } from "./engine/quota.ts";
import { gate } from "./engine/gate.ts";
import { startTat } from "./engine/shards.ts";
import type { Target } from "./engine/types.ts";
import type { BucketWriter } from "./engine/writer.ts";
import type { AvailableOptions, TimeUntilAvailableOptions } from "./options.ts";
import { ValidationError } from "./errors.ts";
import type { StoredBucket, StoredLimit } from "./repository.ts";
import { callLimits } from "./request.ts";
import { amountsToMilli, checkObject, validateEntityId, validateResource } from "./validate.ts";

/** Options of {@link BucketReader}. */
export interface BucketReaderOptions {
  backend: Backend;
  writer: BucketWriter;
  config: ConfigResolver;
  ready: (deadline: number) => Promise<number>;
  timeoutMs: number;
}

/** Reads buckets for `available` and `timeUntilAvailable`. */
export class BucketReader {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: ConfigResolver;
  readonly #ready: (deadline: number) => Promise<number>;
  readonly #timeoutMs: number;

  constructor(options: BucketReaderOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = options.config;
    this.#ready = options.ready;
    this.#timeoutMs = options.timeoutMs;
  }

  /** Tokens available per limit; a sharded bucket's shards added up. */
  async available(options: AvailableOptions): Promise<Record<string, number>> {
    const { shards, nowMs } = (await this.#read(options, {}, false))!;
    const out: Record<string, number> = {};
    for (const l of levelsOf(shards, nowMs)) out[l.limit] = l.available;
    return out;
  }

  /**
   * Each limit of a bucket as `available` reads it (the limits resolved as an acquire resolves
   * them, the shards of the layout in force, a tat written under another spec converted), with the
   * capacity in force and the time until the bucket is full. For the dashboard: no gate (a
   * disabled entity's buckets are shown) and `undefined` when no limits are stored for the
   * resource at any level (`useStoredLimits` is always true here).
   */
  async levels(
    options: { entityId: string; resource: string },
    atMs?: bigint,
  ): Promise<{ nowMs: bigint; levels: BucketLimitLevel[] } | undefined> {
    const read = await this.#read({ ...options, useStoredLimits: true }, {}, true, atMs);
    return read && { nowMs: read.nowMs, levels: levelsOf(read.shards, read.nowMs) };
  }

  /** Seconds until `needed` can pass; on a sharded bucket, on the first shard it can pass on. */
  async timeUntilAvailable(options: TimeUntilAvailableOptions): Promise<number> {
    const { shards, nowMs, needed } = (await this.#read(options, options, false))!;
    checkSoftOnly(shards[0].target, needed, options.needed);
    let best = Infinity;
    for (const { target, state } of shards) {
      let wait = 0n;
      for (const limit of target.limits) {
        if (limit.soft) continue; // never a reason to wait: it refuses nothing
        if (limit.concurrent) {
          // Full: at the latest, a slot frees when the first one expires (a lease may end sooner).
          const live = liveSlots(state?.limits.get(limit.name), nowMs);
          if (live.count >= limit.capacity && live.firstExpiry !== undefined) {
            const cw = live.firstExpiry + 1n - nowMs;
            if (cw > wait) wait = cw;
          }
          continue;
        }
        if (limit.quota) {
          const m = needed.get(limit.name) ?? 0n;
          const w = quotaWindow(target.keys.get(limit.name)!, state?.limits.get(limit.name), nowMs);
          const s = quotaStatus(target, limit, w, m, nowMs, false);
          if (s.retryAfterSeconds === Infinity) {
            wait = -1n;
            break;
          }
          const qw = s.exceeded ? w.end - nowMs : 0n;
          if (qw > wait) wait = qw;
          continue;
        }
        const spec = target.specs.get(limit.name)!;
        const tat = tatOf(target, state, limit.name, nowMs);
        const m = needed.get(limit.name) ?? 0n;
        // The credit pays the whole amount now, or the bucket when it has refilled enough.
        const credit = state?.limits.get(limit.name)?.credit ?? 0n;
        const w = math.fits(spec, tat, nowMs, m) || !payable(credit, m)
          ? math.waitMs(spec, tat, nowMs, m)
          : 0n;
        if (w === undefined) {
          wait = -1n;
          break;
        }
        if (w > wait) wait = w;
      }
      if (wait >= 0n && Number(wait) / 1000 < best) best = Number(wait) / 1000;
    }
    return best;
  }

  async #read(
    options: AvailableOptions,
    extra: { needed?: Record<string, number> },
    forPage: boolean,
    atMs?: bigint,
  ): Promise<
    {
      shards: { target: Target; state?: StoredBucket }[];
      nowMs: bigint;
      needed: Map<string, bigint>;
    } | undefined
  > {
    checkObject("options", options);
    const entityId = validateEntityId(options.entityId);
    const resource = validateResource(options.resource);
    const { limits, useStoredLimits: useStored } = callLimits(options);
    const names = new Set(limits.map((l) => l.name));
    const needed = "needed" in options
      ? amountsToMilli("needed", extra.needed, useStored ? "any" : names, {
        allowNegative: false,
      })
      : new Map<string, bigint>();
    let deadline = Date.now() + this.#timeoutMs;
    try {
      deadline += await this.#ready(deadline); // the set-up may take longer than a call
      // Read first: a scheduled limit answers with the parameters in force at this instant.
      const nowMs = atMs ?? this.#writer.now();
      const { targets: [first], controls, noLimits } = await this.#config.resolve(
        { entityId, resource, limits, consume: {}, cascade: false, useStoredLimits: useStored },
        deadline,
        "read",
        nowMs,
      );
      if (forPage) {
        if (noLimits) return undefined;
      } else {
        gate({ entityId, resource }, controls); // a disabled entity or resource says so here too
        if (noLimits) throw noLimits;
      }
      const shard = first.shard;
      const targets = shard && shard.count > 1
        ? Array.from(
          { length: shard.count },
          (_, index) => makeTarget(entityId, resource, shard.whole, { ...shard, index }),
        )
        : [first];
      const shards = await Promise.all(targets.map(async (target) => {
        const state = await this.#writer.call(
          undefined,
          (signal) => this.#backend.buckets.getBucket(entityId, target.resource, signal),
          deadline,
          "read",
        );
        if (state) this.#writer.knowledge.remember(target, state.limits, state.writes, state.ttl);
        return { target, state };
      }));
      return { shards, nowMs, needed };
    } catch (err) {
      throw this.#writer.fail(err, "read");
    }
  }
}

/** One limit of a bucket as {@link BucketReader.levels} reads it. */
export interface BucketLimitLevel {
  /** The limit's name. */
  limit: string;
  /** `rate` (a token bucket), `quota` or `concurrent`. */
  kind: "rate" | "quota" | "concurrent";
  /** What `available()` returns for it: whole tokens (negative in debt), or free slots. */
  available: number;
  /** The capacity in force (a quota's amount, a concurrent limit's slots). */
  capacity: number;
  /**
   * Milliseconds until the bucket is full (0 when it is): a rate limit's longest wait of its
   * shards for its capacity, a quota's window end when some of it is used, a concurrent limit's
   * last slot expiry (a lease may end sooner).
   */
  msUntilFull: number;
  /** The items of the layout in force the bucket is split into (1 when unsharded). */
  shards: number;
}

/** Each limit of a bucket read at `nowMs`: what `available()` returns, and more. */
function levelsOf(
  shards: { target: Target; state?: StoredBucket }[],
  nowMs: bigint,
): BucketLimitLevel[] {
  const first = shards[0];
  const whole = first.target.shard?.whole ?? first.target.limits;
  return first.target.limits.map((limit): BucketLimitLevel => {
    const capacity = whole.find((l) => l.name === limit.name)?.capacity ?? limit.capacity;
    if (limit.concurrent) {
      // Free slots: the expired ones count as free (the next acquire takes them back).
      const live = liveSlots(first.state?.limits.get(limit.name), nowMs);
      const full = live.count <= 0 || live.lastExpiry === undefined
        ? 0
        : Number(live.lastExpiry + 1n - nowMs);
      return {
        limit: limit.name,
        kind: "concurrent",
        available: Math.max(0, limit.capacity - live.count),
        capacity,
        msUntilFull: full,
        shards: 1,
      };
    }
    if (limit.quota) {
      // What is left in the current window (a quota is never sharded).
      const { target, state } = first;
      const w = quotaWindow(target.keys.get(limit.name)!, state?.limits.get(limit.name), nowMs);
      return {
        limit: limit.name,
        kind: "quota",
        available: Number(math.floorDiv(limit.capacityMilli - w.used, 1000n)),
        capacity,
        msUntilFull: w.used > 0n ? Number(w.end - nowMs) : 0,
        shards: 1,
      };
    }
    let milli = 0n;
    let full = 0n;
    for (const { target, state } of shards) {
      // The bucket's tokens and the credit past capacity (see docs/design.md, "Credit").
      const spec = target.specs.get(limit.name)!;
      const tat = tatOf(target, state, limit.name, nowMs);
      milli += math.availableMilli(spec, tat, nowMs) +
        (state?.limits.get(limit.name)?.credit ?? 0n);
      // Full when every shard is: the wait for its whole capacity, as timeUntilAvailable's.
      const w = math.waitMs(spec, tat, nowMs, spec.capacityMilli) ?? 0n;
      if (w > full) full = w;
    }
    return {
      limit: limit.name,
      kind: "rate",
      available: Number(math.floorDiv(milli, 1000n)),
      capacity,
      msUntilFull: Number(full),
      shards: shards.length,
    };
  });
}

/**
 * `needed` gated by soft limits alone asks a question with no answer (a soft limit never
 * refuses): a `ValidationError` naming the field, after the limits are resolved, before anything
 * is written.
 */
function checkSoftOnly(target: Target, needed: Map<string, bigint>, given: unknown): void {
  const named = target.limits.filter((l) => needed.has(l.name));
  if (named.length === 0 || named.some((l) => !l.soft)) return;
  throw new ValidationError(
    "needed",
    given,
    `names only soft limits (${named.map((l) => l.name).join(", ")}), which never refuse: ` +
      "name a hard limit",
  );
}

/** A limit's tat on a shard (or bucket) as read, never below its layout's start. */
function tatOf(
  target: Target,
  state: StoredBucket | undefined,
  name: string,
  nowMs: bigint,
): bigint | undefined {
  const spec = target.specs.get(name)!;
  return effectiveTat(
    spec,
    target.keys.get(name)!,
    state?.limits.get(name),
    nowMs,
    startTat(spec, target.sinceMs),
  );
}

/**
 * A concurrent limit's slots taken and not expired at `nowMs`, and the first and last expiry of
 * those.
 *
 * @example
 * ```ts
 * import { liveSlots } from "./reads.ts";
 * const st = { held: 2n, slots: new Map([["a", 5n], ["b", 20n]]) };
 * const live = liveSlots(st, 10n); // "a" expired at 5
 * console.assert(live.count === 1 && live.lastExpiry === 20n);
 * ```
 */
export function liveSlots(
  st: StoredLimit | undefined,
  nowMs: bigint,
): { count: number; firstExpiry?: bigint; lastExpiry?: bigint } {
  let expired = 0n;
  let firstExpiry: bigint | undefined;
  let lastExpiry: bigint | undefined;
  for (const exp of st?.slots?.values() ?? []) {
    if (exp < nowMs) expired++;
    else {
      if (firstExpiry === undefined || exp < firstExpiry) firstExpiry = exp;
      if (lastExpiry === undefined || exp > lastExpiry) lastExpiry = exp;
    }
  }
  return { count: Number((st?.held ?? 0n) - expired), firstExpiry, lastExpiry };
}
