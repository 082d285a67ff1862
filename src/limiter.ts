/**
 * {@link RateLimiter}: acquire tokens from DynamoDB-backed buckets.
 *
 * @module
 */

import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import process from "node:process";
import * as math from "./bucket.ts";
import { TtlCache } from "./cache.ts";
import type * as aws from "./aws_types.ts";
import { type Backend, dynamoBackend } from "./backend.ts";
import type { Entity, EntityConfig } from "./entities.ts";
import {
  type LimitStatus,
  RateLimiterUnavailable,
  RateLimitExceeded,
  ValidationError,
  ZaeLimiterError,
} from "./errors.ts";
import { Lease, type LeaseTarget } from "./lease.ts";
import { Limit } from "./limit.ts";
import {
  type BucketWrite,
  cancelId,
  type LimitOp,
  type StoredBucket,
  type StoredLimit,
  type WriteOutcome,
} from "./repository.ts";
import { DeadlineExceeded, mayHaveApplied, withRetries } from "./retry.ts";
import { Outbox } from "./outbox.ts";
import { OP_WINDOW } from "./keys.ts";
import {
  getUsageSnapshots,
  getUsageSummary,
  type UsageQuery,
  type UsageSnapshot,
  type UsageSummary,
} from "./usage.ts";
import { amountsToMilli, validateEntityId, validateResource } from "./validate.ts";

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

/** Seconds an idle, full bucket item lives before DynamoDB's TTL may delete it. */
export const BUCKET_GRACE_SECONDS = 3600n;

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
  /** The clock, epoch ms. All bucket time comes from it. @default Date.now */
  clock?: () => number;
  /** Deadline of each limiter call in ms, retries included. @default 2000 */
  timeoutMs?: number;
  /** How long stored limits and entity metadata are cached, ms; 0 disables. @default 60000 */
  limitsCacheTtlMs?: number;
  /**
   * Refuse locally, with no DynamoDB call, a request the process already knows cannot pass
   * (it learnt the bucket's state from its last write). @default true
   */
  denyCache?: boolean;
  /** How many buckets the process remembers. @default 10000 */
  maxCachedBuckets?: number;
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
  /** How long `close()` waits for writes kept back by an outage. @default 10000 */
  closeTimeoutMs?: number;
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
  /** The limits to apply (the fallback when `useStoredLimits` finds none stored). */
  limits: Limit[];
  /** Tokens to take per limit name, e.g. `{ rpm: 1, tpm: 500 }`. Unnamed limits take 0. */
  consume: Record<string, number>;
  /** Also consume from the entity's parent. @default the entity's stored `cascade` flag */
  cascade?: boolean;
  /** Use limits stored in DynamoDB for the entity (and its parent). @default false */
  useStoredLimits?: boolean;
  /** This call's failure mode. @default the limiter's */
  failureMode?: FailureMode;
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
  /** The limits to evaluate. */
  limits: Limit[];
  /** Use the entity's stored limits. @default false */
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

/** A bucket's limits with their per-call amounts. */
interface Target {
  entityId: string;
  resource: string;
  limits: Limit[];
  specs: Map<string, math.BucketSpec>;
  keys: Map<string, string>;
}

interface CachedBucket {
  /** Lower bound of each limit's tat, with the spec it is written under. */
  limits: Map<string, StoredLimit>;
  /** Lower bound of the item's write count. */
  writes?: bigint;
}

interface Plan {
  write: BucketWrite;
  statuses: LimitStatus[];
  exceeded: boolean;
  /** Lower bounds of the tats after the write succeeds. */
  after: Map<string, StoredLimit>;
}

const MAX_ATTEMPTS = 50;

/** Writes of one process in flight on one bucket at most (half the operation id window). */
const SLOTS_PER_BUCKET = Math.max(1, Math.floor(OP_WINDOW / 2));

/**
 * A fresh operation id: 12 random base-36 characters (about 62 bits), so two operations in one
 * item's window of 32 share an id with a chance of about 2 × 10⁻¹⁶ (a shared id would make the
 * newer one look applied).
 */
export function newOpId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n.toString(36).padStart(12, "0").slice(-12);
}

/**
 * One logical write (an acquire, a commit, a rollback...) and every attempt at it: its id, and per
 * bucket the bound on the item's write count that its attempts carry. Once an attempt may have
 * landed unseen the bounds are frozen, so a late or resent copy can never pass after its id has
 * left the item's window (see docs/design.md, "Exactly once through outages").
 */
export class Op {
  /** The operation id written into the item's window. */
  readonly id: string;
  /** Whether an attempt may have landed without the answer reaching us. */
  ambiguous = false;
  readonly #bounds = new Map<string, bigint>();

  /** @param id The operation id. @default a fresh one */
  constructor(id: string = newOpId()) {
    this.id = id;
  }

  /** The write-count bound for a bucket, from a lower bound of its current count. */
  bound(bucket: string, knownWrites: bigint | undefined): bigint {
    const frozen = this.#bounds.get(bucket);
    if (frozen !== undefined && this.ambiguous) return frozen;
    const bound = (knownWrites ?? 0n) + BigInt(OP_WINDOW);
    this.#bounds.set(bucket, bound);
    return bound;
  }
}

/**
 * Whether an operation landed cannot be known any more: its answer was lost and its item then
 * took more writes than the window of recent operation ids keeps. Found in
 * `RateLimiter.unresolvedWrites`; never guessed.
 *
 * @example
 * ```ts
 * import { UncertainOutcome } from "./limiter.ts";
 * const e = new UncertainOutcome("commit of key-1/gpt-4");
 * console.assert(e.message.startsWith("Cannot tell whether commit of key-1/gpt-4"));
 * ```
 */
export class UncertainOutcome extends ZaeLimiterError {
  /**
   * Creates the error.
   *
   * @param what The operation.
   */
  constructor(what: string) {
    super(
      `Cannot tell whether ${what} was applied: its item took ${OP_WINDOW} more writes before ` +
        "DynamoDB answered",
    );
  }
}

function asLeaseTarget(t: Target): LeaseTarget {
  return {
    entityId: t.entityId,
    resource: t.resource,
    specs: t.specs,
    keys: t.keys,
    consumed: new Map(),
    statuses: [],
  };
}

type MultiOutcome =
  | { ok: true; items: (StoredBucket | undefined)[] }
  | { ok: false; olds: WriteOutcome[] };

/**
 * A distributed rate limiter: token buckets stored in one DynamoDB table.
 *
 * @example
 * ```ts ignore
 * import { Limit, RateLimiter } from "./limiter.ts";
 * const limiter = new RateLimiter({ tableName: "rate_limits", endpoint: "http://localhost:8000", createTable: true });
 * await limiter.acquire({
 *   entityId: "key-1", resource: "gpt-4",
 *   limits: [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)],
 *   consume: { rpm: 1, tpm: 500 },
 * }, async (lease) => {
 *   await lease.adjust({ tpm: 120 }); // the answer used 620 tokens
 * });
 * ```
 */
