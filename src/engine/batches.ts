/**
 * Token batches: a process takes a batch of tokens from a bucket in one write and serves its own
 * requests from it with no call, so one key or project can take far more requests per second than
 * one item's write ceiling. Every token served was taken from the bucket first: batches may refuse
 * early (tokens held by other processes), never admit early. See docs/hot-keys.md.
 *
 * @module
 */

import { RateLimiterUnavailable, RateLimitExceeded, ZaeLimiterError } from "../errors.ts";
import type { BatchOptions } from "../options.ts";
import type { StoredLimit } from "../repository.ts";
import { Op } from "./op.ts";
import { statusesAfter } from "./plan.ts";
import { bucketId, type LeaseOps, type LeaseTarget, type Target } from "./types.ts";
import type { BucketWriter } from "./writer.ts";

export type { BatchOptions };

/** Batch settings after validation. */
export type BatchSettings = Required<BatchOptions>;

/** The defaults of {@link BatchOptions}. */
export const BATCH_DEFAULTS: BatchSettings = {
  maxShare: 0.1,
  idleMs: 250,
  maxAgeMs: 2_000,
  holdMs: 250,
};

/** The first batch of a bucket, in requests. */
const FIRST_SIZE = 16;

/** Options of {@link BatchPool}. */
export interface BatchPoolOptions {
  writer: BucketWriter;
  /** Writes a lease's deltas to the buckets (and to the outbox in an outage). */
  write: LeaseOps["write"];
  /** Makes sure a take whose answer was lost is not counted (the outbox). */
  cancel: (targets: Target[], milli: Map<string, bigint>[], op: Op, requests: number) => void;
  /** Reports a write that failed for good (it shows in `unresolvedWrites`). */
  report: (label: string, error: unknown, resource?: string) => void;
  settings: BatchSettings;
}

interface Batch {
  target: Target;
  /** Spec keys of the limits the batch was taken under. */
  signature: string;
  /** Thousandths held per limit. */
  held: Map<string, bigint>;
  /** Requests served from the batch (less rollbacks), not written yet. */
  served: number;
  takenAt: number;
  lastUsed: number;
  /** Batch size in requests. */
  size: number;
}

/** The batches of one process, one per bucket. */
export class BatchPool {
  readonly #writer: BucketWriter;
  readonly #write: LeaseOps["write"];
  readonly #cancel: BatchPoolOptions["cancel"];
  readonly #report: BatchPoolOptions["report"];
  readonly #settings: BatchSettings;
  readonly #batches = new Map<string, Batch>();
  /** Next batch size per bucket, in requests (adapts to the rate served). */
  readonly #sizes = new Map<string, number>();
  readonly #taking = new Map<string, Promise<void>>();
  readonly #returning = new Set<Promise<void>>();
  #timer?: ReturnType<typeof setInterval>;
  /** Closing: no new batch is taken, so every batch can be returned. */
  #closed = false;

  constructor(options: BatchPoolOptions) {
    this.#writer = options.writer;
    this.#write = options.write;
    this.#cancel = options.cancel;
    this.#report = options.report;
    this.#settings = options.settings;
  }

