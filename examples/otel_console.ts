/**
 * OpenTelemetry to the console: the SDK's tracer and meter providers, registered before the
 * limiter is made, print the limiter's spans (`zae_limiter.acquire` with its `UpdateItem` child)
 * and metrics (`zae_limiter.acquires`, `db.client.operation.duration`, …). In production, swap
 * the console exporters for OTLP ones (`@opentelemetry/exporter-*-otlp-http`), or use
 * `@opentelemetry/sdk-node`, which registers the same providers.
 *
 *   deno run -A examples/otel_console.ts            # DynamoDB Local on localhost:8000
 *   ZAE_LIMITER_ENDPOINT=http://localhost:8000 deno run -A examples/otel_console.ts --smoke
 *
 * The packages (pin them as this repository's deno.json / package.json do):
 * `@opentelemetry/api`, `@opentelemetry/sdk-metrics`, `@opentelemetry/sdk-trace-base`,
 * `@opentelemetry/context-async-hooks` (the context manager that makes the DynamoDB span a child
 * of the acquire's).
 */
import { context, metrics, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  ConsoleMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Limit, RateLimiter, RateLimitExceeded } from "@zae/limiter";

// 1. The SDK first: the limiter takes its meter when it is made.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())],
});
trace.setGlobalTracerProvider(tracerProvider);
const meterProvider = new MeterProvider({
  readers: [
    new PeriodicExportingMetricReader({
      exporter: new ConsoleMetricExporter(),
      exportIntervalMillis: 60_000,
    }),
  ],
});
metrics.setGlobalMeterProvider(meterProvider);

// 2. The limiter, used as usual.
const limiter = new RateLimiter({
  tableName: Deno.env.get("ZAE_LIMITER_TABLE") ?? "otel_example",
  endpoint: Deno.env.get("ZAE_LIMITER_ENDPOINT") ?? "http://localhost:8000",
  createTable: true,
});
const request = {
  entityId: "customer-1", // never an attribute: metrics are by resource and limit names
  resource: "gpt-4",
  limits: [Limit.perMinute("rpm", 2)],
  consume: { rpm: 1 },
};
for (let i = 0; i < 3; i++) {
  try {
    await (await limiter.acquire(request)).commit();
    console.log(`request ${i + 1}: admitted`);
  } catch (err) {
    if (!(err instanceof RateLimitExceeded)) throw err;
    console.log(`request ${i + 1}: refused`);
  }
}

// 3. On shutdown: close the limiter, then flush the providers (the meter prints its points).
await limiter.close();
await meterProvider.shutdown();
await tracerProvider.shutdown();