export class RateLimiter implements AsyncDisposable {
  /** The table. */
  readonly tableName: string;
  /** The DynamoDB client in use. */
  readonly client: aws.DynamoDBClient;
  readonly #ownsClient: boolean;
  readonly #backend: Backend;
  readonly #clock: () => number;
  readonly #timeoutMs: number;
  readonly #failureMode: FailureMode;
  readonly #denyCache: boolean;
  readonly #createTable: boolean;
  readonly #createStack?: CreateStackSettings & { region?: string; endpoint?: string };
  #ready?: Promise<void>;
  readonly #buckets: TtlCache<string, CachedBucket>;
  readonly #config: TtlCache<string, { value: EntityConfig }>;
  #closed = false;
  readonly #outbox: Outbox;
  #reported = 0;
  /** Config reads under way, shared by concurrent cold calls. */
  readonly #configLoads = new Map<string, Promise<Map<string, EntityConfig>>>();
  /**
   * Per bucket, this process's writes in flight and the tats they will leave (a guess for new
   * writes).
   */
  readonly #inFlight = new Map<string, { writes: number; tats: Map<string, bigint> }>();
  readonly #slotQueues = new Map<string, { busy: number; waiters: (() => void)[] }>();
  readonly #recordFailedOpen: boolean;
  readonly #closeTimeoutMs: number;

