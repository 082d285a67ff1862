// OpenTelemetry: the metric points and spans of admitted, refused and failed-open acquires on
// DynamoDB Local, read back through the SDK's in-memory exporters; and no SDK, no telemetry.
import assert from "node:assert/strict";
import { context, metrics, trace } from "@opentelemetry/api";
import {
  AggregationTemporality,
  type DataPoint,
  MeterProvider,
  MetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { FailureMode, Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { Telemetry } from "../src/telemetry.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const ENTITY = "user-secret-42"; // must never appear in an attribute
const rpm = Limit.perMinute("rpm", 1);
const quiet = { warn() {}, error() {} };

/** A reader the test collects from when it wants: each collection holds what happened since the last. */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.DELTA });
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

type Point = DataPoint<unknown>;

async function points(reader: TestReader): Promise<Map<string, Point[]>> {
  const { resourceMetrics, errors } = await reader.collect();
  assert.deepEqual(errors, []);
  const out = new Map<string, Point[]>();
  for (const scope of resourceMetrics.scopeMetrics) {
    assert.equal(scope.scope.name, "@zae/limiter");
    for (const m of scope.metrics) out.set(m.descriptor.name, m.dataPoints as Point[]);
  }
  return out;
}

const sum = (ps: Point[] | undefined, match: Record<string, unknown>) =>
  (ps ?? []).filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
    .reduce(
      (n, p) => n + (typeof p.value === "number" ? p.value : (p.value as { count: number }).count),
      0,
    );

dynamoTest(
  "no SDK registered: the limiter works and its telemetry is a no-op",
  async (t, { ddb }) => {
    await t.step("acquire, refuse, commit with no MeterProvider or TracerProvider", async () => {
      assert.equal(new Telemetry({ tableName: "t_x" }).metering, false);
      const limiter = new RateLimiter({
        tableName: uniqueTableName("otel_none"),
        endpoint: ddb.endpoint,
        createTable: true,
      });
      try {
        const lease = await limiter.acquire({
          entityId: ENTITY,
          resource: "gpt",
          limits: [rpm],
          consume: { rpm: 1 },
        });
        await lease.commit();
        await assert.rejects(
          limiter.acquire({
            entityId: ENTITY,
            resource: "gpt",
            limits: [rpm],
            consume: { rpm: 1 },
          }),
          RateLimitExceeded,
        );
        // The span the API hands out without an SDK records nothing.
        assert.equal(trace.getTracer("@zae/limiter").startSpan("x").isRecording(), false);
      } finally {
        await limiter.close();
      }
    });
  },
);

