/**
 * Automatic sharding: when DynamoDB throttles a write to a bucket whose limits are stored, the
 * stored shard count doubles (1 → 2 → 4 … up to 64), by a conditional update that only one of the
 * processes that saw the throttle wins. Every process picks the new count up with its limits.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { checkShards, MAX_SHARDS, scheduleChange } from "./shards.ts";
import type { Target } from "./types.ts";
import type { BucketWriter } from "./writer.ts";

/** How long a process waits before it asks again to double the same bucket, ms (real time). */
const DOUBLE_EVERY_MS = 1_000;

/** Options of {@link AutoSharder}. */
export interface AutoSharderOptions {
  backend: Backend;
  writer: BucketWriter;
  /** Forgets an entity's cached limits (so the next call reads the new count). */
  forget: (entityId: string) => void;
  timeoutMs: number;
  /** How long after a change the new count takes over (see `switchDelayMs`). */
  switchDelayMs: number;
}

/** Doubles the stored shard count of buckets DynamoDB throttles. */
export class AutoSharder {
  readonly #options: AutoSharderOptions;
  /** Per bucket, when this process last asked (real time). */
  readonly #asked = new Map<string, number>();

  constructor(options: AutoSharderOptions) {
    this.#options = options;
  }

  /** A write to `t` was throttled. */
  observe = (t: Target): void => {
    const shard = t.shard;
    if (!shard) return; // the call's own limits: nothing stored to split
    if (shard.untilMs !== undefined) return; // a change is already scheduled
    const to = shard.count * 2;
    if (to > MAX_SHARDS) return;
    try {
      checkShards("shards", to, shard.whole);
    } catch {
      return; // shards that small would refuse requests the limits allow
    }
    const id = `${t.entityId}#${shard.source ?? "*"}`;
    const now = Date.now();
    if (now - (this.#asked.get(id) ?? -Infinity) < DOUBLE_EVERY_MS) return;
    this.#asked.set(id, now);
    if (this.#asked.size > 10_000) this.#asked.delete(this.#asked.keys().next().value!);
    const { backend, writer, forget, timeoutMs, switchDelayMs } = this.#options;
    const nowMs = Number(writer.now());
    // The layout in force now becomes the previous one; the doubled one takes over later.
    const stored = {
      count: shard.count,
      ...(shard.sinceMs === undefined ? {} : { sinceMs: Number(shard.sinceMs) }),
    };
    const next = scheduleChange("shards", stored, to, nowMs, switchDelayMs);
    writer.call(
      undefined,
      (signal) =>
        backend.entities.reshard(t.entityId, shard.source, shard.count, next, nowMs, signal),
      Date.now() + timeoutMs,
      "reshard",
    ).then(
      () => forget(t.entityId), // doubled, or changed by another process: read it again
      () => {}, // an outage: the next throttle asks again
    );
  };
}