  /**
   * Makes a limiter over one table. Nothing is sent to DynamoDB until the first call; the
   * options are checked at once.
   *
   * @param options See {@link RateLimiterOptions}.
   * @throws {ValidationError} When an option breaks its rule (e.g. a `tableName` DynamoDB refuses).
   *
   * @example
   * ```ts
   * import { RateLimiter } from "./limiter.ts";
   * const limiter = new RateLimiter({ tableName: "rate_limits", region: "us-east-1" });
   * console.assert(limiter.tableName === "rate_limits");
   * await limiter.close();
   * ```
   */
  constructor(options: RateLimiterOptions) {
    if (options === null || typeof options !== "object") {
      throw new ValidationError("options", options, "must be an object");
    }
    const {
      tableName,
      region,
      endpoint,
      client,
      createTable = false,
      failureMode = FailureMode.FAIL_CLOSED,
      clock = Date.now,
      timeoutMs = 2000,
      limitsCacheTtlMs = 60_000,
      denyCache = true,
      maxCachedBuckets = 10_000,
      backend,
      recordFailedOpen = true,
      closeTimeoutMs = 10_000,
      createStack = false,
    } = options;
    if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
      throw new ValidationError(
        "tableName",
        tableName,
        "must be 3-255 characters of letters, digits, _ . -",
      );
    }
    checkFailureMode("failureMode", failureMode);
    if (typeof clock !== "function") {
      throw new ValidationError("clock", clock, "must be a function");
    }
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new ValidationError("timeoutMs", timeoutMs, "must be a finite number > 0");
    }
    if (!(limitsCacheTtlMs >= 0)) {
      throw new ValidationError("limitsCacheTtlMs", limitsCacheTtlMs, "must be a number >= 0");
    }
    this.tableName = tableName;
    this.#ownsClient = client === undefined;
    this.client = client ?? makeClient({ region, endpoint });
    this.#backend = backend ?? dynamoBackend(this.client, tableName);
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.#failureMode = failureMode;
    this.#denyCache = denyCache;
    this.#createTable = createTable;
    this.#createStack = createStack === false ? undefined : {
      ...(createStack === true ? {} : createStack),
      region,
      endpoint,
    };
    this.#buckets = new TtlCache(Infinity, maxCachedBuckets);
    this.#config = new TtlCache(limitsCacheTtlMs, maxCachedBuckets);
    this.#recordFailedOpen = recordFailedOpen;
    this.#closeTimeoutMs = closeTimeoutMs;
    this.#outbox = new Outbox({
      attemptMs: timeoutMs,
      isTransient: (err) => err instanceof RateLimiterUnavailable,
    });
  }

  /**
   * Takes `consume` tokens from every limit at once, or none: returns a {@link Lease}, or throws
   * {@link RateLimitExceeded} carrying every limit's status.
   *
   * With a callback, the lease is committed when `fn` returns and rolled back when it throws
   * (the error is rethrown); the callback's result is returned.
   *
   * @example
   * ```ts ignore
   * await using lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("rpm", 100)], consume: { rpm: 1 } });
   * ```
   */
  acquire(options: AcquireOptions): Promise<Lease>;
  /**
   * Takes `consume` tokens from every limit at once, or none, then runs `fn` with the lease:
   * commits it when `fn` returns, rolls it back when `fn` throws (the error is rethrown).
   * Returns what `fn` returns; throws {@link RateLimitExceeded} without calling `fn` when a limit
   * lacks tokens.
   *
   * @example
   * ```ts ignore
   * const answer = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("tpm", 10_000)], consume: { tpm: 500 } }, async (lease) => {
   *   const used = 620; // from the LLM's answer
   *   await lease.adjust({ tpm: used - 500 });
   *   return used;
   * });
   * ```
   */
  acquire<T>(options: AcquireOptions, fn: (lease: Lease) => T | Promise<T>): Promise<T>;
  async acquire<T>(
    options: AcquireOptions,
    fn?: (lease: Lease) => T | Promise<T>,
  ): Promise<Lease | T> {
    const lease = await this.#acquire(options);
    if (fn === undefined) return lease;
    let result: T;
    try {
      result = await fn(lease);
    } catch (err) {
      await lease.rollback();
      throw err;
    }
    await lease.commit();
    return result;
  }

  async #acquire(options: AcquireOptions): Promise<Lease> {
    this.#checkOpen();
    const req = validateAcquire(options);
    const mode = req.failureMode ?? this.#failureMode;
    const deadline = Date.now() + this.#timeoutMs;
    const op = new Op();
    let nowMs = 0n;
    let targets: Target[] | undefined;
    let milli: Map<string, bigint>[] = [];
    try {
      await this.#ensureReady(deadline);
      nowMs = this.#now();
      targets = await this.#resolveTargets(req, deadline);
      milli = targets.map((t) => amountsFor(t, req.consume));
      const leaseTargets = await this.#consume(targets, milli, nowMs, deadline, op);
      return new Lease({ limiter: this.#leaseOps(), targets: leaseTargets, failedOpen: false });
    } catch (err) {
      if (err instanceof ZaeLimiterError && !(err instanceof RateLimiterUnavailable)) throw err;
      const unavailable = err instanceof RateLimiterUnavailable
        ? err
        : new RateLimiterUnavailable("acquire", unwrap(err));
      const uncertain = op.ambiguous;
      if (mode === FailureMode.FAIL_OPEN) {
        // Let the request through, and count it once DynamoDB is back (exactly once: same id);
        // its adjustments and rollback follow it through the outbox.
        const record = this.#recordFailedOpen && nowMs > 0n;
        if (record) {
          const at = nowMs;
          this.#outbox.add({
            label: `failed-open acquire ${req.entityId}/${req.resource}`,
            buckets: targets?.map(bucketId) ?? [`${req.entityId}#${req.resource}`],
            run: (d) => this.#ensureConsumed(req, req.consume, 1, op, at, d),
          });
        }
        return new Lease({
          limiter: record ? this.#failedOpenOps(req) : { write: () => Promise.resolve() },
          targets: [],
          failedOpen: true,
          cause: unavailable,
          requested: req.consume,
        });
      }
      if (uncertain && targets) {
        // The caller is told "refused": make sure the write, if it landed, is not counted.
        const ts = targets, ms = milli, giveBack = new Op(`${op.id}r`);
        this.#outbox.add({
          label: `refused acquire ${req.entityId}/${req.resource}`,
          buckets: ts.map(bucketId),
          run: (d) => this.#ensureNotConsumed(ts, ms, op, giveBack, d),
        });
      }
      throw unavailable;
    }
  }

  /**
   * Writes what a failed-open lease took (or adjusted, or gave back) once DynamoDB is back,
   * exactly once under `opId` (the acquire's own id: if its write landed after all, nothing more).
   */
  async #ensureConsumed(
    req: ValidRequest,
    deltas: Map<string, bigint>,
    requests: number,
    op: Op,
    atMs: bigint | undefined,
    deadline: number,
  ) {
    const targets = await this.#resolveTargets(req, deadline);
    for (const t of targets) {
      const mine = new Map([...deltas].filter(([name]) => t.specs.has(name)));
      // The same id on every item: each item's window recognises the original write.
      await this.#adjust(asLeaseTarget(t), mine, requests, deadline, op, atMs);
    }
  }

  /** Lease operations of a failed-open lease: every write goes through the outbox. */
  #failedOpenOps(req: ValidRequest): LeaseOps {
    return {
      write: (_targets, deltas, requests, operation) => {
        const op = new Op();
        this.#outbox.add({
          label: `failed-open ${operation} ${req.entityId}/${req.resource}`,
          buckets: [`${req.entityId}#${req.resource}`],
          run: (d) => this.#ensureConsumed(req, deltas[0], requests, op, undefined, d),
        });
        return Promise.resolve();
      },
    };
  }

  /** Makes sure an acquire the caller was told failed is not counted. */
  async #ensureNotConsumed(
    targets: Target[],
    milli: Map<string, bigint>[],
    op: Op,
    giveBack: Op,
    deadline: number,
  ): Promise<void> {
    const nowMs = this.#now();
    const first = bucketId(targets[0]);
    // Cancel the acquire on its first item: the mark puts `id!` in the window, after which a late
    // copy of the acquire (one write, or a transaction including this item) is refused. The
    // mark itself is refused if the acquire's id is already there: then it had landed.
    const mark: BucketWrite = {
      entityId: targets[0].entityId,
      resource: targets[0].resource,
      ops: [],
      used: new Map(),
      requests: 0,
      nowMs,
      opId: cancelId(op.id),
      absent: [op.id],
      // The acquire's own bound: past it, nobody can tell any more (UncertainOutcome).
      maxWrites: op.bound(first, this.#buckets.get(first)?.writes),
      // A new item (the acquire never landed) expires; an existing one keeps its TTL.
      ttlSec: math.ceilDiv(nowMs, 1000n) + BUCKET_GRACE_SECONDS,
      ttlIfMissing: true,
    };
    const out = await this.#writeItems([mark], deadline, op);
    if (out.ok) return; // cancelled (now or by an earlier copy of the mark): never counted
    const old = out.olds[0].ok ? undefined : out.olds[0].old;
    if (!old?.ops?.includes(op.id)) throw new UncertainOutcome(`acquire ${op.id}`);
    // It had landed: give the tokens back.
    await Promise.all(targets.map((t, i) => {
      const back = new Map([...milli[i]].map(([name, m]) => [name, -m]));
      return this.#adjust(asLeaseTarget(t), back, -1, deadline, giveBack);
    }));
  }

  /**
   * Sends bucket writes (one UpdateItem, or one transaction), resending the same operation on
   * ambiguous failures. A failed condition caused by the operation's own id means an earlier
   * copy landed: that counts as success (`applied: true`).
   */
  async #writeItems(
    writes: BucketWrite[],
    deadline: number,
    op: Op,
  ): Promise<MultiOutcome & { applied?: boolean }> {
    const outcome = await this.#call(op, async (signal): Promise<MultiOutcome> => {
      if (writes.length === 1) {
        const o = await this.#backend.buckets.writeBucket(writes[0], signal);
        return o.ok ? { ok: true, items: [o.item] } : { ok: false, olds: [o] };
      }
      const o = await this.#backend.buckets.transactBuckets(writes, signal);
      return o.ok ? { ok: true, items: writes.map(() => undefined) } : o;
    }, deadline);
    if (outcome.ok) return outcome;
    const landed = outcome.olds.some((o, i) => !o.ok && o.old?.ops?.includes(writes[i].opId));
    if (landed) {
      return {
        ok: true,
        applied: true,
        items: outcome.olds.map((o) => (o.ok ? undefined : o.old)),
      };
    }
    // Refused for its write-count bound while an earlier attempt may have landed: the window no
    // longer tells, and resending could count twice.
    // (A failure that shows one of the write's `absent` ids is an answer, not a doubt.)
    const pastBound = outcome.olds.some((o, i) =>
      !o.ok && o.old?.writes !== undefined && o.old.writes >= writes[i].maxWrites &&
      !(writes[i].absent ?? []).some((id) => o.old?.ops?.includes(id))
    );
    if (pastBound && op.ambiguous) throw new UncertainOutcome(`write ${op.id}`);
    return outcome;
  }

  /** Consumes from every target in one write; returns what the lease needs. */
  async #consume(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
    op: Op,
  ): Promise<LeaseTarget[]> {
    // Writes of this process kept back by an outage go first: each new write would push their ids
    // further through the items' windows.
    if (!(await this.#outbox.settled(targets.map(bucketId), deadline))) {
      throw new RateLimiterUnavailable(
        "acquire",
        new Error("earlier writes still wait for DynamoDB"),
      );
    }
    // At most half a window of this process's writes in flight per bucket: more would outrun the
    // write-count bound their own plans carry, and only cost retries.
    const release = await this.#slots(targets.map(bucketId), deadline);
    try {
      return await this.#consumeHeld(targets, milli, nowMs, deadline, op);
    } finally {
      release();
    }
  }

  async #consumeHeld(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
    op: Op,
  ): Promise<LeaseTarget[]> {
    // Known state of each bucket: from the cache (lower bounds), then fresh from DynamoDB.
    const states = targets.map((t) => this.#buckets.get(bucketId(t))?.limits);
    const counts = targets.map((t) => this.#buckets.get(bucketId(t))?.writes);
    const fresh = targets.map(() => false);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const plans = targets.map((t, i) =>
        planAcquire(
          t,
          states[i],
          fresh[i],
          milli[i],
          nowMs,
          op.id,
          op.bound(bucketId(t), counts[i]),
          this.#inFlight.get(bucketId(t))?.tats,
        )
      );
      if (plans.some((p) => p.exceeded)) {
        const known = plans.every((p, i) => !p.exceeded || fresh[i] || this.#denyCache);
        if (known) {
          await this.#persistConversions(targets, states, counts, fresh, nowMs, deadline);
          throw new RateLimitExceeded(plans.flatMap((p) => p.statuses));
        }
      }
      const release = targets.map((t, i) => this.#flying(bucketId(t), plans[i].after));
      let outcome;
      try {
        outcome = await this.#writeItems(plans.map((p) => p.write), deadline, op);
      } finally {
        release.forEach((done) => done());
      }
      if (outcome.ok) {
        const known = outcome.applied ? [] : outcome.items;
        targets.forEach((t, i) =>
          this.#remember(
            t,
            known[i]?.limits ?? plans[i].after,
            known[i]?.writes ?? (counts[i] ?? 0n) + 1n,
          )
        );
        return targets.map((t, i) => ({
          entityId: t.entityId,
          resource: t.resource,
          specs: t.specs,
          keys: t.keys,
          consumed: milli[i],
          statuses: statusesAfter(t, known[i]?.limits ?? plans[i].after, milli[i], nowMs),
        }));
      }
      outcome.olds.forEach((o, i) => {
        if (!o.ok) {
          states[i] = o.old?.limits ?? new Map();
          counts[i] = o.old?.writes ?? 0n;
          fresh[i] = true;
        }
      });
    }
    throw new RateLimiterUnavailable("acquire", new Error("too much contention on the bucket"));
  }

  /**
   * A refused request on a bucket whose limits changed still converts its state, so the
   * retry-after it reports comes true (the change "takes effect on its next use").
   */
  async #persistConversions(
    targets: Target[],
    states: (Map<string, StoredLimit> | undefined)[],
    counts: (bigint | undefined)[],
    fresh: boolean[],
    nowMs: bigint,
    deadline: number,
  ): Promise<void> {
    await Promise.all(targets.map(async (t, i) => {
      if (!fresh[i]) return;
      const op = new Op();
      const write = planConversion(
        t,
        states[i],
        nowMs,
        op.id,
        op.bound(bucketId(t), counts[i]),
      );
      if (!write) return;
      const out = await this.#writeItems([write], deadline, op);
      const item = out.ok && !out.applied ? out.items[0] : undefined;
      if (item) this.#remember(t, item.limits, item.writes);
    }));
  }

  /**
   * Waits for a write slot on each bucket (at most `OP_WINDOW / 2` writes of this process in
   * flight per bucket), taken in a fixed order; returns the function that gives them back.
   * Throws `RateLimiterUnavailable` at the deadline.
   */
  async #slots(buckets: string[], deadline: number): Promise<() => void> {
    const ids = [...new Set(buckets)].sort();
    const taken: string[] = [];
    const release = () => {
      for (const id of taken.splice(0)) {
        const q = this.#slotQueues.get(id);
        const next = q?.waiters.shift();
        if (next) next();
        else if (q) {
          q.busy--;
          if (q.busy === 0) this.#slotQueues.delete(id);
        }
      }
    };
    try {
      for (const id of ids) {
        let q = this.#slotQueues.get(id);
        if (!q) this.#slotQueues.set(id, q = { busy: 0, waiters: [] });
        if (q.busy < SLOTS_PER_BUCKET) {
          q.busy++;
        } else {
          const queue = q;
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => {
              const i = queue.waiters.indexOf(wake);
              if (i >= 0) queue.waiters.splice(i, 1);
              reject(new RateLimiterUnavailable("acquire", new Error("too many writes in flight")));
            }, Math.max(0, deadline - Date.now()));
            const wake = () => {
              clearTimeout(timer);
              resolve(); // the slot passes from the releaser to us: busy stays the same
            };
            queue.waiters.push(wake);
          });
        }
        taken.push(id);
      }
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  /** Notes a write in flight on a bucket (its expected tats); returns the function that ends it. */
  #flying(id: string, after: Map<string, StoredLimit>): () => void {
    let entry = this.#inFlight.get(id);
    if (!entry) this.#inFlight.set(id, entry = { writes: 0, tats: new Map() });
    entry.writes++;
    for (const [name, st] of after) {
      const prev = entry.tats.get(name);
      if (st.tat !== undefined && (prev === undefined || st.tat > prev)) {
        entry.tats.set(name, st.tat);
      }
    }
    const flying = entry;
    return () => {
      if (--flying.writes === 0) this.#inFlight.delete(id);
    };
  }

  #remember(
    t: { entityId: string; resource: string },
    limits: Map<string, StoredLimit>,
    writes: bigint | undefined,
  ): void {
    const id = bucketId(t);
    const known = this.#buckets.get(id);
    const merged = new Map(known?.limits ?? []);
    for (const [name, st] of limits) merged.set(name, st);
    const count = known?.writes === undefined || (writes !== undefined && writes > known.writes)
      ? writes
      : known.writes;
    this.#buckets.set(id, { limits: merged, writes: count });
  }

  /**
   * Writes adjustments (positive or negative) to one bucket, exactly once under `opId` (an
   * earlier copy that landed is recognised by the id).
   */
  async #adjust(
    target: LeaseTarget,
    deltas: Map<string, bigint>,
    requests: number,
    deadline: number,
    op: Op,
    atMs?: bigint,
  ): Promise<void> {
    const release = await this.#slots([bucketId(target)], deadline);
    try {
      await this.#adjustHeld(target, deltas, requests, deadline, op, atMs);
    } finally {
      release();
    }
  }

  async #adjustHeld(
    target: LeaseTarget,
    deltas: Map<string, bigint>,
    requests: number,
    deadline: number,
    op: Op,
    atMs?: bigint,
  ): Promise<void> {
    const id = bucketId(target);
    let state = this.#buckets.get(id)?.limits;
    let count = this.#buckets.get(id)?.writes;
    let fresh = false;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const plan = planAdjust(
        target,
        state,
        fresh,
        deltas,
        requests,
        atMs ?? this.#now(),
        op.id,
        op.bound(id, count),
      );
      if (plan.write.ops.length === 0 && requests === 0) return;
      const out = await this.#writeItems([plan.write], deadline, op);
      if (out.ok) {
        const item = out.items[0];
        if (item && !out.applied) {
          this.#remember(target, item.limits, item.writes);
          await this.#raiseTtl(target, item, deadline);
        }
        return;
      }
      const old = out.olds[0].ok ? undefined : out.olds[0].old;
      state = old?.limits ?? new Map();
      count = old?.writes ?? 0n;
      fresh = true;
    }
    throw new RateLimiterUnavailable("adjust", new Error("too much contention on the bucket"));
  }

  /** Debt beyond the written TTL (a large adjustment): raise the TTL so expiry forgives nothing. */
  async #raiseTtl(target: LeaseTarget, item: StoredBucket, deadline: number): Promise<void> {
    let fullAtMs = 0n;
    for (const st of item.limits.values()) {
      const spec = st.key === undefined ? undefined : math.parseSpecKey(st.key);
      if (spec && st.tat !== undefined) {
        const at = math.tatToMs(spec, st.tat);
        if (at > fullAtMs) fullAtMs = at;
      }
    }
    const needed = math.ceilDiv(fullAtMs, 1000n);
    if (item.ttl !== undefined && item.ttl >= needed) return;
    await this.#call(
      undefined,
      (signal) =>
        this.#backend.buckets.raiseTtl(
          target.entityId,
          target.resource,
          needed + BUCKET_GRACE_SECONDS,
          signal,
        ),
      deadline,
    );
  }

  #leaseOps(): LeaseOps {
    return {
      write: async (targets, deltas, requests, operation) => {
        const deadline = Date.now() + this.#timeoutMs;
        await Promise.all(targets.map(async (t, i) => {
          const op = new Op();
          try {
            if (!(await this.#outbox.settled([bucketId(t)], deadline))) {
              throw new RateLimiterUnavailable(operation, new Error("earlier writes still wait"));
            }
            await this.#adjust(t, deltas[i], requests, deadline, op);
          } catch (err) {
            if (err instanceof ZaeLimiterError && !(err instanceof RateLimiterUnavailable)) {
              throw err;
            }
            // Never lost: retried in the background under the same id, so applied exactly once.
            this.#outbox.add({
              label: `${operation} ${t.entityId}/${t.resource}`,
              buckets: [bucketId(t)],
              run: (d) => this.#adjust(t, deltas[i], requests, d, op),
            });
          }
        }));
      },
    };
  }

  /**
   * Writes waiting in the outbox for DynamoDB to come back: 0 while DynamoDB answers.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * console.assert(limiter.pendingWrites === 0);
   * ```
   */
  get pendingWrites(): number {
    return this.#outbox.size;
  }

  /**
   * Writes the outbox gave up on, with why: an `UncertainOutcome` (an operation whose answer was
   * lost and whose item then took more writes than its window keeps, so nothing can tell whether
   * it landed), or an error that retrying cannot mend. Empty in normal operation; `flush()` (and
   * so `close()`) throws once for each batch of writes that became unresolved since it last did.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * console.assert(limiter.unresolvedWrites.length === 0);
   * ```
   */
  get unresolvedWrites(): readonly { label: string; error: unknown }[] {
    return this.#outbox.failed;
  }

  /**
   * Waits until every write kept back by an outage (commits, rollbacks, failed-open acquires)
   * has reached DynamoDB. Throws `RateLimiterUnavailable` when some are still waiting after
   * `timeoutMs`.
   *
   * @example
   * ```ts ignore
   * await limiter.flush(5_000);
   * ```
   */
  async flush(timeoutMs = 10_000): Promise<void> {
    const left = await this.#outbox.flush(timeoutMs);
    const unresolved = this.#outbox.failed.length;
    if (unresolved > this.#reported) {
      this.#reported = unresolved;
      const first = this.#outbox.failed[0];
      throw new ZaeLimiterError(
        `${unresolved} writes could not be resolved (first: ${first.label}: ${
          first.error instanceof Error ? first.error.message : String(first.error)
        }); see unresolvedWrites`,
        { cause: first.error },
      );
    }
    if (left > 0) {
      throw new RateLimiterUnavailable(
        "flush",
        new Error(`${left} writes still waiting for DynamoDB after ${timeoutMs} ms`),
      );
    }
  }

  /**
   * Whole tokens available now per limit (rounded down; negative in debt). A bucket never used
   * shows its capacity.
   *
   * @example
   * ```ts ignore
   * const { tpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits: [Limit.perMinute("tpm", 10_000)] });
   * ```
   */
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

  /**
   * Seconds until every `needed` amount is available (0 when it already is; `Infinity` when a
   * need exceeds its limit's capacity).
   *
   * @example
   * ```ts ignore
   * const wait = await limiter.timeUntilAvailable({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("tpm", 10_000)], needed: { tpm: 2_000 } });
   * ```
   */
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
    this.#checkOpen();
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
    const deadline = Date.now() + this.#timeoutMs;
    try {
      await this.#ensureReady(deadline);
      const [target] = await this.#resolveTargets(
        { entityId, resource, limits, consume: {}, cascade: false, useStoredLimits: useStored },
        deadline,
      );
      const nowMs = this.#now();
      const state = await this.#call(
        undefined,
        (signal) => this.#backend.buckets.getBucket(entityId, resource, signal),
        deadline,
      );
      if (state) this.#remember(target, state.limits, state.writes);
      return { target, state, nowMs, needed };
    } catch (err) {
      if (err instanceof ZaeLimiterError && !(err instanceof RateLimiterUnavailable)) throw err;
      throw err instanceof RateLimiterUnavailable
        ? err
        : new RateLimiterUnavailable("read", unwrap(err));
    }
  }

  /** The buckets to write for a call: the entity's, and its parent's when cascading. */
  async #resolveTargets(req: ValidRequest, deadline: number): Promise<Target[]> {
    const needMeta = req.cascade !== false;
    const useStored = req.useStoredLimits;
    let own: EntityConfig = {};
    if (needMeta || useStored) {
      own = await this.#loadConfig(req.entityId, req.resource, {
        meta: needMeta,
        limits: useStored,
      }, deadline);
    }
    const cascade = req.cascade ?? own.entity?.cascade ?? false;
    const ids = [req.entityId];
    if (cascade && own.entity?.parentId !== undefined) ids.push(own.entity.parentId);
    const targets: Target[] = [];
    for (const [i, id] of ids.entries()) {
      const cfg = i === 0
        ? own
        : useStored
        ? await this.#loadConfig(id, req.resource, { meta: false, limits: true }, deadline)
        : {};
      const limits = useStored
        ? (cfg.resourceLimits ?? cfg.defaultLimits ?? req.limits)
        : req.limits;
      targets.push(makeTarget(id, req.resource, limits));
    }
    return targets;
  }

  async #loadConfig(
    entityId: string,
    resource: string,
    want: { meta: boolean; limits: boolean },
    deadline: number,
  ): Promise<EntityConfig> {
    const metaKey = `${entityId}#`;
    const limitKey = `${entityId}#${resource}`;
    const meta = want.meta ? this.#config.get(metaKey) : { value: {} };
    const limits = want.limits ? this.#config.get(limitKey) : { value: {} };
    if (meta && limits) return { ...meta.value, ...limits.value };
    // Concurrent cold calls for the same entity share one read (no stampede on start-up).
    const flightKey = `${limitKey}|${want.meta && !meta}|${want.limits && !limits}`;
    let flight = this.#configLoads.get(flightKey);
    if (!flight) {
      flight = this.#call(
        undefined,
        (signal) =>
          this.#backend.entities.loadConfig([entityId], resource, {
            meta: want.meta && !meta,
            limits: want.limits && !limits,
          }, signal),
        deadline,
      ).finally(() => this.#configLoads.delete(flightKey));
      this.#configLoads.set(flightKey, flight);
    }
    const loaded = await flight;
    const cfg = loaded.get(entityId) ?? {};
    if (want.meta && !meta) this.#config.set(metaKey, { value: { entity: cfg.entity } });
    if (want.limits && !limits) {
      this.#config.set(limitKey, {
        value: { resourceLimits: cfg.resourceLimits, defaultLimits: cfg.defaultLimits },
      });
    }
    return { ...(meta?.value ?? {}), ...(limits?.value ?? {}), ...cfg };
  }

  // ---- entities and stored limits ----

  /**
   * Creates an entity. A parent must exist and be top-level.
   *
   * @example
   * ```ts ignore
   * await limiter.createEntity({ entityId: "proj-1", name: "Production" });
   * await limiter.createEntity({ entityId: "key-abc", parentId: "proj-1", cascade: true });
   * ```
   */
  async createEntity(options: CreateEntityOptions): Promise<Entity> {
    this.#checkOpen();
    if (options === null || typeof options !== "object") {
      throw new ValidationError("options", options, "must be an object");
    }
    const entityId = validateEntityId(options.entityId);
    const parentId = options.parentId === undefined
      ? undefined
      : validateEntityId(options.parentId, "parentId");
    if (parentId === entityId) {
      throw new ValidationError("parentId", parentId, "must differ from entityId");
    }
    if (
      options.name !== undefined && (typeof options.name !== "string" || options.name.length > 1024)
    ) {
      throw new ValidationError(
        "name",
        options.name,
        "must be a string of at most 1024 characters",
      );
    }
    if (options.cascade !== undefined && typeof options.cascade !== "boolean") {
      throw new ValidationError("cascade", options.cascade, "must be a boolean");
    }
    const metadata = validateMetadata(options.metadata);
    const entity: Entity = {
      entityId,
      cascade: options.cascade ?? false,
      metadata,
      createdAt: new Date(this.#clock()).toISOString(),
    };
    if (options.name !== undefined) entity.name = options.name;
    if (parentId !== undefined) entity.parentId = parentId;
    await this.#admin("createEntity", (signal) => this.#backend.entities.create(entity, signal));
    this.#config.delete(`${entityId}#`);
    return entity;
  }

  /**
   * Reads an entity, or `undefined`.
   *
   * @example
   * ```ts ignore
   * const entity = await limiter.getEntity("key-abc");
   * ```
   */
  async getEntity(entityId: string): Promise<Entity | undefined> {
    this.#checkOpen();
    validateEntityId(entityId);
    return await this.#admin("getEntity", (signal) => this.#backend.entities.get(entityId, signal));
  }

  /**
   * Every child of a parent (all pages), sorted by id.
   *
   * @example
   * ```ts ignore
   * const keys = await limiter.listChildren("proj-1");
   * ```
   */
  async listChildren(parentId: string): Promise<Entity[]> {
    this.#checkOpen();
    validateEntityId(parentId, "parentId");
    return await this.#admin(
      "listChildren",
      (signal) => this.#backend.entities.children(parentId, signal),
    );
  }

  /**
   * Deletes an entity with its stored limits, buckets and usage. A parent with children is refused.
   *
   * @example
   * ```ts ignore
   * await limiter.deleteEntity("key-abc");
   * ```
   */
  async deleteEntity(entityId: string): Promise<void> {
    this.#checkOpen();
    validateEntityId(entityId);
    const children = await this.listChildren(entityId);
    if (children.length > 0) {
      const some = children.slice(0, 3).map((c) => c.entityId).join(", ");
      throw new ValidationError(
        "entityId",
        entityId,
        `has ${children.length} children (${some}${
          children.length > 3 ? ", ..." : ""
        }); delete them first`,
      );
    }
    await this.#admin(
      "deleteEntity",
      (signal) => this.#backend.entities.deleteAll(entityId, signal),
      60_000,
    );
    this.#forget(entityId);
  }

  /**
   * Stores limits for an entity: for one resource, or for every resource when none is given.
   *
   * @example
   * ```ts ignore
   * await limiter.setLimits({ entityId: "user-premium", limits: [Limit.perMinute("rpm", 500)] });
   * ```
   */
  async setLimits(
    options: { entityId: string; resource?: string; limits: Limit[] },
  ): Promise<void> {
    this.#checkOpen();
    const { entityId, resource } = validateLimitTarget(options);
    const limits = validateLimits(options.limits, false);
    await this.#admin(
      "setLimits",
      (signal) => this.#backend.entities.putLimits(entityId, resource, limits, signal),
    );
    this.#forget(entityId);
  }

  /**
   * Stored limits of an entity for a resource (or the entity-wide ones); `[]` when none.
   *
   * @example
   * ```ts ignore
   * const limits = await limiter.getLimits({ entityId: "user-premium" });
   * ```
   */
  async getLimits(options: { entityId: string; resource?: string }): Promise<Limit[]> {
    this.#checkOpen();
    const { entityId, resource } = validateLimitTarget(options);
    return (await this.#admin(
      "getLimits",
      (signal) => this.#backend.entities.getLimits(entityId, resource, signal),
    )) ??
      [];
  }

  /**
   * Deletes stored limits of an entity for a resource (or the entity-wide ones).
   *
   * @example
   * ```ts ignore
   * await limiter.deleteLimits({ entityId: "user-premium", resource: "gpt-4" });
   * ```
   */
  async deleteLimits(options: { entityId: string; resource?: string }): Promise<void> {
    this.#checkOpen();
    const { entityId, resource } = validateLimitTarget(options);
    await this.#admin(
      "deleteLimits",
      (signal) => this.#backend.entities.deleteLimits(entityId, resource, signal),
    );
    this.#forget(entityId);
  }

  /**
   * Usage snapshots (hourly or daily) of an entity, made by the aggregator; all pages.
   *
   * @example
   * ```ts ignore
   * const hours = await limiter.getUsageSnapshots({ entityId: "key-1", window: "hourly" });
   * ```
   */
  async getUsageSnapshots(query: UsageQuery): Promise<UsageSnapshot[]> {
    this.#checkOpen();
    return await getUsageSnapshots(this.client, this.tableName, query);
  }

  /**
   * Totals, averages and the peak window of an entity's usage snapshots.
   *
   * @example
   * ```ts ignore
   * const { total, peak } = await limiter.getUsageSummary({ entityId: "key-1", window: "daily" });
   * ```
   */
  async getUsageSummary(query: UsageQuery): Promise<UsageSummary> {
    this.#checkOpen();
    return await getUsageSummary(this.client, this.tableName, query);
  }

  /**
   * For one resource, each entity with a bucket and its available tokens per limit (all pages).
   * The resource index is filled by the usage aggregator (deployed, or `aggregate` locally),
   * never by the hot path: a bucket appears once the aggregator has seen its first write.
   *
   * @example
   * ```ts ignore
   * for (const b of await limiter.listResourceBuckets({ resource: "gpt-4" })) console.log(b.entityId, b.available);
   * ```
   */
  async listResourceBuckets(options: { resource: string }): Promise<ResourceBucket[]> {
    this.#checkOpen();
    const resource = validateResource(options?.resource);
    const nowMs = this.#now();
    const found = await this.#admin(
      "listResourceBuckets",
      (signal) => this.#backend.buckets.resourceBuckets(resource, signal),
      30_000,
    );
    return found.map(({ entityId, bucket }) => {
      const available: Record<string, number> = {};
      const capacity: Record<string, number> = {};
      for (const [name, st] of bucket.limits) {
        const spec = st.key === undefined ? undefined : math.parseSpecKey(st.key);
        if (!spec) continue;
        available[name] = Number(math.floorDiv(math.availableMilli(spec, st.tat, nowMs), 1000n));
        capacity[name] = Number(spec.capacityMilli) / 1000;
      }
      return { entityId, resource, available, capacity };
    });
  }

  #forget(entityId: string): void {
    this.#config.deleteWhere((k) => k.startsWith(`${entityId}#`));
    this.#buckets.deleteWhere((k) => k.startsWith(`${entityId}#`));
  }

  async #admin<T>(
    operation: string,
    fn: (signal: AbortSignal) => Promise<T>,
    timeoutMs?: number,
  ): Promise<T> {
    const deadline = Date.now() + (timeoutMs ?? Math.max(this.#timeoutMs, 10_000));
    try {
      await this.#ensureReady(deadline);
      return await this.#call(undefined, fn, deadline);
    } catch (err) {
      if (err instanceof ZaeLimiterError) throw err;
      throw new RateLimiterUnavailable(operation, unwrap(err));
    }
  }

  /** Creates the stack or the table when asked to, once. */
  async #ensureReady(deadline: number): Promise<void> {
    if (!this.#createTable && !this.#createStack) return;
    this.#ready ??= this.#prepare().catch((err) => {
      this.#ready = undefined;
      throw err;
    });
    // Creating a table or a stack takes longer than a request's deadline: first calls wait.
    void deadline;
    await this.#ready;
  }

  async #prepare(): Promise<void> {
    if (this.#createStack) {
      // Loaded only when asked for: CloudFormation and Lambda clients stay off the hot path.
      const { ensureStack } = await import("./infra/stack.ts");
      const { stackName, aggregator, snapshotRetentionDays, region, endpoint } = this.#createStack;
      await ensureStack({
        tableName: this.tableName,
        stackName,
        region,
        endpoint,
        ...(aggregator === undefined ? {} : { aggregator }),
        ...(snapshotRetentionDays === undefined ? {} : { snapshotRetentionDays }),
      });
    }
    if (this.#createTable) await this.#backend.buckets.createTable();
  }

  /**
   * Creates the table (indexes, TTL, stream) if missing and waits until it is active. Calling it
   * again is harmless. For development and tests: production deploys the stack with the CLI.
   *
   * @example
   * ```ts ignore
   * import { RateLimiter } from "./limiter.ts";
   * const limiter = new RateLimiter({ tableName: "rate_limits", endpoint: "http://localhost:8000" });
   * await limiter.createTable();
   * ```
   */
  async createTable(): Promise<void> {
    await this.#backend.buckets.createTable();
  }

  /** Runs `fn` with retries until the deadline; marks `op` ambiguous when an attempt may have landed. */
  async #call<T>(
    op: Op | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
    deadline: number,
  ): Promise<T> {
    try {
      return await withRetries(async (signal) => {
        try {
          const out = await fn(signal);
          if (this.#outbox.size > 0) this.#outbox.wake(); // DynamoDB answers again
          return out;
        } catch (err) {
          if (op && mayHaveApplied(err)) op.ambiguous = true;
          throw err;
        }
      }, { deadline });
    } catch (err) {
      if (err instanceof DeadlineExceeded) {
        throw new RateLimiterUnavailable("call", err.cause ?? err);
      }
      throw err;
    }
  }

  #now(): bigint {
    const t = this.#clock();
    if (!Number.isFinite(t)) throw new ValidationError("clock()", t, "must return finite epoch ms");
    return BigInt(Math.floor(t));
  }

  #checkOpen(): void {
    if (this.#closed) throw new ZaeLimiterError("The rate limiter is closed");
  }

  /**
   * Closes the limiter: waits (up to `closeTimeoutMs`) for writes an outage kept back, then
   * closes the DynamoDB client it made (a client passed in `client` stays open). Throws
   * `RateLimiterUnavailable` if writes remain. A second call does nothing.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.close();
   * let error: unknown;
   * try {
   *   await limiter.getEntity("key-1");
   * } catch (e) {
   *   error = e;
   * }
   * console.assert(error instanceof Error && error.message === "The rate limiter is closed");
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.flush(this.#closeTimeoutMs);
    } finally {
      if (this.#ownsClient) this.client.destroy();
    }
  }

  /**
   * Same as {@link close}, for `await using`.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * {
   *   await using limiter = createTestLimiter();
   *   console.assert(limiter.pendingWrites === 0);
   * } // closed here
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
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
}

// ---- planning (pure) ----

function bucketId(t: { entityId: string; resource: string }): string {
  return `${t.entityId}#${t.resource}`;
}

function makeTarget(entityId: string, resource: string, limits: Limit[]): Target {
  const specs = new Map<string, math.BucketSpec>();
  const keys = new Map<string, string>();
  for (const l of limits) {
    const spec = {
      capacityMilli: l.capacityMilli,
      refillMilli: l.refillMilli,
      periodMs: l.periodMs,
    };
    specs.set(l.name, spec);
    keys.set(l.name, math.specKey(spec));
  }
  return { entityId, resource, limits, specs, keys };
}

function amountsFor(t: Target, consume: Map<string, bigint>): Map<string, bigint> {
  return new Map(t.limits.map((l) => [l.name, consume.get(l.name) ?? 0n]));
}

/** The tat to reason with: converted when stored under another spec, `undefined` when full. */
function effectiveTat(
  spec: math.BucketSpec,
  key: string,
  st: StoredLimit | undefined,
  nowMs: bigint,
): bigint | undefined {
  if (st?.tat === undefined) return undefined;
  if (st.key === key) return st.tat;
  const from = st.key === undefined ? undefined : math.parseSpecKey(st.key);
  return from ? math.convertTat(from, st.tat, spec, nowMs) : undefined;
}

