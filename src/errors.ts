/**
 * Errors thrown by zae-limiter. Every error extends {@link ZaeLimiterError}.
 *
 * @module
 */

import type { Limit } from "./limit.ts";
import { showValue, ValidationError, ZaeLimiterError } from "./error_base.ts";

export { showValue, ValidationError, ZaeLimiterError };

/**
 * The status of one limit of one entity, as seen by an acquire.
 *
 * `available` and `requested` are in tokens (thousandths allowed); `retryAfterSeconds` is the exact wait
 * until `requested` tokens are available (0 when they already are, `Infinity` when `requested`
 * exceeds the limit's capacity and can never be granted).
 *
 * @example
 * ```ts
 * import { type LimitStatus, RateLimitExceeded } from "./errors.ts";
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter({ clock: () => 0 });
 * const limits = [Limit.perMinute("rpm", 1)];
 * await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } });
 * let status: LimitStatus | undefined;
 * try {
 *   await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } });
 * } catch (e) {
 *   if (e instanceof RateLimitExceeded) status = e.primaryViolation;
 * }
 * console.assert(status?.limitName === "rpm" && status.available === 0);
 * console.assert(status?.retryAfterSeconds === 60);
 * ```
 */
export interface LimitStatus {
  /** The entity whose bucket this is (the parent's id for a cascaded limit). */
  entityId: string;
  /** The resource the bucket counts. */
  resource: string;
  /** The limit's name, e.g. `"rpm"`. */
  limitName: string;
  /** The limit that was applied. */
  limit: Limit;
  /** Tokens available now, rounded down; negative when the bucket is in debt. */
  available: number;
  /** Tokens the request asked for. */
  requested: number;
  /** Whether this limit refused the request. */
  exceeded: boolean;
  /** Seconds until `requested` tokens are available; `Infinity` when they never can be. */
  retryAfterSeconds: number;
  /**
   * Present (`true`) on a soft limit: metered, never the cause of a refusal (`exceeded` is
   * always false, `retryAfterSeconds` 0), and `available` goes negative when it is in debt.
   */
  soft?: true;
  /**
   * Present on a quota: its window, in seconds (whole milliseconds) from the status's time.
   * `lengthSeconds` is the window's length (a calendar month's days, a DST day's 23 or 25 hours,
   * a `resetAfter` duration), `endsInSeconds` the time left until it ends and the quota is whole
   * again. The HTTP helpers write them as `w` and `t`.
   */
  window?: { lengthSeconds: number; endsInSeconds: number };
}

/**
 * One limit in the body of a 429 response, see {@link RateLimitExceeded.asDict}.
 *
 * @example
 * ```ts
 * import { type LimitStatusBody, RateLimitExceeded } from "./errors.ts";
 * import { Limit } from "./limit.ts";
 * const e = new RateLimitExceeded([{ entityId: "key-1", resource: "api", limitName: "rpm",
 *   limit: Limit.perMinute("rpm", 60), available: 0, requested: 1, exceeded: true,
 *   retryAfterSeconds: 1 }]);
 * const limit: LimitStatusBody = e.asDict().limits[0];
 * console.assert(limit.refill_period_seconds === 60 && limit.retry_after_seconds === 1);
 * ```
 */
export interface LimitStatusBody {
  /** Entity id. */
  entity_id: string;
  /** Resource name. */
  resource: string;
  /** Limit name. */
  limit_name: string;
  /** Bucket capacity in tokens. */
  capacity: number;
  /** Tokens added per refill period. */
  refill_amount: number;
  /** Refill period in seconds. */
  refill_period_seconds: number;
  /** Tokens available now (rounded down). */
  available: number;
  /** Tokens requested. */
  requested: number;
  /** Whether this limit refused the request. */
  exceeded: boolean;
  /** Seconds until the request could pass on this limit; `null` when it never can. */
  retry_after_seconds: number | null;
}

/**
 * The JSON body of a 429 response, see {@link RateLimitExceeded.asDict}.
 *
 * @example
 * ```ts
 * import { RateLimitExceeded, type RateLimitExceededBody } from "./errors.ts";
 * import { Limit } from "./limit.ts";
 * const e = new RateLimitExceeded([{ entityId: "key-1", resource: "api", limitName: "tpm",
 *   limit: Limit.perMinute("tpm", 100), available: 50, requested: 500, exceeded: true,
 *   retryAfterSeconds: Infinity }]);
 * const body: RateLimitExceededBody = e.asDict();
 * console.assert(body.retry_after_seconds === null); // 500 > capacity 100: never
 * const response = Response.json(body, { status: 429 });
 * console.assert(response.status === 429);
 * ```
 */
