/**
 * Leases and failure modes: an acquire from validated request to {@link Lease}, what FAIL_OPEN
 * and FAIL_CLOSED do when DynamoDB cannot answer, and the lease's writes (commit, rollback,
 * consume, release), which an outage sends to the outbox to be applied exactly once.
 *
 * @module
 */

import * as math from "../bucket.ts";
import type { Backend } from "../backend.ts";
import type { ConfigResolver } from "../config.ts";
import { RateLimiterUnavailable, RateLimitExceeded, ZaeLimiterError } from "../errors.ts";
import { Lease } from "../lease.ts";
import { FailureMode } from "../options.ts";
import type { BucketWrite } from "../repository.ts";
import { BATCH_DEFAULTS, BatchPool, type BatchSettings } from "./batches.ts";
import { checkConcurrent } from "./concurrency.ts";
import { Op, UncertainOutcome } from "./op.ts";
import type { Outbox } from "./outbox.ts";
import { amountsFor } from "./plan.ts";
import { bypassLease, gate } from "./gate.ts";
import type { ShadowRefusal } from "../options.ts";
import {
  asLeaseTarget,
  BUCKET_GRACE_SECONDS,
  bucketId,
  type LeaseOps,
  type LeaseTarget,
  type Target,
  type ValidRequest,
} from "./types.ts";
import type { BucketWriter } from "./writer.ts";
import type { Telemetry } from "../telemetry.ts";
import {
  failedOpenOps,
  ignoreExpired,
  otherShards,
  ownBuckets,
  refuseQuotaBatch,
  SHARD_TRIES,
} from "./lease_ops.ts";

/** A validated acquire. */
export type AcquireRequest = ValidRequest & { consume: Map<string, bigint> };

/** Options of {@link LeaseEngine}. */
export interface LeaseEngineOptions {
  /** Where bypassed requests are counted. */
  backend: Backend;
  writer: BucketWriter;
  outbox: Outbox;
  config: ConfigResolver;
  /** Table (or stack) set-up the first calls wait for. */
  ready: (deadline: number) => Promise<number>;
  timeoutMs: number;
  failureMode: FailureMode;
  recordFailedOpen: boolean;
  /** Token batches for every call (`undefined`: only for calls that ask, with the defaults). */
  batches?: BatchSettings;
  /** Shadow mode for every call that does not say otherwise. */
  shadow?: boolean;
  /** Told of each shadow-mode acquire that would have been refused. */
  onShadowRefusal?: (info: ShadowRefusal) => void;
  /** Spans of acquires and lease writes, acquires by outcome (`telemetry.ts`). @default none */
  telemetry?: Telemetry;
  /** Told of each acquire refused (`RateLimitExceeded`), at the limiter's time (src/refusals.ts). */
  onRefused?: (entityId: string, resource: string, atMs: number) => void;
}

/** Acquires leases and writes their commits and rollbacks, under the failure mode. */
export class LeaseEngine {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #outbox: Outbox;
  readonly #config: ConfigResolver;
  readonly #ready: (deadline: number) => Promise<number>;
  readonly #timeoutMs: number;
  readonly #failureMode: FailureMode;
  readonly #recordFailedOpen: boolean;
  readonly #batchSettings?: BatchSettings;
  readonly #shadow: boolean;
  readonly #onShadowRefusal?: (info: ShadowRefusal) => void;
  #batches?: BatchPool;
  readonly #telemetry?: Telemetry;
  readonly #onRefused?: (entityId: string, resource: string, atMs: number) => void;
  /** Shadow-mode acquires that would have been refused, since the limiter was made. */
  shadowRefusals = 0;

  constructor(options: LeaseEngineOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#outbox = options.outbox;
    this.#config = options.config;
    this.#ready = options.ready;
    this.#timeoutMs = options.timeoutMs;
    this.#failureMode = options.failureMode;
    this.#recordFailedOpen = options.recordFailedOpen;
    this.#batchSettings = options.batches;
    this.#shadow = options.shadow ?? false;
    this.#onShadowRefusal = options.onShadowRefusal;
    this.#telemetry = options.telemetry;
    this.#onRefused = options.onRefused;
  }