function planAcquire(
  t: Target,
  state: Map<string, StoredLimit> | undefined,
  fresh: boolean,
  milli: Map<string, bigint>,
  nowMs: bigint,
  opId: string,
  maxWrites: bigint,
  inFlight?: Map<string, bigint>,
): Plan {
  const ops: LimitOp[] = [];
  const statuses: LimitStatus[] = [];
  const after = new Map<string, StoredLimit>();
  let maxFullMs = nowMs;
  for (const limit of t.limits) {
    const spec = t.specs.get(limit.name)!;
    const key = t.keys.get(limit.name)!;
    const m = milli.get(limit.name) ?? 0n;
    const n = math.scaledNow(spec, nowMs);
    const c = math.cost(spec, m);
    const st = state?.get(limit.name);
    // This process's own writes still in flight will have raised the tat: guess busy, so
    // concurrent writers of one process don't all make the idle guess and collide. Only a
    // guess: the statuses below use what is known.
    const flying = fresh ? undefined : inFlight?.get(limit.name);
    // The busy expression: tat ∈ [now, now + τ − cost], then tat += cost.
    const busy: LimitOp = {
      kind: "addBounded",
      name: limit.name,
      key,
      n,
      max: n + math.tolerance(spec) - c,
      add: c,
    };
    let tat: bigint | undefined;
    if (flying !== undefined && flying > n && (st?.tat === undefined || st.key === key)) {
      tat = st?.tat;
      ops.push(busy);
    } else if (st?.tat === undefined) {
      tat = undefined;
      ops.push(
        fresh && st?.key !== undefined
          ? { kind: "cas", name: limit.name, key, newTat: n + c }
          : { kind: "fromNow", name: limit.name, key, n, newTat: n + c },
      );
    } else if (st.key !== key) {
      if (fresh) {
        tat = effectiveTat(spec, key, st, nowMs);
        ops.push({
          kind: "cas",
          name: limit.name,
          key,
          expectKey: st.key,
          expectTat: st.tat,
          newTat: math.consumeTat(spec, tat, nowMs, m),
        });
      } else {
        // Stale cache under another spec: guess an idle bucket; a failed guess returns the truth.
        tat = undefined;
        ops.push({ kind: "fromNow", name: limit.name, key, n, newTat: n + c });
      }
    } else {
      tat = st.tat;
      ops.push(tat <= n ? { kind: "fromNow", name: limit.name, key, n, newTat: n + c } : busy);
    }
    const ok = math.fits(spec, tat, nowMs, m);
    const wait = math.waitMs(spec, tat, nowMs, m);
    statuses.push({
      entityId: t.entityId,
      resource: t.resource,
      limitName: limit.name,
      limit,
      available: Number(math.floorDiv(math.availableMilli(spec, tat, nowMs), 1000n)),
      requested: Number(m) / 1000,
      exceeded: !ok,
      retryAfterSeconds: wait === undefined ? Infinity : Number(wait) / 1000,
    });
    const newTat = math.consumeTat(spec, tat, nowMs, m);
    after.set(limit.name, { tat: newTat, key });
    // Every tat this write can leave is at most now + τ: the TTL covers it.
    const fullMs = math.tatToMs(spec, n + math.tolerance(spec));
    if (fullMs > maxFullMs) maxFullMs = fullMs;
  }
  const write: BucketWrite = {
    entityId: t.entityId,
    resource: t.resource,
    ops,
    used: new Map(milli),
    requests: 1,
    nowMs,
    opId,
    maxWrites,
    ttlSec: math.ceilDiv(maxFullMs, 1000n) + BUCKET_GRACE_SECONDS,
  };
  return { write, statuses, exceeded: statuses.some((s) => s.exceeded), after };
}