dynamoTest(
  "metrics and spans of admitted, refused and failed-open acquires",
  async (t, { ddb }) => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const spans = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(spans)],
    });
    const contextManager = new AsyncLocalStorageContextManager().enable();
    assert.ok(metrics.setGlobalMeterProvider(meterProvider));
    assert.ok(trace.setGlobalTracerProvider(tracerProvider));
    assert.ok(context.setGlobalContextManager(contextManager));
    const tableName = uniqueTableName("otel");
    const limiter = new RateLimiter({ tableName, endpoint: ddb.endpoint, createTable: true });
    const deadTable = uniqueTableName("otel_dead");
    const dead = new RateLimiter({
      tableName: deadTable,
      endpoint: "http://127.0.0.1:9", // the discard port: nothing listens
      timeoutMs: 300,
      closeTimeoutMs: 100,
      failureMode: FailureMode.FAIL_OPEN,
      logger: quiet,
    });
    const req = { entityId: ENTITY, resource: "gpt", limits: [rpm], consume: { rpm: 1 } };
    try {
      let acquireSpans: ReadableSpan[] = [];
      await t.step(
        "admitted, then rolled back: acquire and rollback spans with DynamoDB children",
        async () => {
          const lease = await limiter.acquire(req);
          await lease.rollback();
          const all = spans.getFinishedSpans();
          acquireSpans = all.filter((s) => s.name === "zae_limiter.acquire");
          assert.equal(acquireSpans.length, 1);
          const acq = acquireSpans[0];
          assert.equal(acq.attributes["zae_limiter.outcome"], "admitted");
          assert.equal(acq.attributes["zae_limiter.resource"], "gpt");
          assert.equal(acq.attributes["zae_limiter.limits"], "rpm");
          const children = all.filter((s) =>
            s.parentSpanContext?.spanId === acq.spanContext().spanId
          );
          const update = children.find((s) => s.name === `UpdateItem ${tableName}`);
          assert.ok(update, `children: ${children.map((s) => s.name)}`);
          assert.equal(update.attributes["db.system.name"], "aws.dynamodb");
          assert.equal(update.attributes["db.operation.name"], "UpdateItem");
          assert.equal(update.spanContext().traceId, acq.spanContext().traceId);
          const rollback = all.find((s) => s.name === "zae_limiter.rollback");
          assert.ok(rollback);
          assert.ok(
            all.some((s) =>
              s.name === `UpdateItem ${tableName}` &&
              s.parentSpanContext?.spanId === rollback.spanContext().spanId
            ),
          );
        },
      );

      await t.step("refused, from the deny cache: no DynamoDB call", async () => {
        await (await limiter.acquire(req)).commit(); // takes the one token
        spans.reset();
        await assert.rejects(limiter.acquire(req), RateLimitExceeded);
        const all = spans.getFinishedSpans();
        const acq = all.find((s) => s.name === "zae_limiter.acquire");
        assert.equal(acq?.attributes["zae_limiter.outcome"], "refused");
        assert.equal(acq?.status.code, 0); // a refusal is no error
        // The process knew the bucket empty (the last answer): no DynamoDB call, no child span.
        assert.deepEqual(all.filter((s) => s.name.startsWith("UpdateItem")), []);
      });

      await t.step("failed open: an outage lets the request through", async () => {
        spans.reset();
        const lease = await dead.acquire(req);
        assert.equal(lease.failedOpen, true);
        const acq = spans.getFinishedSpans().find((s) => s.name === "zae_limiter.acquire");
        assert.equal(acq?.attributes["zae_limiter.outcome"], "failed_open");
      });

      await t.step("the metric points: outcomes, DynamoDB calls, deny cache, outbox", async () => {
        const got = await points(reader);
        const acquires = got.get("zae_limiter.acquires");
        assert.equal(sum(acquires, { "zae_limiter.outcome": "admitted" }), 2);
        assert.equal(sum(acquires, { "zae_limiter.outcome": "refused" }), 1);
        assert.equal(sum(acquires, { "zae_limiter.outcome": "failed_open" }), 1);
        assert.equal(
          sum(acquires, { "zae_limiter.resource": "gpt", "zae_limiter.limits": "rpm" }),
          4,
        );
        assert.equal(
          sum(got.get("zae_limiter.deny_cache.hits"), { "zae_limiter.resource": "gpt" }),
          1,
        );
        const calls = got.get("db.client.operation.duration");
        // two admitted acquires and a rollback: three UpdateItems answered without error
        assert.equal(
          sum(calls, { "db.operation.name": "UpdateItem", "db.namespace": tableName }),
          3,
        );
        assert.equal(
          (calls ?? []).filter((p) =>
            p.attributes["db.namespace"] === tableName &&
            p.attributes["error.type"] !== undefined
          ).length,
          0,
        );
        // The failed-open acquire waits in the outbox, to be counted once DynamoDB is back.
        const outbox = got.get("zae_limiter.outbox.size") ?? [];
        assert.equal(outbox.find((p) => p.attributes["db.namespace"] === deadTable)?.value, 1);
        assert.equal(outbox.find((p) => p.attributes["db.namespace"] === tableName)?.value, 0);
        // Never an entity id, in any attribute of any point or span.
        const texts = [
          ...[...got.values()].flat().map((p) => JSON.stringify(p.attributes)),
          ...spans.getFinishedSpans().map((s) => JSON.stringify(s.attributes)),
          ...acquireSpans.map((s) => JSON.stringify(s.attributes)),
        ];
        assert.ok(texts.length > 5);
        for (const text of texts) assert.ok(!text.includes(ENTITY), text);
      });

      await t.step("a closed limiter's outbox gauge stops", async () => {
        await dead.close();
        const outbox = (await points(reader)).get("zae_limiter.outbox.size") ?? [];
        assert.equal(outbox.some((p) => p.attributes["db.namespace"] === deadTable), false);
      });
    } finally {
      await dead.close();
      await limiter.close();
      metrics.disable();
      trace.disable();
      context.disable();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    }
  },
);
