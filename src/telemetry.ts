/**
 * OpenTelemetry metrics and traces of one limiter, through `@opentelemetry/api` only: a no-op
 * unless the application registers an SDK. The instruments are made once, when the limiter is
 * made (the metrics API has no proxy: register the SDK's MeterProvider first); the hot path only
 * calls `add` / `record` on them, builds no attributes when no MeterProvider was registered, and
 * makes spans only while the tracer records. Names and attributes: docs/usage.md, "Observability".
 * Never an entity id in an attribute (unbounded cardinality, and an entity id may be personal).
 *
 * @module
 */

import {
  type Attributes,
  context,
  type Counter,
  createNoopMeter,
  type Histogram,
  isSpanContextValid,
  type Meter,
  metrics,
  type ObservableGauge,
  type ObservableResult,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";

/** The instrumentation scope of the library's meter and tracer. */
export const INSTRUMENTATION_SCOPE = "@zae/limiter";

/** How an acquire ended, the `zae_limiter.outcome` attribute of `zae_limiter.acquires`. */
export type AcquireOutcome =
  | "admitted"
  | "refused"
  | "failed_open"
  | "unavailable"
  | "disabled"
  | "bypassed"
  | "shadow_refused"
  | "error";

/** What {@link Telemetry.acquire} reads of a lease. */
interface LeaseLike {
  failedOpen: boolean;
  bypassed: boolean;
  shadowRefused: boolean;
}

/** What {@link Telemetry.acquire} reads of a request (never its entity id). */
interface RequestLike {
  resource: string;
  limits: { name: string }[];
}

const NOOP_METER_CLASS = createNoopMeter().constructor;

/** The outcome of an acquire from its lease or its error. */
export function outcomeOf(lease: LeaseLike | undefined, err?: unknown): AcquireOutcome {
  if (lease) {
    if (lease.failedOpen) return "failed_open";
    if (lease.bypassed) return "bypassed";
    return lease.shadowRefused ? "shadow_refused" : "admitted";
  }
  switch ((err as Error | undefined)?.name) {
    case "RateLimitExceeded":
      return "refused";
    case "RateLimiterUnavailable":
      return "unavailable";
    case "EntityDisabledError":
      return "disabled";
    default:
      return "error";
  }
}

/** The name of an error for `error.type`. */
function errorType(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

/**
 * One limiter's instruments and tracer.
 *
 * @example
 * ```ts
 * import { Telemetry } from "./telemetry.ts";
 * const t = new Telemetry({ tableName: "rate_limits" });
 * const out = await t.dynamo("UpdateItem", () => Promise.resolve(42)); // no SDK: a no-op
 * console.assert(out === 42 && t.metering === false);
 * t.close();
 * ```
 */
export class Telemetry {
  /** Whether a MeterProvider was registered when the limiter was made. */
  readonly metering: boolean;
  readonly #tableName: string;
  readonly #tracer: Tracer;
  readonly #acquires: Counter;
  readonly #duration: Histogram;
  readonly #retries: Counter;
  readonly #denyHits: Counter;
  readonly #outbox: ObservableGauge;
  #outboxSize?: (result: ObservableResult) => void;

  /** @param options The limiter's table (an attribute of the DynamoDB spans and metrics). */
  constructor(options: { tableName: string }) {
    this.#tableName = options.tableName;
    const meter: Meter = metrics.getMeter(INSTRUMENTATION_SCOPE);
    this.metering = !(meter instanceof NOOP_METER_CLASS);
    this.#tracer = trace.getTracer(INSTRUMENTATION_SCOPE);
    this.#acquires = meter.createCounter("zae_limiter.acquires", {
      description: "Acquires by outcome",
      unit: "{acquire}",
    });
    this.#duration = meter.createHistogram("db.client.operation.duration", {
      description: "Duration of the limiter's DynamoDB calls",
      unit: "s",
      advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] },
    });
    this.#retries = meter.createCounter("zae_limiter.dynamodb.retries", {
      description: "DynamoDB calls sent again after a throttle, a server fault or a network error",
      unit: "{retry}",
    });
    this.#denyHits = meter.createCounter("zae_limiter.deny_cache.hits", {
      description: "Refusals answered from what the process knows, with no DynamoDB call",
      unit: "{refusal}",
    });
    this.#outbox = meter.createObservableGauge("zae_limiter.outbox.size", {
      description: "Writes waiting in the outbox for DynamoDB to answer again",
      unit: "{write}",
    });
  }

  /** Reports `size()` as `zae_limiter.outbox.size` at each collection, until {@link close}. */
  observeOutbox(size: () => number): void {
    if (!this.metering || this.#outboxSize) return;
    this.#outboxSize = (result) => result.observe(size(), { "db.namespace": this.#tableName });
    this.#outbox.addCallback(this.#outboxSize);
  }

  /** Stops the outbox gauge (the limiter is closed). */
  close(): void {
    if (this.#outboxSize) this.#outbox.removeCallback(this.#outboxSize);
    this.#outboxSize = undefined;
  }

  /** Runs `fn` inside a span `name` while the tracer records (else just runs it). */
  async #span<T>(
    name: string,
    kind: SpanKind,
    attrs: () => Attributes,
    fn: (span?: Span) => Promise<T>,
  ): Promise<T> {
    const span: Span = this.#tracer.startSpan(name, { kind });
    const recording = span.isRecording();
    if (recording) span.setAttributes(attrs());
    // A span sampled out still carries its trace: its children must see it as their parent.
    if (!recording && !isSpanContextValid(span.spanContext())) return await fn();
    try {
      return await context.with(
        trace.setSpan(context.active(), span),
        () => fn(recording ? span : undefined),
      );
    } catch (err) {
      if (recording && errorType(err) !== "RateLimitExceeded") { // a refusal is no error
        span.setAttribute("error.type", errorType(err));
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorType(err) });
      }
      throw err;
    } finally {
      span.end();
    }
  }

  /** One acquire: a `zae_limiter.acquire` span and a point of `zae_limiter.acquires`. */
  async acquire<L extends LeaseLike>(req: RequestLike, fn: () => Promise<L>): Promise<L> {
    const attrs = () => ({
      "zae_limiter.resource": req.resource,
      "zae_limiter.limits": req.limits.map((l) => l.name).join(","),
    });
    let outcome: AcquireOutcome = "error";
    try {
      return await this.#span("zae_limiter.acquire", SpanKind.INTERNAL, attrs, async (span) => {
        try {
          const lease = await fn();
          outcome = outcomeOf(lease);
          return lease;
        } catch (err) {
          outcome = outcomeOf(undefined, err);
          throw err;
        } finally {
          span?.setAttribute("zae_limiter.outcome", outcome);
        }
      });
    } finally {
      if (this.metering) this.#acquires.add(1, { ...attrs(), "zae_limiter.outcome": outcome });
    }
  }

  /** A lease's write (`commit`, `rollback`, `consume`, …): a `zae_limiter.<operation>` span. */
  leaseWrite<T>(operation: string, resource: string | undefined, fn: () => Promise<T>) {
    return this.#span(
      `zae_limiter.${operation}`,
      SpanKind.INTERNAL,
      () => (resource === undefined ? {} : { "zae_limiter.resource": resource }),
      fn,
    );
  }

  /**
   * One DynamoDB call (one attempt): a client span `<operation> <table>` and a point of
   * `db.client.operation.duration`.
   */
  async dynamo<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const started = this.metering ? performance.now() : 0;
    let error: string | undefined;
    try {
      return await this.#span(`${operation} ${this.#tableName}`, SpanKind.CLIENT, () => ({
        "db.system.name": "aws.dynamodb",
        "db.operation.name": operation,
        "db.namespace": this.#tableName,
        "aws.dynamodb.table_names": [this.#tableName],
      }), fn);
    } catch (err) {
      error = errorType(err);
      throw err;
    } finally {
      if (this.metering) {
        const attrs: Attributes = {
          "db.system.name": "aws.dynamodb",
          "db.operation.name": operation,
          "db.namespace": this.#tableName,
        };
        if (error !== undefined) attrs["error.type"] = error;
        this.#duration.record((performance.now() - started) / 1000, attrs);
      }
    }
  }

  /** A DynamoDB call of the limiter's `operation` failed and is sent again. */
  retry(operation: string, err: unknown): void {
    if (!this.metering) return;
    this.#retries.add(1, { "zae_limiter.operation": operation, "error.type": errorType(err) });
  }

  /** A refusal the deny cache answered (no call) on a bucket of `target` (its shard's resource). */
  denyHit(target: { resource: string; shard?: { resource: string } }): void {
    if (!this.metering) return;
    this.#denyHits.add(1, { "zae_limiter.resource": target.shard?.resource ?? target.resource });
  }
}