/** The status of every limit of a target just after an admitted acquire. */
function statusesAfter(
  t: Target,
  state: Map<string, StoredLimit>,
  milli: Map<string, bigint>,
  nowMs: bigint,
): LimitStatus[] {
  return t.limits.map((limit) => {
    const spec = t.specs.get(limit.name)!;
    const tat = effectiveTat(spec, t.keys.get(limit.name)!, state.get(limit.name), nowMs);
    return {
      entityId: t.entityId,
      resource: t.resource,
      limitName: limit.name,
      limit,
      available: Number(math.floorDiv(math.availableMilli(spec, tat, nowMs), 1000n)),
      requested: Number(milli.get(limit.name) ?? 0n) / 1000,
      exceeded: false,
      retryAfterSeconds: 0,
    };
  });
}

/** Cas writes converting limits stored under another spec; `undefined` when none differ. */
function planConversion(
  t: Target,
  state: Map<string, StoredLimit> | undefined,
  nowMs: bigint,
  opId: string,
  maxWrites: bigint,
): BucketWrite | undefined {
  const ops: LimitOp[] = [];
  let maxFullMs = nowMs;
  for (const limit of t.limits) {
    const st = state?.get(limit.name);
    const spec = t.specs.get(limit.name)!;
    const key = t.keys.get(limit.name)!;
    if (st?.tat === undefined || st.key === key) continue;
    const newTat = effectiveTat(spec, key, st, nowMs) ?? math.scaledNow(spec, nowMs);
    ops.push({ kind: "cas", name: limit.name, key, expectKey: st.key, expectTat: st.tat, newTat });
    const fullMs = math.tatToMs(spec, newTat);
    if (fullMs > maxFullMs) maxFullMs = fullMs;
  }
  if (ops.length === 0) return undefined;
  return {
    entityId: t.entityId,
    resource: t.resource,
    ops,
    used: new Map(),
    requests: 0,
    nowMs,
    opId,
    maxWrites,
    ttlSec: math.ceilDiv(maxFullMs, 1000n) + BUCKET_GRACE_SECONDS,
  };
}

