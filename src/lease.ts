/**
 * {@link Lease}: the tokens an acquire took, with adjust, consume, release, commit and rollback.
 *
 * @module
 */

import {
  LeaseClosedError,
  LeaseExpiredError,
  type LimitStatus,
  type RateLimiterUnavailable,
  ValidationError,
} from "./errors.ts";
import type { LeaseOps, LeaseTarget } from "./engine/types.ts";
import { amountsToMilli } from "./validate.ts";
import { atLeastMinusTaken, nonZero, plus, takenPerLimit, withoutSlot } from "./lease_amounts.ts";

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
 * gives everything back; `consume` takes more at once (refused when the budget ran out: a stream
 * cut off mid-answer) and `release` gives some back at once. `await using` commits on scope exit
 * unless rolled back.
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
  #targets: LeaseTarget[];
  readonly #names: Set<string>;
  #requested: Map<string, bigint>;
  #pending = new Map<string, bigint>();
  #committed = new Map<string, bigint>();
  #state: "open" | "committed" | "rolled back" = "open";
  /** Consumes and releases under way: commit and rollback wait for them. */
  readonly #inflight = new Set<Promise<unknown>>();

  /** @internal Made by the limiter. */
  constructor(init: LeaseInit) {
    this.#ops = init.limiter;
    this.#targets = init.targets;
    this.failedOpen = init.failedOpen;
    this.bypassed = init.bypassed ?? false;
    this.cause = init.cause;
    this.#requested = new Map(init.requested ?? takenPerLimit(init.targets));
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
   * Takes more tokens while the lease is open, as a write of its own: the conditional write of an
   * acquire on the lease's buckets (the parent's too, through cascade), counting no request. It
   * lets a stream be cut off when the budget runs out mid-answer. Refused with
   * `RateLimitExceeded`, it takes nothing and the lease stays open with what it had. What it took
   * joins the lease: `rollback` gives it back, `commit` writes nothing more for it.
   *
   * A lease served from a token batch draws from the batch; a lease on a sharded bucket takes from
   * its own shard (refused when that shard is empty: no other shard is tried). When DynamoDB
   * cannot answer, the acquire's failure mode decides: FAIL_OPEN records the tokens to write once
   * DynamoDB is back, FAIL_CLOSED throws `RateLimiterUnavailable`. A lease that failed open takes
   * without asking, written once DynamoDB is back; a bypassed one writes nothing.
   *
   * @param amounts Tokens per limit name (zero or more).
   * @throws {RateLimitExceeded} When a bucket has not enough left (nothing is taken).
   * @throws {LeaseClosedError} After `commit` or `rollback`.
   * @throws {ValidationError} For an unknown limit name or an amount that is not a finite number
   * from 0 up.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { RateLimitExceeded } from "./errors.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const limits = [Limit.perMinute("tpm", 1000)];
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4", limits,
   *   consume: { tpm: 100 } });
   * let streamed = 0;
   * try {
   *   for (;;) { await lease.consume({ tpm: 300 }); streamed += 300; } // one chunk at a time
   * } catch (err) {
   *   if (!(err instanceof RateLimitExceeded)) throw err; // the budget ran out: stop the stream
   * }
   * await lease.commit();
   * console.assert(streamed === 900 && lease.consumed.tpm === 1000);
   * ```
   */
  consume(amounts: Record<string, number>): Promise<void> {
    if (this.#state !== "open") {
      return Promise.reject(new LeaseClosedError(this.#state, "consumed from"));
    }
    let parsed: Map<string, bigint>;
    try {
      parsed = nonZero(amountsToMilli("consume", amounts, this.#names, { allowNegative: false }));
    } catch (err) {
      return Promise.reject(err);
    }
    if (parsed.size === 0) return Promise.resolve();
    return this.#track((async () => {
      const took = this.#ops.take ? await this.#ops.take(parsed) : [];
      for (const [name, m] of parsed) {
        this.#requested.set(name, (this.#requested.get(name) ?? 0n) + m);
      }
      if (took.length === this.#targets.length) {
        this.#targets = this.#targets.map((t, i) => ({
          ...t,
          consumed: plus(t.consumed, took[i].consumed),
          statuses: took[i].statuses.length > 0 ? took[i].statuses : t.statuses,
        }));
      }
    })());
  }

  /**
   * Gives tokens back before commit, written at once (visible to other processes; in an outage
   * it waits in the outbox and is applied exactly once). A lease served from a token batch gives
   * them back to its batch, as `rollback` does. The lease holds less from then on: a later
   * `rollback` gives back only the rest.
   *
   * @param amounts Tokens per limit name, each at most what the lease holds of that limit (the
   * acquire's amount plus what `consume` took, less earlier releases; adjustments not committed
   * do not count).
   * @throws {LeaseClosedError} After `commit` or `rollback`.
   * @throws {ValidationError} For an unknown limit name, an amount that is not a finite number
   * from 0 up, or more than the lease holds; nothing is written then.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * const limits = [Limit.perMinute("tpm", 10_000)];
   * const lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4", limits,
   *   consume: { tpm: 4_000 } }); // the longest answer the model may give
   * await lease.release({ tpm: 3_000 }); // the stream ended early
   * const { tpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits });
   * console.assert(tpm === 9_000 && lease.consumed.tpm === 1_000);
   * await lease.commit();
   * ```
   */
  release(amounts: Record<string, number>): Promise<void> {
    if (this.#state !== "open") {
      return Promise.reject(new LeaseClosedError(this.#state, "released"));
    }
    let parsed: Map<string, bigint>;
    try {
      parsed = nonZero(amountsToMilli("release", amounts, this.#names, { allowNegative: false }));
      for (const [name, m] of parsed) {
        const held = this.#requested.get(name) ?? 0n;
        if (m > held) {
          throw new ValidationError(
            `release.${name}`,
            amounts[name],
            `must not exceed what the lease holds of the limit (${Number(held) / 1000})`,
          );
        }
      }
    } catch (err) {
      return Promise.reject(err);
    }
    if (parsed.size === 0) return Promise.resolve();
    // Counted at once, so that a release or rollback started meanwhile cannot give it back twice.
    const before = { requested: new Map(this.#requested), targets: this.#targets };
    const backs = this.#targets.map((t) => {
      const back = new Map<string, bigint>();
      for (const [name, m] of parsed) {
        const held = t.consumed.get(name) ?? 0n;
        if (t.specs.has(name) && held > 0n) back.set(name, -(m < held ? m : held));
      }
      return back;
    });
    for (const [name, m] of parsed) this.#requested.set(name, this.#requested.get(name)! - m);
    this.#targets = this.#targets.map((t, i) => ({ ...t, consumed: plus(t.consumed, backs[i]) }));
    const write = this.failedOpen
      ? this.#ops.write([], [new Map([...parsed].map(([name, m]) => [name, -m]))], 0, "release")
      : this.#ops.write(this.#targets.map(withoutSlot), backs, 0, "release");
    return this.#track(write.catch((err) => {
      // Not written (a misconfiguration: an outage waits in the outbox): the lease still holds it.
      this.#requested = before.requested;
      this.#targets = before.targets;
      throw err;
    }));
  }

  /** Keeps `p` until it settles, for commit and rollback to wait on. */
  #track(p: Promise<void>): Promise<void> {
    this.#inflight.add(p);
    return p.finally(() => this.#inflight.delete(p));
  }

  /** Waits for consumes and releases under way (whatever their outcome). */
  async #settle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  /**
   * Writes pending adjustments (no write when there are none) and closes the lease. A second
   * call does nothing. When DynamoDB is unavailable the write waits in the limiter's outbox and
   * is applied exactly once when it is back (see `RateLimiter.flush`). A lease holding a slot of
   * a concurrent limit frees it here.
   *
   * @throws {LeaseExpiredError} When the lease outlived its `leaseTimeoutMs` and its slot was
   * taken back; its adjustments were written all the same and the lease is closed.
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
    await this.#settle();
    if (this.#state !== "open") return;
    // Clamped per bucket, against what the acquire took from that very bucket. A failed-open
    // lease's acquire is recorded later with the same amounts in every bucket that has the limit.
    const deltas = this.failedOpen
      ? [atLeastMinusTaken(this.#pending, this.#requested)]
      : this.#targets.map((t) => atLeastMinusTaken(this.#pending, t.consumed, t.specs));
    // A lease holding a slot of a concurrent limit writes to free it, adjustments or not.
    let expired: LeaseExpiredError | undefined;
    if (deltas.some((d) => d.size > 0) || this.#targets.some((t) => t.slot)) {
      try {
        await this.#ops.write(this.#targets, deltas, 0, "commit");
      } catch (err) {
        // Its slot was taken back: the adjustments were written all the same; closed.
        if (!(err instanceof LeaseExpiredError)) throw err;
        expired = err;
      }
    }
    for (const [name, d] of atLeastMinusTaken(this.#pending, this.#requested)) {
      this.#committed.set(name, (this.#committed.get(name) ?? 0n) + d);
    }
    this.#pending.clear();
    this.#state = "committed";
    if (expired) throw expired;
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
    await this.#settle();
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
      ).catch((err) => {
        // A slot already taken back after expiry: the tokens went back, nothing more to free.
        if (!(err instanceof LeaseExpiredError)) throw err;
      });
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
