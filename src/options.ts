/**
 * The options of {@link RateLimiter} and its calls, and {@link FailureMode}.
 *
 * @module
 */

import type * as aws from "./aws_types.ts";
import type { Backend } from "./backend.ts";
import type { LimitStatus } from "./errors.ts";
import type { Limit } from "./limit.ts";
import type { Logger } from "./logger.ts";
import type { RefusalCountsOptions } from "./refusals.ts";

/**
 * What `RateLimiterOptions.onShadowRefusal` is told of a shadow-mode acquire that would have been
 * refused (and was admitted).
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import type { ShadowRefusal } from "./options.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const seen: ShadowRefusal[] = [];
 * const limiter = createTestLimiter({ clock: () => 0, shadow: true,
 *   onShadowRefusal: (info) => seen.push(info) });
 * const limits = [Limit.perMinute("rpm", 1)];
 * for (let i = 0; i < 2; i++) {
 *   await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } });
 * }
 * console.assert(seen.length === 1 && seen[0].statuses[0].limitName === "rpm");
 * console.assert(limiter.shadowRefusals === 1);
 * ```
 */
export interface ShadowRefusal {
  /** The entity of the acquire. */
  entityId: string;
  /** The resource of the acquire. */
  resource: string;
  /** The limits that would have refused it, as they were before it (`exceeded: true`). */
  statuses: LimitStatus[];
}

/**
 * What to do when DynamoDB cannot answer in time: refuse (`FAIL_CLOSED`, the default) or let
 * the request through (`FAIL_OPEN`).
 *
 * @example
 * ```ts
 * import { FailureMode } from "./limiter.ts";
 * console.assert(FailureMode.FAIL_OPEN === "fail_open");
 * ```
 */
export const FailureMode = { FAIL_CLOSED: "fail_closed", FAIL_OPEN: "fail_open" } as const;
/**
 * One of {@link FailureMode}'s values.
 *
 * @example
 * ```ts
 * import { FailureMode } from "./limiter.ts";
 * const mode: FailureMode = FailureMode.FAIL_CLOSED;
 * console.assert(mode === "fail_closed");
 * ```
 */
export type FailureMode = typeof FailureMode[keyof typeof FailureMode];

/**
 * Options of {@link RateLimiter}.
 *
 * @example
 * ```ts
 * import { FailureMode, RateLimiter, type RateLimiterOptions } from "./limiter.ts";
 * const options: RateLimiterOptions = {
 *   tableName: "rate_limits",
 *   region: "eu-west-1",
 *   failureMode: FailureMode.FAIL_OPEN, // let requests through when DynamoDB is down
 *   timeoutMs: 500,
 * };
 * await using limiter = new RateLimiter(options);
 * console.assert(limiter.tableName === "rate_limits");
 * ```
 */