function planAdjust(
  t: LeaseTarget,
  state: Map<string, StoredLimit> | undefined,
  fresh: boolean,
  deltas: Map<string, bigint>,
  requests: number,
  nowMs: bigint,
  opId: string,
  maxWrites: bigint,
): { write: BucketWrite } {
  const ops: LimitOp[] = [];
  const used = new Map<string, bigint>();
  let maxFullMs: bigint | undefined;
  for (const [name, d] of deltas) {
    const spec = t.specs.get(name);
    const key = t.keys.get(name);
    if (d === 0n || !spec || !key) continue;
    const n = math.scaledNow(spec, nowMs);
    const c = math.cost(spec, d < 0n ? -d : d);
    const st = state?.get(name);
    used.set(name, d);
    if (d < 0n) {
      if (fresh && st?.tat === undefined) continue; // a full bucket: nothing to return
      if (fresh && st!.key !== key) {
        const tat = effectiveTat(spec, key, st, nowMs)!;
        ops.push({
          kind: "cas",
          name,
          key,
          expectKey: st!.key,
          expectTat: st!.tat,
          newTat: tat - c,
        });
      } else {
        ops.push({ kind: "sub", name, key, sub: c });
      }
      continue;
    }
    let newTat: bigint;
    if (st?.tat !== undefined && st.key === key && st.tat >= n) {
      ops.push({ kind: "add", name, key, n, add: c });
      // Likely bound: the tat is rarely past now + τ; #raiseTtl mends the TTL when it is.
      const base = st.tat > n + math.tolerance(spec) ? st.tat : n + math.tolerance(spec);
      newTat = base + c;
    } else if (fresh && st?.tat !== undefined && st.key !== key) {
      const tat = effectiveTat(spec, key, st, nowMs);
      newTat = math.consumeTat(spec, tat, nowMs, d);
      ops.push({ kind: "cas", name, key, expectKey: st.key, expectTat: st.tat, newTat });
    } else {
      newTat = n + c;
      ops.push(
        fresh && st?.tat === undefined && st?.key !== undefined
          ? { kind: "cas", name, key, newTat }
          : { kind: "fromNow", name, key, n, newTat },
      );
    }
    const fullMs = math.tatToMs(spec, newTat);
    if (maxFullMs === undefined || fullMs > maxFullMs) maxFullMs = fullMs;
  }
  return {
    write: {
      entityId: t.entityId,
      resource: t.resource,
      ops,
      used,
      requests,
      nowMs,
      opId,
      maxWrites,
      ttlSec: maxFullMs === undefined
        ? undefined
        : math.ceilDiv(maxFullMs, 1000n) + BUCKET_GRACE_SECONDS,
    },
  };
}