export interface RateLimitExceededBody {
  /** Always `"rate_limit_exceeded"`. */
  error: "rate_limit_exceeded";
  /** A sentence for people. */
  message: string;
  /** Seconds until a retry can pass; `null` when the request can never pass. */
  retry_after_seconds: number | null;
  /** The same in whole milliseconds; `null` when the request can never pass. */
  retry_after_ms: number | null;
  /** Every limit that was checked, in the order given. */
  limits: LimitStatusBody[];
}

/**
 * Thrown by `acquire` when at least one limit lacks tokens. Nothing was consumed.
 *
 * `statuses` lists every limit checked (the entity's first, then the parent's for a cascaded call),
 * `primaryViolation` is the violation with the longest wait and `retryAfterSeconds` its exact
 * wait. When a request asks for more than a limit's capacity it can never pass: then
 * `impossible` is `true` and `retryAfterSeconds` is `Infinity` (the header is omitted by the
 * HTTP helpers and `asDict()` gives `null`).
 *
 * @example
 * ```ts
 * import { RateLimitExceeded } from "./errors.ts";
 * import { Limit } from "./limit.ts";
 * const limit = Limit.perMinute("rpm", 10);
 * const e = new RateLimitExceeded([{ entityId: "key-1", resource: "gpt-4", limitName: "rpm", limit,
 *   available: 0, requested: 1, exceeded: true, retryAfterSeconds: 5.5 }]);
 * console.assert(e.retryAfterHeader === "6");
 * ```
 */
export class RateLimitExceeded extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "RateLimitExceeded";
  /** Every limit checked, in order. */
  readonly statuses: LimitStatus[];
  /** The limits that refused the request. */
  readonly violations: LimitStatus[];
  /** The limits that had enough tokens. */
  readonly passed: LimitStatus[];
  /** The violation with the longest wait. */
  readonly primaryViolation: LimitStatus;
  /** Exact seconds until the request can pass (`Infinity` if it never can). */
  readonly retryAfterSeconds: number;
  /** `Retry-After` header value: whole seconds, rounded up (`""` if the request can never pass). */
  readonly retryAfterHeader: string;
  /** True when some limit's capacity is smaller than the request: no wait will help. */
  readonly impossible: boolean;

  /**
   * Builds the error from the status of every limit checked.
   *
   * @param statuses The status of every limit checked; at least one must be exceeded.
   * @throws {TypeError} When no status is exceeded.
   */
  constructor(statuses: LimitStatus[]) {
    const violations = statuses.filter((s) => s.exceeded);
    if (violations.length === 0) {
      throw new TypeError("RateLimitExceeded needs at least one exceeded limit");
    }
    const primary = violations.reduce((
      a,
      b,
    ) => (b.retryAfterSeconds > a.retryAfterSeconds ? b : a));
    const impossible = !Number.isFinite(primary.retryAfterSeconds);
    super(
      impossible
        ? `Rate limit can never be satisfied: ${primary.limitName} of ${primary.entityId}/${primary.resource} ` +
          `has capacity ${primary.limit.capacity} but ${primary.requested} were requested`
        : `Rate limit exceeded: ${primary.limitName} of ${primary.entityId}/${primary.resource} ` +
          `(available ${primary.available}, requested ${primary.requested}); ` +
          `retry after ${primary.retryAfterSeconds}s`,
    );
    this.statuses = statuses;
    this.violations = violations;
    this.passed = statuses.filter((s) => !s.exceeded);
    this.primaryViolation = primary;
    this.retryAfterSeconds = primary.retryAfterSeconds;
    this.impossible = impossible;
    this.retryAfterHeader = impossible ? "" : String(Math.ceil(primary.retryAfterSeconds));
  }

  /**
   * A JSON body to send with a 429 response, as is: snake_case fields, every limit checked, and
   * `null` for the waits of a request that can never pass.
   *
   * @example
   * ```ts
   * import { RateLimitExceeded } from "./errors.ts";
   * import { Limit } from "./limit.ts";
   * const e = new RateLimitExceeded([{ entityId: "key-1", resource: "gpt-4", limitName: "rpm",
   *   limit: Limit.perMinute("rpm", 10), available: 0, requested: 1, exceeded: true,
   *   retryAfterSeconds: 5.5 }]);
   * const body = e.asDict();
   * console.assert(body.error === "rate_limit_exceeded" && body.retry_after_ms === 5500);
   * console.assert(body.limits[0].limit_name === "rpm" && body.limits[0].capacity === 10);
   * ```
   */
  asDict(): RateLimitExceededBody {
    const finite = (n: number) => (Number.isFinite(n) ? n : null);
    return {
      error: "rate_limit_exceeded",
      message: this.message,
      retry_after_seconds: finite(this.retryAfterSeconds),
      retry_after_ms: this.impossible ? null : Math.ceil(this.retryAfterSeconds * 1000),
      limits: this.statuses.map((s) => ({
        entity_id: s.entityId,
        resource: s.resource,
        limit_name: s.limitName,
        capacity: s.limit.capacity,
        refill_amount: s.limit.refillAmount,
        refill_period_seconds: s.limit.refillPeriodSeconds,
        available: s.available,
        requested: s.requested,
        exceeded: s.exceeded,
        retry_after_seconds: finite(s.retryAfterSeconds),
      })),
    };
  }

  /**
   * Same as {@link asDict}, so `JSON.stringify(error)` gives the body.
   *
   * @example
   * ```ts
   * import { RateLimitExceeded } from "./errors.ts";
   * import { Limit } from "./limit.ts";
   * const e = new RateLimitExceeded([{ entityId: "key-1", resource: "gpt-4", limitName: "rpm",
   *   limit: Limit.perMinute("rpm", 10), available: 0, requested: 1, exceeded: true,
   *   retryAfterSeconds: 2 }]);
   * console.assert(JSON.parse(JSON.stringify(e)).retry_after_seconds === 2);
   * ```
   */
  toJSON(): RateLimitExceededBody {
    return this.asDict();
  }
}

