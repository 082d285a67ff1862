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
import { effectiveTat } from "./engine/plan.ts";
import type { Target } from "./engine/types.ts";
import type { BucketWriter } from "./engine/writer.ts";
import { ValidationError } from "./errors.ts";
import type { AvailableOptions, TimeUntilAvailableOptions } from "./options.ts";
import type { StoredBucket } from "./repository.ts";
import { validateLimits } from "./request.ts";
import { amountsToMilli, validateEntityId, validateResource } from "./validate.ts";

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

  async available(options: AvailableOptions): Promise<Record<string, number>> {
    const { target, state, nowMs } = await this.#read(options, {});
    const out: Record<string, number> = {};
    for (const limit of target.limits) {
      const spec = target.specs.get(limit.name)!;
      const tat = effectiveTat(
        spec,
        target.keys.get(limit.name)!,
        state?.limits.get(limit.name),
        nowMs,
      );
      out[limit.name] = Number(math.floorDiv(math.availableMilli(spec, tat, nowMs), 1000n));
    }
    return out;
  }

  async timeUntilAvailable(options: TimeUntilAvailableOptions): Promise<number> {
    const { target, state, nowMs, needed } = await this.#read(options, options);
    let wait = 0n;
    for (const limit of target.limits) {
      const spec = target.specs.get(limit.name)!;
      const tat = effectiveTat(
        spec,
        target.keys.get(limit.name)!,
        state?.limits.get(limit.name),
        nowMs,
      );
      const w = math.waitMs(spec, tat, nowMs, needed.get(limit.name) ?? 0n);
      if (w === undefined) return Infinity;
      if (w > wait) wait = w;
    }
    return Number(wait) / 1000;
  }

  async #read(
    options: AvailableOptions,
    extra: { needed?: Record<string, number> },
  ): Promise<{ target: Target; state?: StoredBucket; nowMs: bigint; needed: Map<string, bigint> }> {
    if (options === null || typeof options !== "object") {
      throw new ValidationError("options", options, "must be an object");
    }
    const entityId = validateEntityId(options.entityId);
    const resource = validateResource(options.resource);
    const limits = validateLimits(options.limits, options.useStoredLimits === true);
    const useStored = options.useStoredLimits === true;
    const names = new Set(limits.map((l) => l.name));
    const needed = "needed" in options
      ? amountsToMilli("needed", extra.needed, useStored ? "any" : names, {
        allowNegative: false,
      })
      : new Map<string, bigint>();
    let deadline = Date.now() + this.#timeoutMs;
    try {
      deadline += await this.#ready(deadline); // the set-up may take longer than a call
      const [target] = await this.#config.resolveTargets(
        { entityId, resource, limits, consume: {}, cascade: false, useStoredLimits: useStored },
        deadline,
        "read",
      );
      const nowMs = this.#writer.now();
      const state = await this.#writer.call(
        undefined,
        (signal) => this.#backend.buckets.getBucket(entityId, resource, signal),
        deadline,
        "read",
      );
      if (state) this.#writer.remember(target, state.limits, state.writes);
      return { target, state, nowMs, needed };
    } catch (err) {
      throw this.#writer.fail(err, "read");
    }
  }
}
