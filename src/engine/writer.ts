/**
 * The writer: sends planned bucket writes to DynamoDB exactly once. It owns the attempts within a
 * deadline, what an ambiguous answer means, the write-count bound, retries after a wrong guess,
 * and the process's knowledge of each bucket (lower bounds of its tats and write count).
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import {
  RateLimiterUnavailable,
  RateLimitExceeded,
  ValidationError,
  type ZaeLimiterError,
} from "../errors.ts";
import type { BucketWrite, StoredBucket, StoredLimit } from "../repository.ts";
import { limiterError, misconfiguration, type Whereabouts } from "../failure.ts";
import { DeadlineExceeded, mayHaveApplied, withRetries } from "../retry.ts";
import { leaseExpired } from "./concurrency.ts";
import { Op, UncertainOutcome } from "./op.ts";
import type { Outbox } from "./outbox.ts";
import { creditTtl, leaseTargetAfter, planAcquire, planAdjust, planConversion } from "./plan.ts";
import { WriteSlots } from "./slots.ts";
import type { Telemetry } from "../telemetry.ts";
import { BucketKnowledge } from "./knowledge.ts";
import { ReceiptSweep } from "./sweep.ts";
import { throttledItems } from "./throttle.ts";
import { ttlForDebt, ttlShortfall, ttlToSend } from "./ttl.ts";
import { bucketId, type LeaseTarget, type MultiOutcome, type Target } from "./types.ts";

const MAX_ATTEMPTS = 50;

/** Options of {@link BucketWriter}. */
export interface BucketWriterOptions {
  backend: Backend;
  outbox: Outbox;
  clock: () => number;
  denyCache: boolean;
  maxCachedBuckets: number;
  /** Where the limiter points, for error messages. */
  where: Whereabouts;
  /** Counts retries and deny-cache hits (`telemetry.ts`). @default none */
  telemetry?: Telemetry;
}

/** Sends bucket writes exactly once and remembers what DynamoDB said of each bucket. */
export class BucketWriter {
  readonly #backend: Backend;
  readonly #outbox: Outbox;
  readonly #clock: () => number;
  readonly #denyCache: boolean;
  /** What the process knows of each bucket it wrote or read. */
  readonly knowledge: BucketKnowledge;
  readonly #slots = new WriteSlots();
  /** Per bucket, receipts no copy can need any more, removed by this process's next writes. */
  readonly #sweep: ReceiptSweep;
  /** What each write's plan asked of the TTL, before {@link BucketWriter.#ttlToWrite} decided. */
  readonly #neededTtl = new WeakMap<BucketWrite, bigint | undefined>();
  readonly #where: Whereabouts;
  readonly #telemetry?: Telemetry;
  /** Told of every target whose write DynamoDB throttled (auto-sharding listens). */
  onThrottle?: (target: Target) => void;

  constructor(options: BucketWriterOptions) {
    this.#backend = options.backend;
    this.#outbox = options.outbox;
    this.#clock = options.clock;
    this.#denyCache = options.denyCache;
    this.knowledge = new BucketKnowledge(options.maxCachedBuckets);
    this.#sweep = new ReceiptSweep(options.maxCachedBuckets);
    this.#where = options.where;
    this.#telemetry = options.telemetry;
  }