export interface RateLimiterOptions {
  /** The DynamoDB table. */
  tableName: string;
  /** AWS region. @default the SDK's default chain, or `"us-east-1"` with an `endpoint` */
  region?: string;
  /** Endpoint URL, e.g. DynamoDB Local's `http://localhost:8000`. */
  endpoint?: string;
  /** A client of your own; wins over `region` and `endpoint`. */
  client?: aws.DynamoDBClient;
  /** Create the table (indexes, TTL, stream) on first use when it is missing. @default false */
  createTable?: boolean;
  /**
   * Deploy the CloudFormation stack (table, aggregator, alarms, policies) on first use when it is
   * missing, through CloudFormation at `region` (or `endpoint`); `true` or the stack's settings.
   * The first call waits for the stack. For development: production deploys with the CLI.
   * @default false
   */
  createStack?: boolean | CreateStackSettings;
  /** Behaviour when DynamoDB cannot answer in time. @default FailureMode.FAIL_CLOSED */
  failureMode?: FailureMode;
  /**
   * The clock, epoch ms. All bucket time comes from it. An injected clock is used as is. The
   * default, `Date.now`, is checked against the time in DynamoDB's answers and corrected (with
   * one `console.warn` per change) when the host is off by more than `clockToleranceMs`; the
   * first write of a process waits for one answer. See "Clocks" in docs/design.md.
   * @default Date.now, corrected by DynamoDB's time
   */
  clock?: () => number;
  /**
   * How far (ms) the host's clock may be from DynamoDB's before the default clock is corrected.
   * A host within it can over- or under-spend a bucket by at most this long at the limit's rate.
   * `Infinity` never corrects. Ignored with an injected `clock` or `backend`. @default 1000
   */
  clockToleranceMs?: number;
  /** Deadline of each limiter call in ms, retries included. @default 2000 */
  timeoutMs?: number;
  /**
   * Who this limiter's admin changes are recorded as made by, in the audit trail.
   * @default the caller's ARN from STS `GetCallerIdentity` (asked once, on the first admin
   * change) when the table is on AWS or `stsEndpoint` is set; else `"local"`
   */
  principal?: string;
  /**
   * How long audit events are kept, days (the table's TTL removes them after).
   * @default the stack's `AuditRetentionDays` (read once from the table), else 90
   */
  auditRetentionDays?: number;
  /**
   * Where STS `GetCallerIdentity` is asked for the audit principal (e.g. a VPC endpoint or a
   * test server); set, it is asked even when DynamoDB is a local endpoint.
   * @default the region's STS endpoint, asked only when the table is on AWS
   */
  stsEndpoint?: string;
  /**
   * The namespace this limiter lives in: several applications share one table without seeing
   * each other's entities, limits, buckets, usage or audit events. A lower-case letter, then
   * lower-case letters, digits, `-` or `_`, at most 64 characters; `"default"` is the default
   * namespace (the table's un-prefixed keys). See docs/design.md, "Namespaces".
   * @default the default namespace
   */
  namespace?: string;
  /**
   * How long stored limits and entity metadata are cached, ms; 0 disables. An entry past it is
   * still used while one read refreshes it in the background; past twice it, it is read inline.
   * @default 60000
   */
  limitsCacheTtlMs?: number;
  /**
   * Refuse locally, with no DynamoDB call, a request the process already knows cannot pass
   * (it learnt the bucket's state from its last write). @default true
   */
  denyCache?: boolean;
  /** How many buckets the process remembers. @default 10000 */
  maxCachedBuckets?: number;
  /**
   * Shadow mode for every call (a call's own `shadow` wins): nothing is ever refused; each
   * would-be refusal is admitted, written into debt as a soft limit would be, and reported.
   * The deny cache refuses nothing then. @default false
   */
  shadow?: boolean;
  /**
   * Told of each shadow-mode acquire that would have been refused, once, after its write.
   * Errors it throws are ignored. @default none
   */
  onShadowRefusal?: (info: ShadowRefusal) => void;
  /**
   * Where the library's own warnings and errors go (the outbox giving up on a write, a failed
   * config refresh, `close()` leaving writes, the clock, the schema version): any object with
   * `warn(message, fields)` and `error(message, fields)`, such as `console` or a winston logger;
   * pino or bunyan through `fieldsFirst`. Fields never hold a secret, a request body or an entity
   * id (docs/usage.md, "Logs"). Errors it throws are ignored. @default the console, one line each
   */
  logger?: Logger;
  /**
   * Where state lives. @default DynamoDB, through `client` (or one made from `region`/`endpoint`).
   * `@zae/limiter/testing` offers an in-memory backend for unit tests.
   */
  backend?: Backend;
  /**
   * Count a request let through by FAIL_OPEN once DynamoDB is back (exactly once), so an outage
   * cannot be used to pass limits unaccounted. @default true
   */
  recordFailedOpen?: boolean;
  /**
   * Token batches, for keys and projects busier than one item takes (about 1,000 writes a second):
   * each process takes a batch of tokens from a bucket in one write and serves its own requests
   * from it with no call, returning what is left when the batch goes idle, ages, or the limiter
   * closes. Never admits early; may refuse early while other processes hold tokens (at most
   * `maxShare × capacity` per process). `true` for the defaults. See docs/hot-keys.md.
   * @default false
   */
  batches?: boolean | BatchOptions;
  /**
   * Double the shard count stored with an entity's limits (1 → 2 → 4 … 64) when DynamoDB throttles
   * a write to one of its buckets, so a hot key spreads over more items. Applies to calls with
   * `useStoredLimits` (shards are stored with the limits they split). See docs/hot-keys.md.
   * @default true
   */
  autoShard?: boolean;
  /**
   * Count refused acquires (each `RateLimitExceeded` an acquire throws, deny cache included; not
   * soft limits, shadow mode or disabled entities) in the hourly usage snapshots, attribute
   * `refused`, under the entity that asked and the call's `resource`. Counted in memory and written
   * in the background: one `UpdateItem` per entity, resource and hour with refusals every
   * `flushMs`, never a call per refusal; an outage keeps them for the next flush, and
   * `flush()` and `close()` write them. `false`: not counted. See docs/design.md, "Refusal
   * counts". @default true: `{ flushMs: 10000, maxKeys: 10000 }`
   */
  refusalCounts?: boolean | RefusalCountsOptions;
  /**
   * How long `close()` waits for writes kept back by an outage before it gives up on them (it
   * never throws for them; see `RateLimiter.close`). @default 5000
   */
  closeTimeoutMs?: number;
}