  /**
   * Serves `milli` from each target's batch, taking new batches (one write for all the buckets
   * that lack) when needed. Returns the lease targets, or throws `RateLimitExceeded` when even the
   * request's own amount cannot be taken. `requests` is what each serve adds to the batch's
   * request count: 1 for an acquire, 0 for a lease's `consume`.
   */
  async acquire(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
    requests = 1,
  ): Promise<LeaseTarget[]> {
    // Served only from tokens the batches hold at that moment (checked and taken synchronously).
    const serve = () =>
      targets.every((t, i) => this.#covers(t, milli[i]))
        ? this.#serve(targets, milli, nowMs, requests)
        : undefined;
    for (let takes = 0; Date.now() < deadline;) {
      const served = serve();
      if (served) return served;
      const lacking = targets.map((_, i) => i).filter((i) => !this.#covers(targets[i], milli[i]));
      const busy = lacking.map((i) => this.#taking.get(bucketId(targets[i]))).filter(Boolean);
      if (busy.length > 0) {
        await Promise.allSettled(busy); // another request of this process is taking: share it
        continue;
      }
      if (this.#closed) throw new ZaeLimiterError("The rate limiter is closed");
      // Batches drained by concurrent requests as fast as they came: take this request's own.
      const exact = takes++ >= 2;
      const ts = lacking.map((i) => targets[i]), ms = lacking.map((i) => milli[i]);
      const mine = await this.#take(ts, ms, nowMs, deadline, exact, serve);
      if (mine) return mine;
    }
    throw new RateLimiterUnavailable(
      "acquire",
      new Error("token batches were drained by concurrent requests until the deadline"),
    );
  }

  /** Tokens this process holds in its batch of a bucket, per limit (whole tokens, rounded down). */
  held(entityId: string, resource: string): Record<string, number> {
    const batch = this.#batches.get(`${entityId}#${resource}`);
    const out: Record<string, number> = {};
    for (const [name, m] of batch?.held ?? []) out[name] = Number(m / 1000n);
    return out;
  }

  /**
   * Lease operations of a lease served from batches: adjustments and rollbacks stay in the batch
   * when they can (a give-back goes into it; more tokens come out of it while it holds them), and
   * are written to the bucket otherwise (its batch is gone, or holds too few).
   */
  leaseOps(): LeaseOps {
    return {
      write: async (targets, deltas, requests, operation) => {
        const writes: { target: LeaseTarget; deltas: Map<string, bigint>; requests: number }[] = [];
        targets.forEach((t, i) => {
          const batch = this.#batches.get(bucketId(t));
          if (!batch) {
            // Returned already: its requests were counted then, so this write counts the change.
            writes.push({ target: t, deltas: deltas[i], requests });
            return;
          }
          batch.served += requests;
          const left = new Map<string, bigint>();
          for (const [name, d] of deltas[i]) {
            const held = batch.held.get(name) ?? 0n;
            if (d <= 0n && batch.target.specs.has(name)) batch.held.set(name, held - d);
            else if (d > 0n && held >= d) batch.held.set(name, held - d);
            else left.set(name, d);
          }
          if (left.size > 0) writes.push({ target: t, deltas: left, requests: 0 });
        });
        await Promise.all(
          writes.map((w) => this.#write([w.target], [w.deltas], w.requests, operation)),
        );
      },
    };
  }

  /** Returns every batch to its bucket (on close). */
  async drain(): Promise<void> {
    this.#closed = true;
    // A take in flight makes (or tops up) a batch when it lands: wait for it, then return it too.
    while (this.#taking.size > 0) await Promise.allSettled([...this.#taking.values()]);
    for (const id of [...this.#batches.keys()]) this.#giveBack(id);
    await Promise.allSettled([...this.#returning]);
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #covers(t: Target, milli: Map<string, bigint>): boolean {
    const batch = this.#batches.get(bucketId(t));
    if (!batch || batch.signature !== signatureOf(t)) return false;
    for (const [name, m] of milli) {
      if (m > 0n && (batch.held.get(name) ?? 0n) < m) return false;
    }
    return true;
  }

  #serve(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    requests: number,
  ): LeaseTarget[] {
    const now = Date.now();
    return targets.map((t, i) => {
      const batch = this.#batches.get(bucketId(t))!;
      for (const [name, m] of milli[i]) {
        batch.held.set(name, (batch.held.get(name) ?? 0n) - m);
      }
      batch.served += requests;
      batch.lastUsed = now;
      // What the request sees: the bucket as last known, plus what this process still holds.
      const known = this.#writer.knowledge.get(bucketId(t))?.limits ??
        new Map<string, StoredLimit>();
      const statuses = statusesAfter(t, known, milli[i], nowMs).map((s) => ({
        ...s,
        available: s.available + Number((batch.held.get(s.limitName) ?? 0n) / 1000n),
      }));
      return {
        entityId: t.entityId,
        resource: t.resource,
        specs: t.specs,
        keys: t.keys,
        consumed: milli[i],
        statuses,
      };
    });
  }

  /** Takes a batch on each target's bucket in one write (a transaction for several). */
  async #take(
    targets: Target[],
    milli: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
    exact: boolean,
    then: () => LeaseTarget[] | undefined,
  ): Promise<LeaseTarget[] | undefined> {
    const ids = targets.map(bucketId);
    let done!: () => void;
    const taking = new Promise<void>((resolve) => (done = resolve));
    for (const id of ids) this.#taking.set(id, taking);
    try {
      // A batch under other limits (a changed spec) goes back first.
      for (const [i, t] of targets.entries()) {
        const old = this.#batches.get(ids[i]);
        if (old && old.signature !== signatureOf(t)) this.#giveBack(ids[i]);
      }
      const sizes = ids.map((id) => (exact ? 1 : this.#sizes.get(id) ?? FIRST_SIZE));
      const amounts = targets.map((t, i) => this.#amounts(t, milli[i], sizes[i]));
      try {
        await this.#consume(targets, amounts, nowMs, deadline);
      } catch (err) {
        if (!(err instanceof RateLimitExceeded) || exact) throw err;
        // Not enough for a batch: take what this request needs, no more.
        sizes.fill(1);
        await this.#consume(targets, milli, nowMs, deadline);
        amounts.splice(0, amounts.length, ...milli);
      }
      const now = Date.now();
      targets.forEach((t, i) => {
        const old = this.#batches.get(ids[i]);
        const batch: Batch = old ?? {
          target: t,
          signature: signatureOf(t),
          held: new Map(),
          served: 0,
          takenAt: now,
          lastUsed: now,
          size: sizes[i],
        };
        for (const [name, m] of amounts[i]) {
          batch.held.set(name, (batch.held.get(name) ?? 0n) + m);
        }
        // Emptied sooner than it should last: the next batch is larger by the shortfall (a power
        // of two, 2× to 16×), so a busy bucket reaches its size in a few takes.
        const lasted = now - (old?.takenAt ?? now);
        if (old && lasted < this.#settings.holdMs) {
          const factor = 2 **
            Math.min(
              4,
              Math.max(1, Math.ceil(Math.log2(this.#settings.holdMs / Math.max(1, lasted)))),
            );
          this.#sizes.set(
            ids[i],
            Math.min(1 << 20, (this.#sizes.get(ids[i]) ?? FIRST_SIZE) * factor),
          );
        }
        batch.takenAt = now;
        batch.size = sizes[i];
        this.#batches.set(ids[i], batch);
      });
      this.#schedule();
      // The request that took serves itself first, before those waiting on the take resume.
      return then();
    } finally {
      for (const id of ids) if (this.#taking.get(id) === taking) this.#taking.delete(id);
      done();
    }
  }

  async #consume(
    targets: Target[],
    amounts: Map<string, bigint>[],
    nowMs: bigint,
    deadline: number,
  ): Promise<void> {
    // An operation of its own: if its answer is lost, the outbox makes sure it is not counted.
    const op = new Op();
    try {
      await this.#writer.consume(targets, amounts, nowMs, deadline, op, 0);
    } catch (err) {
      // Refused as exceeded too: an attempt whose answer was lost may still land.
      if (op.ambiguous) {
        this.#cancel(targets, amounts, op, 0);
      }
      throw err;
    }
  }

  /** A batch of `size` requests like this one, capped at the share of each limit's capacity. */
  #amounts(t: Target, milli: Map<string, bigint>, size: number): Map<string, bigint> {
    const out = new Map<string, bigint>();
    const share = BigInt(Math.round(this.#settings.maxShare * 1_000_000));
    for (const [name, m] of milli) {
      const spec = t.specs.get(name);
      if (m === 0n || !spec) {
        out.set(name, m);
        continue;
      }
      const cap = (spec.capacityMilli * share) / 1_000_000n;
      const want = m * BigInt(size);
      out.set(name, want <= cap ? want : (cap > m ? cap : m));
    }
    return out;
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    const every = Math.max(10, Math.min(this.#settings.idleMs, this.#settings.maxAgeMs) / 2);
    this.#timer = setInterval(() => this.#sweep(), every);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Returns batches idle or older than their bounds. */
  #sweep(): void {
    const now = Date.now();
    for (const [id, batch] of this.#batches) {
      if (this.#taking.has(id)) continue;
      const idle = now - batch.lastUsed >= this.#settings.idleMs;
      if (idle || now - batch.takenAt >= this.#settings.maxAgeMs) {
        // Returned mostly unused: the next batch is half as large.
        if (idle) {
          this.#sizes.set(id, Math.max(1, Math.floor((this.#sizes.get(id) ?? FIRST_SIZE) / 2)));
        }
        this.#giveBack(id);
      }
    }
    if (this.#batches.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /**
   * Writes back what a batch holds and counts the requests it served (one write; through the
   * outbox in an outage, exactly once).
   */
  #giveBack(id: string): void {
    const batch = this.#batches.get(id);
    if (!batch) return;
    this.#batches.delete(id);
    const back = new Map<string, bigint>();
    for (const [name, m] of batch.held) if (m !== 0n) back.set(name, -m);
    if (back.size === 0 && batch.served === 0) return;
    const target: LeaseTarget = {
      entityId: batch.target.entityId,
      resource: batch.target.resource,
      specs: batch.target.specs,
      keys: batch.target.keys,
      consumed: new Map(),
      statuses: [],
    };
    const label = `batch return ${id}`;
    const returning = this.#write([target], [back], batch.served, "batch return")
      // An outage sends it to the outbox (and never lands here); anything else cannot be retried:
      // it is reported in `unresolvedWrites`, never dropped silently.
      .catch((err) => this.#report(label, err, target.resource))
      .finally(() => this.#returning.delete(returning));
    this.#returning.add(returning);
  }
}

/** The limits a batch was taken under: a batch is served only under the same ones. */
function signatureOf(t: Target): string {
  return [...t.keys].map(([name, key]) => `${name}=${key}`).join(",");
}

/** Checks batch options; `undefined` when batches are off. */
export function batchSettings(
  value: boolean | BatchOptions | undefined,
  field: string,
  fail: (field: string, value: unknown, rule: string) => never,
): BatchSettings | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return BATCH_DEFAULTS;
  if (value === null || typeof value !== "object") {
    fail(field, value, "must be a boolean or batch options");
  }
  const out = { ...BATCH_DEFAULTS, ...value };
  if (!(typeof out.maxShare === "number" && out.maxShare > 0 && out.maxShare <= 1)) {
    fail(`${field}.maxShare`, out.maxShare, "must be a number > 0 and <= 1");
  }
  for (const key of ["idleMs", "maxAgeMs", "holdMs"] as const) {
    if (!(typeof out[key] === "number" && Number.isFinite(out[key]) && out[key] > 0)) {
      fail(`${field}.${key}`, out[key], "must be a positive number");
    }
  }
  return out;
}
