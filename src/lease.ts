/**
 * {@link Lease}: the tokens an acquire took, with adjust, commit and rollback.
 *
 * @module
 */

import type { BucketSpec } from "./bucket.ts";
import { LeaseClosedError, type LimitStatus, type RateLimiterUnavailable } from "./errors.ts";
import type { LeaseOps } from "./limiter.ts";
import { amountsToMilli } from "./validate.ts";

/** One bucket a lease consumed from. */
export interface LeaseTarget {
  /** Entity of the bucket. */
  entityId: string;
  /** Resource of the bucket. */
  resource: string;
  /** Specs of the limits applied, by name. */
  specs: Map<string, BucketSpec>;
  /** Spec keys of the limits applied, by name. */
  keys: Map<string, string>;
  /** Thousandths consumed per limit by the acquire. */
  consumed: Map<string, bigint>;
  /** Every limit's status just after the acquire. */
  statuses: LimitStatus[];
}

/** @internal */
export interface LeaseInit {
  limiter: LeaseOps;
  targets: LeaseTarget[];
  failedOpen: boolean;
  cause?: RateLimiterUnavailable;
  requested?: Map<string, bigint>;
}

/**
 * The tokens taken by {@link RateLimiter.acquire}. The acquire has already written them;
 * `adjust` records more (or fewer) tokens, `commit` writes those adjustments and `rollback`
 * gives everything back. `await using` commits on scope exit unless rolled back.
 *
 * A lease returned in FAIL_OPEN mode while DynamoDB was unavailable has `failedOpen === true`
 * and its methods write nothing.
 *
 * @example
 * ```ts ignore
 * await using lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
 *   limits: [Limit.perMinute("tpm", 10_000)], consume: { tpm: 500 } });
 * await lease.adjust({ tpm: 742 - 500 }); // the real usage
 * ```
 */
export class Lease implements AsyncDisposable {
  /** True when DynamoDB could not be reached and the request was let through (FAIL_OPEN). */
  readonly failedOpen: boolean;
  /** Why the lease failed open, when it did. */
  readonly cause?: RateLimiterUnavailable;
  readonly #ops: LeaseOps;
  readonly #targets: LeaseTarget[];
  readonly #names: Set<string>;
  readonly #requested: Map<string, bigint>;
  #pending = new Map<string, bigint>();
  #committed = new Map<string, bigint>();
  #state: "open" | "committed" | "rolled back" = "open";

  /** @internal Made by the limiter. */
  constructor(init: LeaseInit) {
    this.#ops = init.limiter;
    this.#targets = init.targets;
    this.failedOpen = init.failedOpen;
    this.cause = init.cause;
    this.#requested = init.requested ?? init.targets[0]?.consumed ?? new Map();
    this.#names = new Set([...this.#requested.keys()]);
    for (const t of init.targets) for (const name of t.specs.keys()) this.#names.add(name);
  }

  /**
   * The status of every limit just after the acquire, the entity's first, then the parent's:
   * `available` is what was left (other processes may have taken more since). Empty for a
   * lease that failed open.
   */
  get statuses(): readonly LimitStatus[] {
    return this.#targets.flatMap((t) => t.statuses);
  }

  /** Tokens consumed per limit name: the acquire's amounts plus adjustments, rolled back to 0. */
  get consumed(): Readonly<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const name of this.#names) {
      const base = this.#state === "rolled back" ? 0n : (this.#requested.get(name) ?? 0n) +
        (this.#committed.get(name) ?? 0n) + (this.#pending.get(name) ?? 0n);
      out[name] = Number(base) / 1000;
    }
    return Object.freeze(out);
  }

  /** `"open"`, `"committed"` or `"rolled back"`. */
  get state(): "open" | "committed" | "rolled back" {
    return this.#state;
  }

  /**
   * Records extra (positive) or returned (negative) tokens, e.g. the real LLM usage against the
   * estimate. Never throws `RateLimitExceeded`: balances may go below zero. Written by `commit`.
   */
  adjust(deltas: Record<string, number>): Promise<void> {
    if (this.#state !== "open") return Promise.reject(new LeaseClosedError(this.#state));
    let parsed: Map<string, bigint>;
    try {
      parsed = amountsToMilli("adjust", deltas, this.#names, { allowNegative: true });
    } catch (err) {
      return Promise.reject(err);
    }
    for (const [name, d] of parsed) this.#pending.set(name, (this.#pending.get(name) ?? 0n) + d);
    return Promise.resolve();
  }

  /**
   * Writes pending adjustments (no write when there are none) and closes the lease. A second
   * call does nothing. When DynamoDB is unavailable it throws `RateLimiterUnavailable` and the
   * lease stays open, adjustments kept, so the call can be repeated.
   */
  async commit(): Promise<void> {
    if (this.#state !== "open") return;
    const pending = new Map([...this.#pending].filter(([, d]) => d !== 0n));
    if (pending.size > 0 && !this.failedOpen) {
      await this.#ops.write(
        this.#targets,
        this.#targets.map((t) => new Map([...pending].filter(([name]) => t.specs.has(name)))),
        0,
        "commit",
      );
    }
    for (const [name, d] of pending) {
      this.#committed.set(name, (this.#committed.get(name) ?? 0n) + d);
    }
    this.#pending.clear();
    this.#state = "committed";
  }

  /**
   * Gives back what the acquire took, drops pending adjustments and closes the lease. A second
   * call (or a call after commit) does nothing. When DynamoDB is unavailable it throws
   * `RateLimiterUnavailable` and the lease stays open.
   */
  async rollback(): Promise<void> {
    if (this.#state !== "open") return;
    if (!this.failedOpen && this.#targets.length > 0) {
      await this.#ops.write(
        this.#targets,
        this.#targets.map((t) => new Map([...t.consumed].map(([name, m]) => [name, -m]))),
        -1,
        "rollback",
      );
    }
    this.#pending.clear();
    this.#state = "rolled back";
  }

  /** Commits unless rolled back; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.commit();
  }
}