/**
 * DynamoDB could not be reached, timed out or throttled past the retries within the deadline,
 * and the call's failure mode is FAIL_CLOSED. `cause` holds the last underlying error.
 *
 * @example
 * ```ts
 * import { RateLimiterUnavailable } from "./errors.ts";
 * const e = new RateLimiterUnavailable("acquire", new Error("ECONNREFUSED"));
 * console.assert(e.message.includes("acquire"));
 * ```
 */
export class RateLimiterUnavailable extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "RateLimiterUnavailable";
  /**
   * Builds the error for an operation that could not reach DynamoDB.
   *
   * @param operation What was being done, e.g. `"acquire"`.
   * @param cause The underlying error, kept as `cause`.
   */
  constructor(operation: string, cause?: unknown) {
    const why = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause ?? "");
    super(`Rate limiter unavailable during ${operation}${why ? ` (${why})` : ""}`, { cause });
  }
}

/**
 * The limiter is set up wrong: the table does not exist or has other keys, access is denied, the
 * credentials are refused, the region is missing, DynamoDB refused the request as invalid, or the
 * table's schema version is older than an operation needs (`schema-outdated`: run `zae-limiter
 * upgrade`) or newer than this library knows (`schema-newer`). This
 * is not an outage: it is raised at once, in both failure modes, and never turned into a pass.
 * `kind` names what is wrong; the message also says what to do.
 *
 * @example
 * ```ts
 * import { ConfigurationError } from "./errors.ts";
 * const e = new ConfigurationError("table-not-found", 'Table "t" does not exist');
 * console.assert(e.kind === "table-not-found");
 * ```
 */
export class ConfigurationError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "ConfigurationError";
  /** What is wrong, as a stable word a program can test. */
  readonly kind: ConfigurationErrorKind;

  /**
   * Builds the error.
   *
   * @param kind What is wrong.
   * @param message What is wrong and what to do, on one line.
   * @param cause The underlying SDK error, kept as `cause`.
   */
  constructor(kind: ConfigurationErrorKind, message: string, cause?: unknown) {
    super(message, { cause });
    this.kind = kind;
  }
}

/** The kinds of {@link ConfigurationError}. */
export type ConfigurationErrorKind =
  | "table-not-found"
  | "table-schema"
  | "access-denied"
  | "bad-credentials"
  | "region-missing"
  | "invalid-request"
  | "schema-outdated"
  | "schema-newer";

/**
 * A lease was used after `commit` or `rollback`.
 *
 * @example
 * ```ts
 * import { LeaseClosedError } from "./errors.ts";
 * console.assert(new LeaseClosedError("committed").message.includes("committed"));
 * ```
 */
export class LeaseClosedError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LeaseClosedError";
  /**
   * Builds the error for a lease closed in the given way.
   *
   * @param state How the lease was closed.
   * @param action What was asked of it (`adjusted`, `consumed from`, `released`).
   */
  constructor(state: "committed" | "rolled back", action = "adjusted") {
    super(`The lease is already ${state}; it cannot be ${action}`);
  }
}

/**
 * A lease held a slot of a concurrent limit ({@link Limit.concurrent}) longer than its
 * `leaseTimeoutMs`, and another acquire reclaimed the slot as a crashed process's. Thrown by
 * `commit` after its token adjustments were written all the same (the usage happened); the lease
 * is closed. A rollback of such a lease throws nothing.
 *
 * @example
 * ```ts
 * import { LeaseExpiredError } from "./errors.ts";
 * const err = new LeaseExpiredError("key-1", "llm", ["streams"]);
 * console.assert(err.limitNames[0] === "streams" && err.message.includes("leaseTimeoutMs"));
 * ```
 */
