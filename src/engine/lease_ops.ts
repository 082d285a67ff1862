/**
 * Free-standing parts of `LeaseEngine`'s acquire and lease writes: shard retries, the
 * buckets a call owns, the failed-open lease operations (through the outbox), and small checks.
 *
 * @module
 */

import { LeaseExpiredError, type RateLimitExceeded, ValidationError } from "../errors.ts";
import { Op } from "./op.ts";
import type { Outbox } from "./outbox.ts";
import { makeTarget } from "./plan.ts";
import { pickShard } from "./shards.ts";
import { bucketId, type LeaseOps, type Target, type ValidRequest } from "./types.ts";

/** Shards a refused request tries in all (the first and up to two others). */
export const SHARD_TRIES = 3;

/**
 * The targets with another shard for each sharded target that refused (per the statuses), or
 * `undefined` when none of them has a shard left to try.
 */
export function otherShards(
  targets: Target[],
  tried: Set<number>[],
  refusal: RateLimitExceeded,
): Target[] | undefined {
  let changed = false;
  const next = targets.map((t, i) => {
    const shard = t.shard;
    const refused = refusal.statuses.some((s) =>
      s.exceeded && s.entityId === t.entityId && s.resource === (shard?.resource ?? t.resource)
    );
    if (!shard || !refused) return t;
    const index = pickShard(shard.count, tried[i]);
    if (index === undefined) return t;
    tried[i].add(index);
    changed = true;
    return makeTarget(t.entityId, shard.resource, shard.whole, { ...shard, index });
  });
  return changed ? next : undefined;
}

/** The entity's own buckets of a call: one per resource (its primary and `also`). */
export function ownBuckets(req: ValidRequest): string[] {
  return [req.resource, ...(req.also ?? [])].map((resource) =>
    bucketId({ entityId: req.entityId, resource })
  );
}

/**
 * Lease operations of a failed-open lease: every write goes through the outbox, which runs
 * `ensureConsumed` (the engine's exactly-once write of what the lease took) once DynamoDB is back.
 */
export function failedOpenOps(
  outbox: Outbox,
  req: ValidRequest,
  ensureConsumed: (
    req: ValidRequest,
    deltas: Map<string, bigint>,
    requests: number,
    op: Op,
    atMs: bigint | undefined,
    deadline: number,
  ) => Promise<void>,
): LeaseOps {
  const write: LeaseOps["write"] = (_targets, deltas, requests, operation) => {
    const op = new Op();
    outbox.add({
      label: `failed-open ${operation} ${req.entityId}/${req.resource}`,
      operation: `failed_open.${operation}`,
      resource: req.resource,
      buckets: ownBuckets(req),
      run: (d) => ensureConsumed(req, deltas[0], requests, op, undefined, d),
    });
    return Promise.resolve();
  };
  // A stream on a lease that failed open takes without asking, recorded like its acquire.
  return { write, take: (consume) => write([], [consume], 0, "consume").then(() => []) };
}

/** Swallows a `LeaseExpiredError` (its write was made; only the slot was gone). */
export function ignoreExpired(err: unknown): void {
  if (!(err instanceof LeaseExpiredError)) throw err;
}

/**
 * Token batches hold tokens of a bucket for later requests: a quota's window may reset under a
 * batch, so a quota is never served from one. Refused before any write.
 */
export function refuseQuotaBatch(targets: Target[], given: boolean | undefined): void {
  for (const t of targets) {
    const q = t.limits.find((l) => l.quota);
    if (q) {
      throw new ValidationError(
        "batch",
        given ?? "the limiter's batches setting",
        `cannot serve limit ${q.name}: a quota is never served from token batches`,
      );
    }
  }
}