/**
 * How batches are sized and returned.
 *
 * @example
 * ```ts
 * import type { BatchOptions } from "./limiter.ts";
 * const batches: BatchOptions = { maxShare: 0.05, idleMs: 100 };
 * console.assert(batches.maxShare === 0.05);
 * ```
 */
export interface BatchOptions {
  /**
   * The largest share of a limit's capacity one process holds in one batch (0 < share ≤ 1): with
   * `P` processes, at most `P × share × capacity` tokens sit in batches while a request is refused.
   * @default 0.1
   */
  maxShare?: number;
  /** A batch unused this long (ms) goes back to the bucket. @default 250 */
  idleMs?: number;
  /** A batch older than this (ms) goes back to the bucket; a new one is taken when needed. @default 2000 */
  maxAgeMs?: number;
  /** How long (ms) a batch should last at the rate the process was served; sizes the next. @default 250 */
  holdMs?: number;
}

/**
 * Settings of `createStack`: the stack's name and parameters (see `@zae/limiter/infra`).
 *
 * @example
 * ```ts
 * import { type CreateStackSettings, RateLimiter } from "./limiter.ts";
 * const createStack: CreateStackSettings = { stackName: "limits-dev", aggregator: false };
 * // The stack is deployed by the first call, not by the constructor.
 * await using limiter = new RateLimiter({ tableName: "rate_limits", region: "eu-west-1", createStack });
 * console.assert(limiter.tableName === "rate_limits");
 * ```
 */
export interface CreateStackSettings {
  /** The stack. @default `zae-limiter-{tableName}` */
  stackName?: string;
  /** Deploy the usage aggregator Lambda. @default true */
  aggregator?: boolean;
  /** Days usage snapshots are kept. @default 90 */
  snapshotRetentionDays?: number;
}

/**
 * Options of {@link RateLimiter.acquire}.
 *
 * @example
 * ```ts
 * import type { AcquireOptions } from "./limiter.ts";
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const request: AcquireOptions = {
 *   entityId: "key-1",
 *   resource: "gpt-4",
 *   limits: [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)],
 *   consume: { rpm: 1, tpm: 500 },
 * };
 * const lease = await createTestLimiter().acquire(request);
 * await lease.commit();
 * console.assert(lease.consumed.rpm === 1 && lease.consumed.tpm === 500);
 * ```
 */
export interface AcquireOptions {
  /** Who consumes, e.g. an API key id. */
  entityId: string;
  /** What is consumed, e.g. a model name. */
  resource: string;
  /**
   * Further resources to consume from in the same write, e.g. `["all-models"]`: each resource's
   * bucket (and its parent's with cascade) is debited, all or nothing, in one transaction. Each
   * resource resolves its own limits as `resource` does (stored ones, else the call's `limits`,
   * which apply to every resource alike), and each `consume` amount is taken from every bucket
   * that has a limit of that name. At most 49 resources (99 with `cascade: false`): a DynamoDB
   * transaction holds 100 items. @default none
   */
  also?: string[];
  /**
   * The limits to apply: the last fallback when `useStoredLimits` finds none stored. Absent:
   * stored limits are used (entity+resource, entity-wide, resource default, system default), and
   * a call for which none is stored throws `ValidationError`. @default stored limits
   */
  limits?: Limit[];
  /** Tokens to take per limit name, e.g. `{ rpm: 1, tpm: 500 }`. Unnamed limits take 0. */
  consume: Record<string, number>;
  /** Also consume from the entity's parent. @default the entity's stored `cascade` flag */
  cascade?: boolean;
  /**
   * Stored limits win over `limits`: those of the entity (and of its parent) for the resource,
   * else entity-wide, else the resource's default, else the system default.
   * @default false, or true when `limits` is absent
   */
  useStoredLimits?: boolean;
  /** This call's failure mode. @default the limiter's */
  failureMode?: FailureMode;
  /**
   * Serve this request from a batch of tokens this process holds (see `RateLimiterOptions.batches`).
   * `true` uses the limiter's batch settings, or the defaults when the limiter has none.
   * @default whether the limiter has `batches`
   */
  batch?: boolean;
  /**
   * Shadow mode for this call: evaluated and recorded as usual, but never refused; a would-be
   * refusal is admitted, written into debt and reported (`lease.shadowRefused`, the limiter's
   * `onShadowRefusal` and `shadowRefusals`). Such a call writes through, never from a batch.
   * See docs/usage.md, "Trying a new limit on live traffic". @default the limiter's `shadow`
   */
  shadow?: boolean;
  /**
   * How long the lease may hold a slot of a concurrent limit ({@link Limit.concurrent}), in
   * milliseconds (a whole number from 1 to 3 600 000). Required when the call has a concurrent
   * limit: a slot whose lease is not closed by then (a crashed process) is taken back by a later
   * acquire, and the late lease's `commit` throws `LeaseExpiredError`. @default none
   */
  leaseTimeoutMs?: number;
}