// ---- validation ----

interface ValidRequest {
  entityId: string;
  resource: string;
  limits: Limit[];
  consume: Map<string, bigint> | Record<string, never>;
  cascade?: boolean;
  useStoredLimits: boolean;
  failureMode?: FailureMode;
}

function validateAcquire(options: AcquireOptions): ValidRequest & { consume: Map<string, bigint> } {
  if (options === null || typeof options !== "object") {
    throw new ValidationError("options", options, "must be an object");
  }
  const entityId = validateEntityId(options.entityId);
  const resource = validateResource(options.resource);
  const useStoredLimits = options.useStoredLimits ?? false;
  if (typeof useStoredLimits !== "boolean") {
    throw new ValidationError("useStoredLimits", useStoredLimits, "must be a boolean");
  }
  const limits = validateLimits(options.limits, useStoredLimits);
  const names = new Set(limits.map((l) => l.name));
  const consume = amountsToMilli("consume", options.consume, useStoredLimits ? "any" : names, {
    allowNegative: false,
  });
  if (options.cascade !== undefined && typeof options.cascade !== "boolean") {
    throw new ValidationError("cascade", options.cascade, "must be a boolean");
  }
  if (options.failureMode !== undefined) checkFailureMode("failureMode", options.failureMode);
  return {
    entityId,
    resource,
    limits,
    consume,
    cascade: options.cascade,
    useStoredLimits,
    failureMode: options.failureMode,
  };
}