  /** The library error for a failure of `operation`: a misconfiguration or an outage. */
  fail(err: unknown, operation: string): ZaeLimiterError {
    return limiterError(err, operation, this.#where);
  }

  /**
   * Sends bucket writes (one UpdateItem, or one transaction), resending the same operation on
   * ambiguous failures. A failed condition caused by the operation's own receipt means an earlier
   * copy landed: that counts as success (`applied: true`). Each write also sweeps receipts that no
   * copy can need any more.
   */
  async writeItems(
    writes: BucketWrite[],
    deadline: number,
    op: Op,
    operation = "write",
    targets?: Target[],
  ): Promise<MultiOutcome & { applied?: boolean }> {
    const ids = writes.map(bucketId);
    let outcome: MultiOutcome & { applied?: boolean };
    try {
      writes.forEach((w, i) => {
        // Never its own receipt: a write cannot set and remove one attribute.
        w.sweep = this.#sweep.claim(ids[i], w.opId);
        w.itemExists = !w.cancel && (this.knowledge.get(ids[i])?.writes ?? 0n) > 0n;
        w.ttlSec = this.#ttlToWrite(w, ids[i], writes.length === 1);
      });
      outcome = this.#settle(
        writes,
        ids,
        op,
        await this.call(
          op,
          (signal) => this.#send(writes, op, signal, targets),
          deadline,
          operation,
        ),
      );
    } catch (err) {
      // Unanswered (it may land yet: removing a receipt twice does no harm) or in doubt.
      writes.forEach((w, i) => this.#sweep.settle(ids[i], w.sweep, false));
      throw err;
    }
    // Its receipts to remove went with the write that landed, or wait for another.
    writes.forEach((w, i) => this.#sweep.settle(ids[i], w.sweep, outcome.ok));
    if (outcome.ok && !outcome.applied) await this.#mendTtl(writes, outcome.items, deadline);
    return outcome;
  }

  /** One attempt: an UpdateItem, or a transaction of several. */
  async #send(
    writes: BucketWrite[],
    op: Op,
    signal: AbortSignal,
    targets?: Target[],
  ): Promise<MultiOutcome> {
    try {
      if (writes.length === 1) {
        const o = await this.#backend.buckets.writeBucket(writes[0], signal);
        // Answered after several attempts of the caller's own client: one may land yet.
        if (o.retried) op.ambiguous = true;
        return o.ok ? { ok: true, items: [o.item] } : { ok: false, olds: [o] };
      }
      const o = await this.#backend.buckets.transactBuckets(writes, signal);
      if (o.ok ? o.retried : o.olds.some((x) => !x.ok && x.retried)) op.ambiguous = true;
      return o.ok ? { ok: true, items: writes.map(() => undefined) } : o;
    } catch (err) {
      if (targets && this.onThrottle) {
        for (const i of throttledItems(err, writes.length)) this.onThrottle(targets[i]);
      }
      throw err;
    }
  }

  /**
   * A write that sent no TTL, relying on one it saw earlier, may find in its answer that another
   * process lowered it since (its calls name other limits): it raises it to what it needed.
   */
  async #mendTtl(
    writes: BucketWrite[],
    items: (StoredBucket | undefined)[],
    deadline: number,
  ): Promise<void> {
    await Promise.all(writes.map(async (w, i) => {
      const item = items[i];
      const ttl = item && ttlShortfall(this.#neededTtl.get(w), item, w.ttlIfMissing);
      if (ttl === undefined) return;
      await this.#raiseTtl(w, ttl, deadline);
      this.knowledge.sawTtl(bucketId(w), { ttl });
    }));
  }

  /** The TTL a write sends ({@link ttlToSend}), from what its plan needed: a resent copy alike. */
  #ttlToWrite(w: BucketWrite, id: string, answered: boolean): bigint | undefined {
    if (!this.#neededTtl.has(w)) this.#neededTtl.set(w, w.ttlSec);
    return ttlToSend(this.#neededTtl.get(w), {
      // A transaction's answer shows no item, so nothing could mend what it relied on: it sends.
      itemExists: answered && w.itemExists,
      seen: this.knowledge.get(id)?.ttl,
      ifMissing: w.ttlIfMissing,
    });
  }