/**
 * Options of {@link RateLimiter.available}.
 *
 * @example
 * ```ts
 * import type { AvailableOptions } from "./limiter.ts";
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const query: AvailableOptions = {
 *   entityId: "key-1",
 *   resource: "gpt-4",
 *   limits: [Limit.perMinute("rpm", 100)],
 * };
 * const { rpm } = await createTestLimiter().available(query);
 * console.assert(rpm === 100); // a bucket never used is full
 * ```
 */
export interface AvailableOptions {
  /** The entity. */
  entityId: string;
  /** The resource. */
  resource: string;
  /** The limits to evaluate (the last fallback when stored limits win). @default stored limits */
  limits?: Limit[];
  /**
   * Stored limits win over `limits` (the four levels, as in an acquire).
   * @default false, or true when `limits` is absent
   */
  useStoredLimits?: boolean;
}

/**
 * Options of {@link RateLimiter.timeUntilAvailable}.
 *
 * @example
 * ```ts
 * import type { TimeUntilAvailableOptions } from "./limiter.ts";
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter({ clock: () => 0 });
 * const limits = [Limit.perMinute("rpm", 60)];
 * await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 60 } });
 * const query: TimeUntilAvailableOptions = { entityId: "key-1", resource: "api", limits,
 *   needed: { rpm: 2 } };
 * console.assert(await limiter.timeUntilAvailable(query) === 2); // one token a second
 * ```
 */
export interface TimeUntilAvailableOptions extends AvailableOptions {
  /** Tokens needed per limit name. */
  needed: Record<string, number>;
}

/**
 * Options of {@link RateLimiter.createEntity}.
 *
 * @example
 * ```ts
 * import type { CreateEntityOptions } from "./limiter.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * await limiter.createEntity({ entityId: "proj-1", name: "Project 1" });
 * const key: CreateEntityOptions = { entityId: "key-1", parentId: "proj-1", cascade: true,
 *   metadata: { owner: "ana" } };
 * const entity = await limiter.createEntity(key);
 * console.assert(entity.parentId === "proj-1" && entity.cascade);
 * ```
 */
export interface CreateEntityOptions {
  /** The new entity's id. */
  entityId: string;
  /** A display name. */
  name?: string;
  /** The parent (a top-level entity). */
  parentId?: string;
  /** Whether acquires cascade to the parent by default. @default false */
  cascade?: boolean;
  /** String metadata. @default {} */
  metadata?: Record<string, string>;
}

/**
 * One entity's bucket for a resource, from {@link RateLimiter.listResourceBuckets}.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter({ clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 3 } });
 * const [bucket] = await limiter.listResourceBuckets({ resource: "gpt-4" });
 * console.assert(bucket.entityId === "key-1" && bucket.available.rpm === 7);
 * console.assert(bucket.capacity.rpm === 10);
 * ```
 */
export interface ResourceBucket {
  /** The entity. */
  entityId: string;
  /** The resource. */
  resource: string;
  /** Tokens available now per limit name (as stored in the bucket), rounded down. */
  available: Record<string, number>;
  /** Capacity per limit name. */
  capacity: Record<string, number>;
}