function validateLimits(limits: unknown, allowEmpty: boolean): Limit[] {
  if (!Array.isArray(limits)) {
    throw new ValidationError("limits", limits, "must be an array of Limit");
  }
  if (limits.length === 0 && !allowEmpty) {
    throw new ValidationError("limits", limits, "must hold at least one Limit");
  }
  if (limits.length > 32) {
    throw new ValidationError("limits", limits.length, "must hold at most 32 limits");
  }
  const seen = new Set<string>();
  limits.forEach((l, i) => {
    if (!(l instanceof Limit)) {
      throw new ValidationError(
        `limits[${i}]`,
        l,
        "must be a Limit (Limit.perMinute, Limit.custom, ...)",
      );
    }
    if (seen.has(l.name)) throw new ValidationError(`limits[${i}].name`, l.name, "must be unique");
    seen.add(l.name);
  });
  return limits as Limit[];
}

function validateLimitTarget(options: { entityId: string; resource?: string }): {
  entityId: string;
  resource?: string;
} {
  if (options === null || typeof options !== "object") {
    throw new ValidationError("options", options, "must be an object");
  }
  return {
    entityId: validateEntityId(options.entityId),
    resource: options.resource === undefined ? undefined : validateResource(options.resource),
  };
}

function validateMetadata(metadata: unknown): Record<string, string> {
  if (metadata === undefined) return {};
  if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
    throw new ValidationError("metadata", metadata, "must be an object of strings");
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new ValidationError(`metadata.${k}`, v, "must be a string");
    if (k.length === 0 || k.length > 256) {
      throw new ValidationError("metadata key", k, "must be 1-256 characters");
    }
    out[k] = v;
  }
  if (JSON.stringify(out).length > 64_000) {
    throw new ValidationError("metadata", "(large)", "must be at most 64 KB as JSON");
  }
  return out;
}

function checkFailureMode(field: string, mode: unknown): void {
  if (mode !== FailureMode.FAIL_CLOSED && mode !== FailureMode.FAIL_OPEN) {
    throw new ValidationError(field, mode, `must be "fail_closed" or "fail_open"`);
  }
}

function unwrap(err: unknown): unknown {
  return err instanceof DeadlineExceeded ? err.cause ?? err : err;
}

/** Makes a client; with an endpoint and no credentials in the environment, dummy ones (DynamoDB Local takes any). */
export function makeClient(options: { region?: string; endpoint?: string }): DynamoDBClient {
  const env = (name: string) => process.env[name];
  const local = options.endpoint !== undefined;
  const region = options.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ??
    (local ? "us-east-1" : undefined);
  const haveCreds = env("AWS_ACCESS_KEY_ID") !== undefined || env("AWS_PROFILE") !== undefined;
  return new DynamoDBClient({
    region,
    endpoint: options.endpoint,
    maxAttempts: 1, // the limiter retries inside its own deadline
    ...(local && !haveCreds
      ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  });
}
