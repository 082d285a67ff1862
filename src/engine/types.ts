/**
 * The types the write engine and the facade share: targets, the cached state of a bucket, plans,
 * and what a lease needs of its limiter. Below both, so the engine never imports the facade.
 *
 * @module
 */

import type * as math from "../bucket.ts";
import type { LimitStatus } from "../errors.ts";
import type { Limit } from "../limit.ts";
import type { FailureMode } from "../options.ts";
import type { BucketWrite, StoredBucket, StoredLimit, WriteOutcome } from "../repository.ts";
import type { ShardInfo } from "./shards.ts";

/** Seconds an idle, full bucket item lives before DynamoDB's TTL may delete it. */
export const BUCKET_GRACE_SECONDS = 3600n;

/** A bucket's limits with their specs. */
export interface Target {
  entityId: string;
  /** The resource part of the item's key (a shard's names the shard). */
  resource: string;
  limits: Limit[];
  specs: Map<string, math.BucketSpec>;
  keys: Map<string, string>;
  /** The shard this target is, for a sharded bucket. */
  shard?: ShardInfo;
  /** When the shard layout began: a missing or older item counts as empty then. */
  sinceMs?: bigint;
  /** When the shard layout hands over to a newer one: no refill counts past it. */
  untilMs?: bigint;
  /** How long an acquire's slot of a concurrent limit lasts (the call's `leaseTimeoutMs`). */
  leaseTimeoutMs?: bigint;
}

/** What the process knows of a bucket. */
export interface CachedBucket {
  /** Lower bound of each limit's tat, with the spec it is written under. */
  limits: Map<string, StoredLimit>;
  /** Lower bound of the item's write count. */
  writes?: bigint;
  /** The item's TTL as last seen or written (kept by writes to an item that holds credit). */
  ttl?: bigint;
}

/** A planned write with what it tells the caller. */
export interface Plan {
  write: BucketWrite;
  statuses: LimitStatus[];
  exceeded: boolean;
  /** Lower bounds of the tats after the write succeeds. */
  after: Map<string, StoredLimit>;
}

/** One bucket a lease consumed from. */
export interface LeaseTarget {
  /** Entity of the bucket. */
  entityId: string;
  /** Resource of the bucket. */
  resource: string;
  /** Specs of the limits applied, by name. */
  specs: Map<string, math.BucketSpec>;
  /** Spec keys of the limits applied, by name. */
  keys: Map<string, string>;
  /** Thousandths consumed per limit by the acquire. */
  consumed: Map<string, bigint>;
  /** Every limit's status just after the acquire. */
  statuses: LimitStatus[];
  /** Each quota's window start the acquire counted into (see docs/design.md, "Quotas"). */
  windows?: Map<string, bigint>;
  /** Shadow mode: the statuses of the limits that would have refused the acquire (none: absent). */
  shadowRefusals?: LimitStatus[];
  /** When the shard layout began (see `Target.sinceMs`). */
  sinceMs?: bigint;
  /** When the shard layout hands over (see `Target.untilMs`). */
  untilMs?: bigint;
  /**
   * The slots the acquire holds (its operation id, and the concurrent limits): a write of this
   * target frees them. A lease's writes that do not close it leave this out.
   */
  slot?: { id: string; names: string[] };
}

/** What a lease needs of its limiter. */
export interface LeaseOps {
  /** Writes per-target deltas (thousandths per limit) and a change of the request count. */
  write(
    targets: LeaseTarget[],
    deltas: Map<string, bigint>[],
    requests: number,
    operation: string,
  ): Promise<void>;
  /**
   * Takes more tokens on the lease's buckets (thousandths per limit) as an acquire would, counting
   * no request: per bucket, in the lease's order, what was taken and the statuses after (none when
   * the take was recorded for later: failed open). Throws `RateLimitExceeded` when refused.
   * Absent: the lease writes nothing (a bypassed lease).
   */
  take?(consume: Map<string, bigint>): Promise<LeaseTarget[]>;
}

/** An acquire (or a read) after validation. */
export interface ValidRequest {
  entityId: string;
  resource: string;
  /** Further resources consumed with `resource`, all or nothing (validated: none twice). */
  also?: string[];
  limits: Limit[];
  consume: Map<string, bigint> | Record<string, never>;
  cascade?: boolean;
  useStoredLimits: boolean;
  failureMode?: FailureMode;
  /** Serve from a batch of tokens (undefined: the limiter's setting). */
  batch?: boolean;
  /** Shadow mode for this call: never refuse, report (undefined: the limiter's setting). */
  shadow?: boolean;
  /** How long a slot of a concurrent limit lasts, ms (required with one). */
  leaseTimeoutMs?: number;
}

/** The outcome of one write of one or more bucket items. */
export type MultiOutcome =
  | { ok: true; items: (StoredBucket | undefined)[]; applied?: boolean }
  | { ok: false; olds: WriteOutcome[] };

/** The key of a bucket in the process's maps. */
export function bucketId(t: { entityId: string; resource: string }): string {
  return `${t.entityId}#${t.resource}`;
}

/** A target as a lease keeps it, before anything is consumed. */
export function asLeaseTarget(t: Target): LeaseTarget {
  return {
    entityId: t.entityId,
    resource: t.resource,
    specs: t.specs,
    keys: t.keys,
    consumed: new Map(),
    statuses: [],
    sinceMs: t.sinceMs,
    untilMs: t.untilMs,
  };
}
