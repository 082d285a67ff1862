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
    const { shards, nowMs } = await this.#read(options, {});
    const out: Record<string, number> = {};
    for (const limit of shards[0].target.limits) {
      if (limit.concurrent) {
        // Free slots: the expired ones count as free (the next acquire takes them back).
        const live = liveSlots(shards[0].state?.limits.get(limit.name), nowMs);
        out[limit.name] = Math.max(0, limit.capacity - live.count);
        continue;
      }
      if (limit.quota) {
        // What is left in the current window (a quota is never sharded).
        const { target, state } = shards[0];
        const w = quotaWindow(target.keys.get(limit.name)!, state?.limits.get(limit.name), nowMs);
        out[limit.name] = Number(math.floorDiv(limit.capacityMilli - w.used, 1000n));
        continue;
      }
      let milli = 0n;
      for (const { target, state } of shards) {
        // The bucket's tokens and the credit past capacity (see docs/design.md, "Credit").
        milli += math.availableMilli(
          target.specs.get(limit.name)!,
          tatOf(target, state, limit.name, nowMs),
          nowMs,
        ) + (state?.limits.get(limit.name)?.credit ?? 0n);
      }
      out[limit.name] = Number(math.floorDiv(milli, 1000n));
    }
    return out;
  }

  /** Seconds until `needed` can pass; on a sharded bucket, on the first shard it can pass on. */
  async timeUntilAvailable(options: TimeUntilAvailableOptions): Promise<number> {
    const { shards, nowMs, needed } = await this.#read(options, options);
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
  ): Promise<
    {
      shards: { target: Target; state?: StoredBucket }[];
      nowMs: bigint;
      needed: Map<string, bigint>;
    }
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
      const nowMs = this.#writer.now();
      const { targets: [first], controls, noLimits } = await this.#config.resolve(
        { entityId, resource, limits, consume: {}, cascade: false, useStoredLimits: useStored },
        deadline,
        "read",
        nowMs,
      );
      gate({ entityId, resource }, controls); // a disabled entity or resource says so here too
      if (noLimits) throw noLimits;
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
        if (state) this.#writer.remember(target, state.limits, state.writes, state.ttl);
        return { target, state };
      }));
      return { shards, nowMs, needed };
    } catch (err) {
      throw this.#writer.fail(err, "read");
    }
  }
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

/** A concurrent limit's slots taken and not expired at `nowMs`, and the first expiry of those. */
function liveSlots(
  st: StoredLimit | undefined,
  nowMs: bigint,
): { count: number; firstExpiry?: bigint } {
  let expired = 0n;
  let firstExpiry: bigint | undefined;
  for (const exp of st?.slots?.values() ?? []) {
    if (exp < nowMs) expired++;
    else if (firstExpiry === undefined || exp < firstExpiry) firstExpiry = exp;
  }
  return { count: Number((st?.held ?? 0n) - expired), firstExpiry };
}
