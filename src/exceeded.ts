/**
 * The refusal of a request: {@link RateLimitExceeded}, the status of each limit it checked, and the
 * JSON body of a 429 response. Exported from `errors.ts` with the other errors.
 *
 * @module
 */

import type { Limit } from "./limit.ts";
import { ZaeLimiterError } from "./error_base.ts";

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