  /** A lease of a shadow-mode acquire: a would-be refusal is counted and told, once. */
  #shadowLease(req: AcquireRequest, targets: LeaseTarget[]): Lease {
    const lease = new Lease({ limiter: this.leaseOps(), targets, failedOpen: false });
    if (lease.shadowRefused) {
      this.shadowRefusals++;
      const info = {
        entityId: req.entityId,
        resource: req.resource,
        statuses: [...lease.shadowRefusals],
      };
      try {
        this.#onShadowRefusal?.(info);
      } catch {
        // A reporting hook never fails the request it reports on.
      }
    }
    return lease;
  }

  /** The process's token batches, made on first use. */
  #pool(): BatchPool {
    return this.#batches ??= new BatchPool({
      writer: this.#writer,
      write: this.leaseOps().write,
      cancel: (targets, milli, op, requests) =>
        this.#cancel(
          `refused batch ${targets.map(bucketId).join(", ")}`,
          targets,
          milli,
          op,
          requests,
        ),
      report: (label, error, resource) =>
        this.#outbox.giveUp({ label, operation: "batch_return", resource }, error),
      settings: this.#batchSettings ?? BATCH_DEFAULTS,
    });
  }

  /**
   * Makes sure, through the outbox, that an acquire the caller was told failed is not counted
   * (its answer was lost, and a copy may land yet).
   */
  #cancel(label: string, targets: Target[], milli: Map<string, bigint>[], op: Op, requests = 1) {
    // One give-back operation for every run of the entry: its ambiguity, frozen bounds and the
    // buckets it landed on must carry over from one run to the next.
    const giveBack = new Op(`${op.id}r`);
    this.#outbox.add({
      label,
      operation: "cancel",
      resource: targets[0]?.resource,
      buckets: targets.map(bucketId),
      run: (d) => this.#ensureNotConsumed(targets, milli, op, giveBack, d, requests),
    });
  }

  /** Tokens this process holds in its batch of a bucket, per limit. */
  held(entityId: string, resource: string): Record<string, number> {
    return this.#batches?.held(entityId, resource) ?? {};
  }

  /** Returns every batch to its bucket (on close). */
  async drain(): Promise<void> {
    await this.#batches?.drain();
  }

  /** An acquire, in a span and counted by outcome when the limiter has telemetry. */
  acquire(req: AcquireRequest): Promise<Lease> {
    return this.#telemetry
      ? this.#telemetry.acquire(req, () => this.#acquire(req))
      : this.#acquire(req);
  }

  async #acquire(req: AcquireRequest): Promise<Lease> {
    const mode = req.failureMode ?? this.#failureMode;
    let deadline = Date.now() + this.#timeoutMs;
    const op = new Op();
    let nowMs = 0n;
    let targets: Target[] | undefined;
    let milli: Map<string, bigint>[] = [];
    try {
      // Creating the table or stack (first calls, development) takes longer than a request's
      // deadline: the time it took is not counted.
      deadline += await this.#ready(deadline);
      nowMs = this.#writer.now();
      // A scheduled limit applies the window in force at this instant, the write's own time.
      const resolved = await this.#config.resolve(req, deadline, "acquire", nowMs);
      if (gate(req, resolved.controls)) {
        // Counted under each resource of the call (in parallel: one round trip).
        const count = (resource: string) =>
          this.#writer.call(
            undefined,
            (signal) =>
              this.#backend.entities.countBypassed(req.entityId, resource, Number(nowMs), signal),
            deadline,
            "acquire",
          );
        return await bypassLease(
          req.consume,
          async () => {
            await Promise.all([req.resource, ...(req.also ?? [])].map(count));
          },
          (err) => this.#writer.fail(err, "acquire"),
        );
      }
      if (resolved.noLimits) throw resolved.noLimits;
      targets = resolved.targets;
      milli = targets.map((t) => amountsFor(t, req.consume));
      const shadow = req.shadow ?? this.#shadow;
      // A shadow call writes through: a batch would admit and refuse on its own.
      const batch = !shadow && (req.batch ?? this.#batchSettings !== undefined);
      if (batch) refuseQuotaBatch(targets, req.batch);
      checkConcurrent(targets, { leaseTimeoutMs: req.leaseTimeoutMs, batch, shadow });
      if (req.leaseTimeoutMs !== undefined) {
        const leaseTimeoutMs = BigInt(req.leaseTimeoutMs);
        targets = targets.map((t) => ({ ...t, leaseTimeoutMs }));
      }
      let tries: Target[] = targets;
      const tried = targets.map((t) => new Set(t.shard ? [t.shard.index] : []));
      for (let attempt = 1;; attempt++) {
        try {
          if (batch) {
            const pool = this.#pool();
            const served = await pool.acquire(tries, milli, nowMs, deadline);
            const ops = { ...pool.leaseOps(), take: this.#taker(req, tries, mode, true) };
            return new Lease({ limiter: ops, targets: served, failedOpen: false });
          }
          if (shadow) {
            const served = await this.#writer.consume(tries, milli, nowMs, deadline, op, 1, true);
            return this.#shadowLease(req, served);
          }
          const leaseTargets = await this.#writer.consume(tries, milli, nowMs, deadline, op);
          const ops = { ...this.leaseOps(), take: this.#taker(req, tries, mode, false) };
          return new Lease({ limiter: ops, targets: leaseTargets, failedOpen: false });
        } catch (err) {
          // Refused by a shard: try another (up to SHARD_TRIES in all); a shard the deny cache
          // knows to be empty costs no call.
          const next: Target[] | undefined =
            err instanceof RateLimitExceeded && attempt < SHARD_TRIES
              ? otherShards(tries, tried, err)
              : undefined;
          if (!next) throw err;
          targets = tries = next;
        }
      }
    } catch (err) {
      if (err instanceof RateLimitExceeded) {
        this.#onRefused?.(req.entityId, req.resource, Number(nowMs));
        // Refused, yet an attempt whose answer was lost may land later: it must not count.
        if (op.ambiguous && targets) {
          this.#cancel(`exceeded acquire ${req.entityId}/${req.resource}`, targets, milli, op);
        }
        throw err;
      }
      // A misconfiguration (and any error of the request itself) is thrown in both modes. An
      // outcome that became unknowable is an outage to the caller; the outbox reports it.
      const unavailable = err instanceof UncertainOutcome
        ? new RateLimiterUnavailable("acquire", err)
        : this.#writer.fail(err, "acquire");
      if (!(unavailable instanceof RateLimiterUnavailable)) throw unavailable;
      const uncertain = op.ambiguous;
      if (mode === FailureMode.FAIL_OPEN) {
        // Let the request through, and count it once DynamoDB is back (exactly once: same id);
        // its adjustments and rollback follow it through the outbox.
        const record = this.#recordFailedOpen && nowMs > 0n;
        if (record) {
          const at = nowMs;
          this.#outbox.add({
            label: `failed-open acquire ${req.entityId}/${req.resource}`,
            operation: "failed_open.acquire",
            resource: req.resource,
            buckets: targets?.map(bucketId) ?? ownBuckets(req),
            run: (d) => this.#ensureConsumed(req, req.consume, 1, op, at, d),
          });
        }
        return new Lease({
          limiter: record
            ? failedOpenOps(this.#outbox, req, (...a) => this.#ensureConsumed(...a))
            : { write: () => Promise.resolve() },
          targets: [],
          failedOpen: true,
          cause: unavailable,
          requested: req.consume,
        });
      }
      if (uncertain && targets) {
        // The caller is told "refused": make sure the write, if it landed, is not counted.
        this.#cancel(`refused acquire ${req.entityId}/${req.resource}`, targets, milli, op);
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
    const targets = await this.#config.resolveTargets(req, deadline, "acquire", atMs);
    for (const t of targets) {
      const mine = new Map([...deltas].filter(([name]) => t.specs.has(name)));
      // The same id on every item: each item's receipt recognises the original write.
      await this.#writer.adjust(asLeaseTarget(t), mine, requests, deadline, op, atMs);
    }
  }

  /**
   * A lease's `consume`: an acquire's conditional write of more tokens on the buckets the lease
   * took from (its shard, or its batch), counting no request, under the acquire's failure mode.
   */
  #taker(
    req: ValidRequest,
    targets: Target[],
    mode: FailureMode,
    batch: boolean,
  ): (consume: Map<string, bigint>) => Promise<LeaseTarget[]> {
    const label = `${req.entityId}/${req.resource}`;
    return async (consume) => {
      const deadline = Date.now() + this.#timeoutMs;
      const op = new Op();
      const milli = targets.map((t) => amountsFor(t, consume));
      let nowMs = 0n;
      try {
        nowMs = this.#writer.now();
        if (batch) return await this.#pool().acquire(targets, milli, nowMs, deadline, 0);
        return await this.#writer.consume(targets, milli, nowMs, deadline, op, 0);
      } catch (err) {
        if (err instanceof RateLimitExceeded) {
          // Refused, yet an attempt whose answer was lost may land later: it must not count.
          if (op.ambiguous) this.#cancel(`exceeded consume ${label}`, targets, milli, op, 0);
          throw err;
        }
        const unavailable = err instanceof UncertainOutcome
          ? new RateLimiterUnavailable("consume", err)
          : this.#writer.fail(err, "consume");
        if (!(unavailable instanceof RateLimiterUnavailable)) throw unavailable;
        if (mode !== FailureMode.FAIL_OPEN) {
          if (op.ambiguous) this.#cancel(`refused consume ${label}`, targets, milli, op, 0);
          throw unavailable;
        }
        // Let the stream go on; the tokens are written once DynamoDB is back, under the
        // operation's own id (so an attempt that landed unseen counts once).
        if (!this.#recordFailedOpen || nowMs === 0n) {
          // Not recorded (`recordFailedOpen: false`): the lease holds none of it, and an attempt
          // that may have landed must not count either.
          if (op.ambiguous) this.#cancel(`unrecorded consume ${label}`, targets, milli, op, 0);
          return targets.map((t) => asLeaseTarget(t));
        }
        const at = nowMs;
        this.#outbox.add({
          label: `failed-open consume ${label}`,
          operation: "failed_open.consume",
          resource: req.resource,
          buckets: targets.map(bucketId),
          run: async (d) => {
            for (const [i, t] of targets.entries()) {
              await this.#writer.adjust(asLeaseTarget(t), milli[i], 0, d, op, at);
            }
          },
        });
        return targets.map((t, i) => ({ ...asLeaseTarget(t), consumed: milli[i] }));
      }
    };
  }

  /** Makes sure an acquire the caller was told failed is not counted. */
  async #ensureNotConsumed(
    targets: Target[],
    milli: Map<string, bigint>[],
    op: Op,
    giveBack: Op,
    deadline: number,
    requests = 1,
  ): Promise<void> {
    const nowMs = this.#writer.now();
    const first = bucketId(targets[0]);
    // Cancel the acquire on its first item: the mark is the acquire's own receipt, negative and
    // with nothing else, so a late copy of the acquire (one write, or a transaction including
    // this item) is refused from then on. The mark itself is refused if the acquire's receipt is
    // already there: then it had landed.
    const mark: BucketWrite = {
      entityId: targets[0].entityId,
      resource: targets[0].resource,
      ops: [],
      used: new Map(),
      requests: 0,
      nowMs,
      opId: op.id,
      cancel: true,
      // The acquire's own bound: past it, nobody can tell any more (UncertainOutcome).
      maxWrites: op.bound(first, this.#writer.knowledge.get(first)?.writes),
      // A new item (the acquire never landed) expires; an existing one keeps its TTL.
      ttlSec: math.ceilDiv(nowMs, 1000n) + BUCKET_GRACE_SECONDS,
      ttlIfMissing: true,
    };
    const out = await this.#writer.writeItems([mark], deadline, op, "cancel");
    if (out.ok) return; // cancelled (now or by an earlier copy of the mark): never counted
    const old = out.olds[0].ok ? undefined : out.olds[0].old;
    if (!((old?.receipts?.get(op.id) ?? 0n) > 0n)) throw new UncertainOutcome(`acquire ${op.id}`);
    // It had landed: give the tokens back.
    await Promise.all(targets.map((t, i) => {
      const back = new Map([...milli[i]].map(([name, m]) => [name, -m]));
      // Its slots too (already taken back after expiry: nothing more to free).
      const names = requests > 0 ? t.limits.filter((l) => l.concurrent).map((l) => l.name) : [];
      const slot = names.length > 0 ? { slot: { id: op.id, names } } : {};
      return this.#writer.adjust(
        { ...asLeaseTarget(t), ...slot },
        back,
        -requests,
        deadline,
        giveBack,
      )
        .catch(ignoreExpired);
    }));
  }

  leaseOps(): LeaseOps {
    return {
      write: (targets, deltas, requests, operation) =>
        this.#telemetry
          ? this.#telemetry.leaseWrite(
            operation,
            targets[0]?.resource,
            () => this.#write(targets, deltas, requests, operation),
          )
          : this.#write(targets, deltas, requests, operation),
    };
  }

  /** A lease's write: to DynamoDB, else (an outage) through the outbox. */
  async #write(...[targets, deltas, requests, operation]: Parameters<LeaseOps["write"]>) {
    const deadline = Date.now() + this.#timeoutMs;
    await Promise.all(targets.map(async (t, i) => {
      const op = new Op();
      try {
        if (!(await this.#outbox.settled([bucketId(t)], deadline))) {
          throw new RateLimiterUnavailable(operation, new Error("earlier writes still wait"));
        }
        await this.#writer.adjust(t, deltas[i], requests, deadline, op);
      } catch (err) {
        if (
          err instanceof ZaeLimiterError && !(err instanceof RateLimiterUnavailable) &&
          !(err instanceof UncertainOutcome) // the outbox reports it (unresolvedWrites)
        ) {
          throw err;
        }
        // Never lost: retried in the background under the same id, so applied exactly once.
        this.#outbox.add({
          label: `${operation} ${t.entityId}/${t.resource}`,
          operation,
          resource: t.resource,
          buckets: [bucketId(t)],
          // A slot taken back meanwhile: the tokens were written, nobody left to tell.
          run: (d) => this.#writer.adjust(t, deltas[i], requests, d, op).catch(ignoreExpired),
        });
      }
    }));
  }
}
