/**
 * {@link Lease}: the tokens an acquire took, with adjust, commit and rollback.
 *
 * @module
 */

import { LeaseClosedError, type LimitStatus, type RateLimiterUnavailable } from "./errors.ts";
import type { LeaseOps, LeaseTarget } from "./engine/types.ts";
import { amountsToMilli } from "./validate.ts";

export type { LeaseTarget };

/** @internal */
export interface LeaseInit {
  limiter: LeaseOps;
  targets: LeaseTarget[];
  failedOpen: boolean;
  bypassed?: boolean;
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
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter({ clock: () => 0 });
 * const limits = [Limit.perMinute("tpm", 10_000)];
 * {
 *   await using lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4", limits,
 *     consume: { tpm: 500 } });
 *   await lease.adjust({ tpm: 742 - 500 }); // the real usage
 * } // committed here
 * const { tpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits });
 * console.assert(tpm === 10_000 - 742);
 * ```
 */
export class Lease implements AsyncDisposable {
  /** True when DynamoDB could not be reached and the request was let through (FAIL_OPEN). */
  readonly failedOpen: boolean;
  /**
   * True when the entity (or its parent) has `bypass` on: the request was admitted without
   * consuming, and the lease's methods write nothing (see `RateLimiter.setBypass`).
   */
  readonly bypassed: boolean;
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
    this.bypassed = init.bypassed ?? false;
    this.cause = init.cause;
    this.#requested = init.requested ?? takenPerLimit(init.targets);
    this.#names = new Set([...this.#requested.keys()]);
    for (const t of init.targets) for (const name of t.specs.keys()) this.#names.add(name);
  }

  /**
   * The status of every limit just after the acquire, the entity's first, then the parent's:
   * `available` is what was left (other processes may have taken more since). Empty for a
   * lease that failed open.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
   * console.assert(lease.statuses[0].limitName === "rpm" && lease.statuses[0].available === 9);
   * await lease.commit();
   * ```
   */
  get statuses(): readonly LimitStatus[] {
    return this.#targets.flatMap((t) => t.statuses);
  }

  /**
   * Shadow mode: true when the acquire would have been refused and was admitted instead (its
   * limits were written into debt). See `AcquireOptions.shadow`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0, shadow: true });
   * const limits = [Limit.perMinute("rpm", 1)];
   * await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } });
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "api", limits,
   *   consume: { rpm: 1 } });
   * console.assert(lease.shadowRefused && lease.shadowRefusals[0].limitName === "rpm");
   * ```
   */
  get shadowRefused(): boolean {
    return this.#targets.some((t) => (t.shadowRefusals?.length ?? 0) > 0);
  }

  /**
   * Shadow mode: the statuses of the limits that would have refused the acquire, as they were
   * before it (`exceeded: true`, the retry-after it would have had); empty when none would have.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0, shadow: true });
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "api",
   *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
   * console.assert(lease.shadowRefusals.length === 0 && !lease.shadowRefused);
   * ```
   */
  get shadowRefusals(): readonly LimitStatus[] {
    return this.#targets.flatMap((t) => t.shadowRefusals ?? []);
  }

  /**
   * Tokens consumed per limit name: the acquire's amounts plus adjustments (their sum never below
   * zero: see {@link Lease.adjust}), rolled back to 0.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("tpm", 10_000)], consume: { tpm: 500 } });
   * await lease.adjust({ tpm: 120 });
   * console.assert(lease.consumed.tpm === 620);
   * await lease.rollback();
   * console.assert(lease.consumed.tpm === 0);
   * ```
   */
  get consumed(): Readonly<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const name of this.#names) {
      const pending = atLeastMinusTaken(this.#pending, this.#requested).get(name) ?? 0n;
      const base = this.#state === "rolled back"
        ? 0n
        : (this.#requested.get(name) ?? 0n) + (this.#committed.get(name) ?? 0n) + pending;
      out[name] = Number(base) / 1000;
    }
    return Object.freeze(out);
  }

  /**
   * `"open"`, `"committed"` or `"rolled back"`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
   * console.assert(lease.state === "open");
   * await lease.commit();
   * console.assert(lease.state === "committed");
   * ```
   */
  get state(): "open" | "committed" | "rolled back" {
    return this.#state;
  }

  /**
   * Records extra (positive) or returned (negative) tokens, e.g. the real LLM usage against the
   * estimate. Never throws `RateLimitExceeded`: balances may go below zero. Written by `commit`.
   *
   * A lease never gives back more than its acquire took: at commit, the sum of a limit's
   * adjustments is clamped at minus the acquire's amount, in every bucket the lease touched (the
   * key's and, through cascade, the parent's), so its net consumption is never below zero and it
   * cannot return tokens that other leases took. A limit the acquire took nothing of can only be
   * adjusted upwards. The sum is clamped, not each call, so the order of calls does not matter.
   *
   * @param deltas Tokens per limit name, positive to take more, negative to give back.
   * @throws {LeaseClosedError} After `commit` or `rollback`.
   * @throws {ValidationError} For an unknown limit name or an amount that is not a finite number.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const limits = [Limit.perMinute("tpm", 1000)];
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4", limits,
   *   consume: { tpm: 500 } });
   * await lease.adjust({ tpm: 800 }); // more than is left: the bucket goes into debt
   * await lease.commit();
   * const { tpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits });
   * console.assert(tpm === -300);
   *
   * const other = await limiter.acquire({ entityId: "key-2", resource: "gpt-4", limits,
   *   consume: { tpm: 100 } });
   * await other.adjust({ tpm: -5_000 }); // gives back the 100 it took, no more
   * console.assert(other.consumed.tpm === 0);
   * await other.commit();
   * ```
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
   * call does nothing. When DynamoDB is unavailable the write waits in the limiter's outbox and
   * is applied exactly once when it is back (see `RateLimiter.flush`).
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const limits = [Limit.perMinute("tpm", 1000)];
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4", limits,
   *   consume: { tpm: 100 } });
   * await lease.adjust({ tpm: -40 }); // used less than estimated
   * await lease.commit();
   * const { tpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits });
   * console.assert(tpm === 940);
   * ```
   */
  async commit(): Promise<void> {
    if (this.#state !== "open") return;
    // Clamped per bucket, against what the acquire took from that very bucket. A failed-open
    // lease's acquire is recorded later with the same amounts in every bucket that has the limit.
    const deltas = this.failedOpen
      ? [atLeastMinusTaken(this.#pending, this.#requested)]
      : this.#targets.map((t) => atLeastMinusTaken(this.#pending, t.consumed, t.specs));
    if (deltas.some((d) => d.size > 0)) await this.#ops.write(this.#targets, deltas, 0, "commit");
    for (const [name, d] of atLeastMinusTaken(this.#pending, this.#requested)) {
      this.#committed.set(name, (this.#committed.get(name) ?? 0n) + d);
    }
    this.#pending.clear();
    this.#state = "committed";
  }

  /**
   * Gives back what the acquire took, drops pending adjustments and closes the lease. A second
   * call (or a call after commit) does nothing. When DynamoDB is unavailable the write waits in
   * the limiter's outbox and is applied exactly once when it is back.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const limits = [Limit.perMinute("rpm", 10)];
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4", limits,
   *   consume: { rpm: 1 } });
   * await lease.rollback(); // the upstream call failed: give the token back
   * const { rpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits });
   * console.assert(rpm === 10);
   * ```
   */
  async rollback(): Promise<void> {
    if (this.#state !== "open") return;
    if (this.failedOpen) {
      const back = new Map([...this.#requested].map(([name, m]) => [name, -m]));
      await this.#ops.write([], [back], -1, "rollback");
    } else if (this.#targets.length > 0) {
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

  /**
   * Commits unless rolled back; for `await using`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
   * await lease[Symbol.asyncDispose]();
   * console.assert(lease.state === "committed");
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.commit();
  }
}

/** What the acquire took per limit name: the same amount from every bucket that has the limit. */
function takenPerLimit(targets: LeaseTarget[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const t of targets) {
    for (const [name, m] of t.consumed) if (!out.has(name)) out.set(name, m);
  }
  return out;
}

/**
 * The non-zero adjustments, each raised to at least minus what the acquire took of its limit
 * (nothing when the acquire took none), optionally only for the limits of `only`.
 */
function atLeastMinusTaken(
  deltas: Map<string, bigint>,
  taken: Map<string, bigint>,
  only?: Map<string, unknown>,
): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const [name, d] of deltas) {
    if (only && !only.has(name)) continue;
    const floor = -(taken.get(name) ?? 0n);
    const clamped = d < floor ? floor : d;
    if (clamped !== 0n) out.set(name, clamped);
  }
  return out;
}