  #settle(
    writes: BucketWrite[],
    ids: string[],
    op: Op,
    outcome: MultiOutcome,
  ): MultiOutcome & { applied?: boolean } {
    if (outcome.ok) {
      for (const id of ids) op.applied.add(id);
      ids.forEach((id, i) => {
        // Answered at the first try: no copy of it exists, so its receipt can go with the next
        // write. A receipt of an operation in doubt stays until its bound has passed.
        if (!op.ambiguous) this.#sweep.add(id, op.id);
        const item = outcome.items[i];
        if (item) {
          this.#sweep.observe(id, item);
          this.knowledge.sawTtl(id, item);
        }
      });
      return outcome;
    }
    outcome.olds.forEach((o, i) => {
      if (o.ok) return;
      if (o.old) {
        this.#sweep.observe(ids[i], o.old);
        this.knowledge.sawTtl(ids[i], o.old);
      } else {
        // The item is gone (expired): what the process knew of it no longer holds.
        this.knowledge.delete(ids[i]);
      }
    });
    const receipt = (i: number) => {
      const o = outcome.olds[i];
      return o.ok ? undefined : o.old?.receipts?.get(writes[i].opId);
    };
    // An earlier copy landed: its receipt is there (a cancel mark, for a cancel).
    const landed = writes.some((w, i) => {
      const r = receipt(i);
      return r !== undefined && (w.cancel ? r < 0n : r > 0n);
    });
    if (landed) {
      for (const id of ids) op.applied.add(id);
      return {
        ok: true,
        applied: true,
        items: outcome.olds.map((o) => (o.ok ? undefined : o.old)),
      };
    }
    // Refused for its write-count bound while an earlier attempt may have landed: its receipt may
    // have been swept, and resending could count twice. (A receipt that is there is an answer.)
    const pastBound = outcome.olds.some((o, i) =>
      !o.ok && o.old?.writes !== undefined && o.old.writes >= writes[i].maxWrites &&
      receipt(i) === undefined
    );
    if (pastBound && op.ambiguous) throw new UncertainOutcome(`write ${op.id}`);
    return outcome;
  }

  /**
   * Consumes from every target in one write; returns what the lease needs. `requests` is what the
   * write adds to the request count: 1 for an acquire, 0 for a batch taken for later requests.
   * With `shadow`, every limit is written as a soft one (never refused) and each lease target
   * carries the statuses that would have refused it.
   */
  async consume(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
    op: Op,
    requests = 1,
    shadow = false,
  ): Promise<LeaseTarget[]> {
    // Writes of this process kept back by an outage go first: each new write would push their ids
    // further towards their write-count bounds.
    if (!(await this.#outbox.settled(targets.map(bucketId), deadline))) {
      throw new RateLimiterUnavailable(
        "acquire",
        new Error("earlier writes still wait for DynamoDB"),
      );
    }
    // At most half the bound's reach of this process's writes in flight per bucket: more would outrun the
    // write-count bound their own plans carry, and only cost retries.
    return await this.#slots.hold(
      targets.map(bucketId),
      deadline,
      () => this.#consumeHeld(targets, milli, nowMs, deadline, op, requests, shadow),
    );
  }

  async #consumeHeld(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
    op: Op,
    requests: number,
    shadow: boolean,
  ): Promise<LeaseTarget[]> {
    // Known state of each bucket: from the cache (lower bounds), then fresh from DynamoDB.
    const states = targets.map((t) => this.knowledge.get(bucketId(t))?.limits);
    const counts = targets.map((t) => this.knowledge.get(bucketId(t))?.writes);
    const ttls = targets.map((t) => this.knowledge.get(bucketId(t))?.ttl);
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
          this.#slots.tatsInFlight(bucketId(t)),
          requests,
          creditTtl(states[i], ttls[i]),
          shadow,
        )
      );
      if (plans.some((p) => p.exceeded)) {
        // A full concurrent limit is believed only from the item itself: slots freed by other
        // processes leave no trace in this process's cache.
        const known = plans.every((p, i) =>
          !p.exceeded || fresh[i] ||
          (this.#denyCache && p.statuses.some((s) => s.exceeded && !s.limit.concurrent))
        );
        if (known) {
          await this.#persistConversions(targets, states, counts, ttls, fresh, nowMs, deadline);
          if (attempt === 0) this.#telemetry?.denyHit(targets[plans.findIndex((p) => p.exceeded)]);
          throw new RateLimitExceeded(plans.flatMap((p) => p.statuses));
        }
      }
      const release = targets.map((t, i) => this.#slots.flying(bucketId(t), plans[i].after));
      let outcome;
      try {
        outcome = await this.writeItems(
          plans.map((p) => p.write),
          deadline,
          op,
          "acquire",
          targets,
        );
      } finally {
        release.forEach((done) => done());
      }
      if (outcome.ok) {
        const known = outcome.applied ? [] : outcome.items;
        targets.forEach((t, i) =>
          this.knowledge.remember(
            t,
            known[i]?.limits ?? plans[i].after,
            known[i]?.writes ?? (counts[i] ?? 0n) + 1n,
            known[i] ? known[i]!.ttl : plans[i].write.ttlSec,
          )
        );
        // A tat left as it was by a credit-paid limit may be a debt someone else wrote since, and
        // a soft write (`add`) may leave more debt than known: the answer shows it, and the TTL
        // is raised if it does not cover it.
        await Promise.all(targets.map((t, i) => {
          const item = known[i];
          return item && plans[i].write.ops.some((o) => o.kind === "credit" || o.kind === "add")
            ? this.#raiseTtl(t, ttlForDebt(item), deadline)
            : undefined;
        }));
        return targets.map((t, i) =>
          leaseTargetAfter(t, known[i]?.limits ?? plans[i].after, plans[i], milli[i], nowMs, shadow)
        );
      }
      outcome.olds.forEach((o, i) => {
        if (!o.ok) {
          states[i] = o.old?.limits ?? new Map();
          counts[i] = o.old?.writes ?? 0n;
          ttls[i] = o.old?.ttl;
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
    ttls: (bigint | undefined)[],
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
        creditTtl(states[i], ttls[i]),
      );
      if (!write) return;
      const out = await this.writeItems([write], deadline, op);
      const item = out.ok && !out.applied ? out.items[0] : undefined;
      if (item) this.knowledge.remember(t, item.limits, item.writes, item.ttl);
    }));
  }

  /**
   * Writes adjustments (positive or negative) to one bucket, exactly once under `opId` (an
   * earlier copy that landed is recognised by the id).
   */
  async adjust(
    target: LeaseTarget,
    deltas: Map<string, bigint>,
    requests: number,
    deadline: number,
    op: Op,
    atMs?: bigint,
  ): Promise<void> {
    if (op.applied.has(bucketId(target))) return; // landed on an earlier run of the same write
    await this.#slots.hold(
      [bucketId(target)],
      deadline,
      () => this.#adjustHeld(target, deltas, requests, deadline, op, atMs),
    );
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
    let state = this.knowledge.get(id)?.limits;
    let count = this.knowledge.get(id)?.writes;
    let ttl = this.knowledge.get(id)?.ttl;
    let fresh = false;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const plan = planAdjust(
        target,
        state,
        fresh,
        deltas,
        requests,
        atMs ?? this.now(),
        op.id,
        op.bound(id, count),
        creditTtl(state, ttl),
        this.now(),
      );
      // A lease whose slot was taken back (it outlived its leaseTimeoutMs): its tokens are
      // written all the same, then the caller is told (see docs/design.md, "Concurrency limits").
      const expired = () => {
        if (plan.expired.length > 0) throw leaseExpired(target, plan.expired);
      };
      if (plan.write.ops.length === 0 && requests === 0) return expired();
      const out = await this.writeItems([plan.write], deadline, op);
      if (out.ok) {
        const item = out.items[0];
        if (item && !out.applied) {
          this.knowledge.remember(target, item.limits, item.writes, item.ttl);
          await this.#raiseTtl(target, ttlForDebt(item), deadline);
        }
        return expired();
      }
      const old = out.olds[0].ok ? undefined : out.olds[0].old;
      state = old?.limits ?? new Map();
      count = old?.writes ?? 0n;
      ttl = old?.ttl;
      fresh = true;
    }
    throw new RateLimiterUnavailable("adjust", new Error("too much contention on the bucket"));
  }

  /** Raises a bucket's TTL to `ttl` (never lowers it), when there is one to raise it to. */
  async #raiseTtl(
    target: { entityId: string; resource: string },
    ttl: bigint | undefined,
    deadline: number,
  ): Promise<void> {
    if (ttl === undefined) return;
    await this.call(
      undefined,
      (signal) => this.#backend.buckets.raiseTtl(target.entityId, target.resource, ttl, signal),
      deadline,
    );
  }

  /** Runs `fn` with retries until the deadline; marks `op` ambiguous when an attempt may have landed. */
  async call<T>(
    op: Op | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
    deadline: number,
    operation = "call",
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
      }, {
        deadline,
        onRetry: this.#telemetry && ((err) => this.#telemetry?.retry(operation, err)),
      });
    } catch (err) {
      // An outage past the deadline, or a misconfiguration (reported at once: never retried).
      if (err instanceof DeadlineExceeded || misconfiguration(err)) {
        throw limiterError(err, operation, this.#where);
      }
      throw err;
    }
  }

  now(): bigint {
    const t = this.#clock();
    if (!Number.isFinite(t)) throw new ValidationError("clock()", t, "must return finite epoch ms");
    return BigInt(Math.floor(t));
  }
}