export class LeaseExpiredError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LeaseExpiredError";
  /** The entity of the bucket. */
  readonly entityId: string;
  /** The resource of the bucket. */
  readonly resource: string;
  /** The concurrent limits whose slot was gone. */
  readonly limitNames: string[];
  /**
   * Builds the error.
   *
   * @param entityId The entity of the bucket.
   * @param resource The resource of the bucket.
   * @param limitNames The concurrent limits whose slot was gone.
   */
  constructor(entityId: string, resource: string, limitNames: string[]) {
    super(
      `The lease on ${entityId}/${resource} outlived its leaseTimeoutMs: its slot of ` +
        `${limitNames.join(", ")} had expired and was taken back (its tokens were still written)`,
    );
    this.entityId = entityId;
    this.resource = resource;
    this.limitNames = limitNames;
  }
}

/**
 * The entity does not exist.
 *
 * @example
 * ```ts
 * import { EntityNotFoundError } from "./errors.ts";
 * console.assert(new EntityNotFoundError("proj-1").entityId === "proj-1");
 * ```
 */
export class EntityNotFoundError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "EntityNotFoundError";
  /** The id that was not found. */
  readonly entityId: string;
  /**
   * Builds the error for a missing entity.
   *
   * @param entityId The id that was not found.
   */
  constructor(entityId: string) {
    super(`Entity not found: ${showValue(entityId)}`);
    this.entityId = entityId;
  }
}

/**
 * An entity with this id exists already.
 *
 * @example
 * ```ts
 * import { EntityExistsError } from "./errors.ts";
 * console.assert(new EntityExistsError("key-1").entityId === "key-1");
 * ```
 */
export class EntityExistsError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "EntityExistsError";
  /** The id that exists. */
  readonly entityId: string;
  /**
   * Builds the error for an entity id already taken.
   *
   * @param entityId The id that exists.
   */
  constructor(entityId: string) {
    super(`Entity already exists: ${showValue(entityId)}`);
    this.entityId = entityId;
  }
}

/**
 * An acquire (or `available` / `timeUntilAvailable`) on a switched-off entity or resource: an
 * operator's decision, not a lack of tokens. Thrown before any bucket write, in both failure
 * modes, and never retried; the HTTP helpers answer 403. `disabled` says what is switched off:
 * the entity itself, its parent (a disabled parent switches off its children), or the resource.
 *
 * @example
 * ```ts
 * import { EntityDisabledError } from "./errors.ts";
 * const e = new EntityDisabledError("key-1", "gpt-4", "parent", "proj-1");
 * console.assert(e.disabledId === "proj-1" && e.message.includes("parent"));
 * console.assert(e.asDict().error === "entity_disabled");
 * ```
 */
export class EntityDisabledError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "EntityDisabledError";
  /** The entity of the call. */
  readonly entityId: string;
  /** The resource of the call (its primary one, when it names `also`). */
  readonly resource: string;
  /** What is switched off. */
  readonly disabled: "entity" | "parent" | "resource";
  /** The id of what is switched off: the entity's, its parent's, or the resource. */
  readonly disabledId: string;

  /**
   * Builds the error.
   *
   * @param entityId The entity of the call.
   * @param resource The resource of the call.
   * @param disabled What is switched off.
   * @param disabledId Its id (the entity's, the parent's, or the resource: the call's, or one
   *   of its `also` resources).
   */
  constructor(
    entityId: string,
    resource: string,
    disabled: "entity" | "parent" | "resource",
    disabledId: string,
  ) {
    const what = disabled === "resource"
      ? `resource ${showValue(disabledId)} is disabled`
      : disabled === "parent"
      ? `parent ${showValue(disabledId)} of entity ${showValue(entityId)} is disabled`
      : `entity ${showValue(entityId)} is disabled`;
    super(`Refused: ${what}`);
    this.entityId = entityId;
    this.resource = resource;
    this.disabled = disabled;
    this.disabledId = disabledId;
  }

  /** The JSON body of the 403 response. */
  asDict(): {
    error: "entity_disabled";
    message: string;
    entity_id: string;
    resource: string;
    disabled: "entity" | "parent" | "resource";
    disabled_id: string;
  } {
    return {
      error: "entity_disabled",
      message: this.message,
      entity_id: this.entityId,
      resource: this.resource,
      disabled: this.disabled,
      disabled_id: this.disabledId,
    };
  }
}
