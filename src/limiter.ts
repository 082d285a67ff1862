/**
 * {@link RateLimiter}: acquire tokens from DynamoDB-backed buckets. The class is a facade: the
 * write engine (`engine/`), the config resolver (`config.ts`), entities and limits (`admin.ts`),
 * reads (`reads.ts`), usage (`usage.ts`) and table set-up (`setup.ts`) each own one job. This
 * file holds the hot path (acquire, reads, `held`, the outbox, usage, `close`); the admin calls
 * are inherited: entities, controls, buckets, audit events and listings from `LimiterAdmin`
 * (limiter_admin.ts, which also assembles the parts), stored and default limits from
 * `LimiterLimits` (limiter_limits.ts).
 *
 * @module
 */

import type * as aws from "./aws_types.ts";
import type { LeaseEngine } from "./engine/leases.ts";
import type { Outbox } from "./engine/outbox.ts";
import { RateLimiterUnavailable, ZaeLimiterError } from "./errors.ts";
import type { Lease } from "./lease.ts";
import { checkOpen, type LimiterState, limiterState } from "./limiter_admin.ts";
import { LimiterLimits } from "./limiter_limits.ts";
import { type Logger, logTo } from "./logger.ts";
import type {
  AcquireOptions,
  AvailableOptions,
  RateLimiterOptions,
  TimeUntilAvailableOptions,
} from "./options.ts";
import type { KeySpace } from "./keyspace.ts";
import type { RefusalCounter } from "./refusals.ts";
import type { BucketReader } from "./reads.ts";
import { validateAcquire } from "./request.ts";
import { closeLeanTransport } from "./transport/lean.ts";
import { validateEntityId, validateResource } from "./validate.ts";
import {
  getUsageSnapshots,
  getUsageSummary,
  type UsageQuery,
  type UsageSnapshot,
  type UsageSummary,
} from "./usage.ts";

export {
  type AcquireOptions,
  type AvailableOptions,
  type BatchOptions,
  type CreateEntityOptions,
  type CreateStackSettings,
  FailureMode,
  type RateLimiterOptions,
  type ResourceBucket,
  type ShadowRefusal,
  type TimeUntilAvailableOptions,
} from "./options.ts";
export { newOpId, Op, UncertainOutcome } from "./engine/op.ts";
export type { LeaseOps } from "./engine/types.ts";
export { makeClient } from "./setup.ts";

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
export class RateLimiter extends LimiterLimits implements AsyncDisposable {
  /** The table. */
  readonly tableName: string;
  /** The DynamoDB client in use. */
  readonly client: aws.DynamoDBClient;
  /** The namespace (`"default"` for the default one; see `RateLimiterOptions.namespace`). */
  readonly namespace: string;
  readonly #state: LimiterState;
  readonly #keys: KeySpace;
  readonly #ownsClient: boolean;
  readonly #outbox: Outbox;
  readonly #leases: LeaseEngine;
  readonly #reader: BucketReader;
  readonly #createTableNow: () => Promise<void>;
  readonly #closeTimeoutMs: number;
  readonly #logger: Logger;
  readonly #refusals?: RefusalCounter;
  #reported = 0;

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
    super(options);
    this.#state = limiterState(this);
    const parts = this.#state.parts;
    this.tableName = parts.tableName;
    this.client = parts.client;
    this.#keys = parts.keys;
    this.namespace = parts.keys.name;
    this.#ownsClient = parts.ownsClient;
    this.#outbox = parts.outbox;
    this.#leases = parts.leases;
    this.#reader = parts.reader;
    this.#createTableNow = parts.createTable;
    this.#closeTimeoutMs = parts.closeTimeoutMs;
    this.#logger = parts.logger;
    this.#refusals = parts.refusals;
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

  #acquire(options: AcquireOptions): Promise<Lease> {
    this.#checkOpen();
    return this.#leases.acquire(validateAcquire(options));
  }

  /**
   * Shadow-mode acquires that would have been refused (and were admitted), since the limiter was
   * made; each counts once. See `RateLimiterOptions.shadow`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const limits = [Limit.perMinute("rpm", 1)];
   * for (let i = 0; i < 3; i++) {
   *   await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 },
   *     shadow: true });
   * }
   * console.assert(limiter.shadowRefusals === 2);
   * ```
   */
  get shadowRefusals(): number {
    return this.#leases.shadowRefusals;
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
   * Refused acquires counted and not yet written to the usage snapshots (see
   * `RateLimiterOptions.refusalCounts`): 0 once a flush wrote them, or with counting off.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * console.assert(limiter.pendingRefusals === 0);
   * ```
   */
  get pendingRefusals(): number {
    return this.#refusals?.pending ?? 0;
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
   * has reached DynamoDB, and writes the refusal counts held (`pendingRefusals`). Throws
   * `RateLimiterUnavailable` when some are still waiting after `timeoutMs`.
   *
   * @example
   * ```ts ignore
   * await limiter.flush(5_000);
   * ```
   */
  async flush(timeoutMs = 10_000): Promise<void> {
    // Refusals that an outage kept from this flush (not those counted while it ran).
    const [left, refusals = 0] = await Promise.all([
      this.#outbox.flush(timeoutMs),
      this.#refusals?.flush(),
    ]);
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
    if (left > 0 || refusals > 0) {
      throw new RateLimiterUnavailable(
        "flush",
        new Error(
          `${left} writes ${refusals > 0 ? `(and the counts of ${refusals} refusals) ` : ""}` +
            `still waiting for DynamoDB after ${timeoutMs} ms`,
        ),
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
  available(options: AvailableOptions): Promise<Record<string, number>> {
    this.#checkOpen();
    return this.#reader.available(options);
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
  timeUntilAvailable(options: TimeUntilAvailableOptions): Promise<number> {
    this.#checkOpen();
    return this.#reader.timeUntilAvailable(options);
  }

  /**
   * Tokens this process holds in its batch of a bucket, per limit (whole tokens; `{}` with no
   * batch). With `batches`, the bucket itself shows these as taken: `available()` is what other
   * processes can still take, and this is what this one can serve without a call.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0, batches: true });
   * const limits = [Limit.perMinute("rpm", 1_000)];
   * await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } });
   * console.assert(limiter.held({ entityId: "key-1", resource: "api" }).rpm === 15); // 16 taken, 1 used
   * await limiter.close();
   * ```
   */
  held(options: { entityId: string; resource: string }): Record<string, number> {
    this.#checkOpen();
    return this.#leases.held(
      validateEntityId(options?.entityId),
      validateResource(options?.resource),
    );
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
    return await getUsageSnapshots(this.client, this.tableName, query, this.#keys);
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
    return await getUsageSummary(this.client, this.tableName, query, this.#keys);
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
    await this.#createTableNow();
  }

  #checkOpen(): void {
    checkOpen(this.#state);
  }

  /**
   * Closes the limiter: waits (up to `closeTimeoutMs`) for writes an outage kept back and writes
   * the refusal counts held (`pendingRefusals`; left ones are logged as lost), then closes the
   * DynamoDB client it made (a client passed in `client` stays open). It never throws
   * because DynamoDB is down, so `await using` and `finally` blocks stay safe in an outage: writes
   * it had to leave stay in `pendingWrites` and `unresolvedWrites`, and one warning says how many.
   * Call {@link flush} first to get an error instead. A second call does nothing.
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
    if (this.#state.closed) return;
    this.#state.closed = true;
    // Batches go back to their buckets first; the whole of close() stays within closeTimeoutMs.
    const until = Date.now() + this.#closeTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#leases.drain(),
      new Promise((resolve) => (timer = setTimeout(resolve, this.#closeTimeoutMs))),
    ]);
    clearTimeout(timer);
    // Refusal counts are written beside the outbox's writes, within the same bound.
    const [left] = await Promise.all([
      this.#outbox.flush(Math.max(0, until - Date.now())),
      this.#refusals?.close(until),
    ]);
    this.#state.parts.telemetry.close(); // the outbox gauge stops
    const unresolved = this.#outbox.failed.length;
    if (left > 0 || unresolved > this.#reported) {
      logTo(
        this.#logger,
        "warn",
        `zae-limiter: closed with ${left} write(s) still waiting for DynamoDB after ` +
          `${this.#closeTimeoutMs} ms and ${unresolved} unresolved (see pendingWrites, ` +
          "unresolvedWrites); they are lost when the process exits",
        {
          event: "limiter.closed_with_writes",
          table: this.tableName,
          namespace: this.namespace,
          pending: left,
          unresolved,
          closeTimeoutMs: this.#closeTimeoutMs,
        },
      );
    }
    this.#outbox.stop();
    if (this.#ownsClient) {
      closeLeanTransport(this.client);
      this.client.destroy();
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
