/**
 * Client CPU per acquire, with no network: the transport is a stub answering every UpdateItem
 * with a canned `ALL_NEW` item (a warm bucket with room), so the time measured is the limiter's
 * own work plus its transport's (serialising, signing, parsing). Two paths: the client the
 * limiter makes itself (the lean transport, its socket sender stubbed) and a client of the
 * caller's own (the AWS SDK, its request handler stubbed).
 *
 * @module
 */

import {
  DynamoDBClient,
  type DynamoDBClientConfig,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import * as math from "../src/bucket.ts";
import { type LeanSender, leanTransportOf, useLeanTransport } from "../src/transport/lean.ts";

/** Result of {@link measureCpu}. */
export interface CpuResult {
  /** Acquires measured. */
  iterations: number;
  /**
   * Microseconds per `acquire` + `commit` (warm bucket, 2 limits) on the client the limiter makes
   * itself (the lean transport).
   */
  acquireUs: number;
  /** Microseconds per call of that path's transport alone (the lean UpdateItem). */
  sdkUs: number;
  /** sdkUs / acquireUs: the transport's share. */
  sdkShare: number;
  /** Microseconds per `acquire` + `commit` on a client of the caller's own (the AWS SDK). */
  sdkAcquireUs: number;
  /** Microseconds per `client.send(UpdateItem)` through the AWS SDK, same input and answer. */
  sdkCallUs: number;
  /** Microseconds per rejection served from the deny cache (no call). */
  denyUs: number;
  /**
   * Microseconds per `acquire` + `commit` on the lean path with an OpenTelemetry SDK registered
   * (a MeterProvider with a reader, a TracerProvider recording every span to a no-op processor),
   * measured after the others; `acquireUs` is the same path with no SDK.
   */
  otelAcquireUs: number;
}

const T0 = 1_800_000_000_000;
const LIMITS = [Limit.perMinute("rpm", 10_000_000), Limit.perMinute("tpm", 10_000_000_000)];
const TINY = [Limit.perMinute("rpm", 1)];

/**
 * The answer of an UpdateItem with `ReturnValues: ALL_NEW`: a bucket used just now, holding
 * `usedMilli` thousandths of each limit (little: room left; the capacity: empty).
 */
function cannedItem(resource: string, limits: Limit[], nowMs: bigint, usedMilli?: bigint): string {
  const attributes: Record<string, unknown> = {
    PK: { S: "ENTITY#key-1" },
    SK: { S: `#BUCKET#${resource}` },
    rq: { N: "12" },
    ts: { N: String(nowMs) },
    ttl: { N: String(nowMs / 1000n + 3700n) },
  };
  for (const l of limits) {
    const spec = {
      capacityMilli: l.capacityMilli,
      refillMilli: l.refillMilli,
      periodMs: l.periodMs,
    };
    const tat = math.scaledNow(spec, nowMs) + math.cost(spec, usedMilli ?? l.capacityMilli);
    attributes[`t_${l.name}`] = { N: String(tat) };
    attributes[`k_${l.name}`] = { S: math.specKey(spec) };
    attributes[`u_${l.name}`] = { N: "12000" };
  }
  return JSON.stringify({ Attributes: attributes });
}

/**
 * A transport that never touches the network: canned answers by operation and, for writes, by
 * the first key in `answers` found in the request body (e.g. a bucket's sort key).
 */
function stubHandler(answers: Record<string, Record<string, string>>) {
  const encoder = new TextEncoder();
  const bodies = Object.fromEntries(
    Object.entries(answers).map((
      [op, byKey],
    ) => [op, Object.entries(byKey).map(([k, body]) => [k, encoder.encode(body)] as const)]),
  );
  const empty = encoder.encode("{}");
  return {
    metadata: { handlerProtocol: "http/1.1" },
    handle(request: { headers: Record<string, string>; body?: unknown }) {
      const op = (request.headers["x-amz-target"] ?? "").split(".").pop() ?? "";
      const text = typeof request.body === "string" ? request.body : "";
      const body = (bodies[op] ?? []).find(([k]) => text.includes(k))?.[1] ?? empty;
      return Promise.resolve({
        response: {
          statusCode: 200,
          reason: "OK",
          headers: {
            "content-type": "application/x-amz-json-1.0",
            "content-length": String(body.byteLength),
          },
          // A fresh copy: the SDK may take ownership of the bytes.
          body: body.slice(),
        },
      });
    },
    updateHttpClientConfig() {},
    httpHandlerConfigs() {
      return {};
    },
    destroy() {},
  };
}

/**
 * A lean transport sender that never touches the network (it replaces the socket sender): the
 * canned item for every request.
 */
function stubSender(body: string): () => LeanSender {
  const headers: Record<string, string> = {
    "content-type": "application/x-amz-json-1.0",
    date: new Date().toUTCString(),
  };
  const answer = { status: 200, header: (name: string) => headers[name] ?? null, text: body };
  return () => () => Promise.resolve(answer);
}

/**
 * Measures µs per acquire and per transport call on stub transports.
 *
 * @example
 * ```ts ignore
 * const r = await measureCpu({ iterations: 5_000 });
 * console.log(`${r.acquireUs.toFixed(0)} µs per acquire, ${(r.sdkShare * 100).toFixed(0)} % in the SDK`);
 * ```
 */
export async function measureCpu(options: { iterations?: number } = {}): Promise<CpuResult> {
  const { iterations = 5_000 } = options;
  const nowMs = BigInt(T0);
  const client = new DynamoDBClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:9", // never reached: the stub answers
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
    requestHandler: stubHandler({
      UpdateItem: {
        "#BUCKET#tiny": cannedItem("tiny", TINY, nowMs),
        "#BUCKET#gpt-4": cannedItem("gpt-4", LIMITS, nowMs, 1_000n),
      },
    }) as unknown as DynamoDBClientConfig["requestHandler"],
  });
  let captured: Record<string, unknown> | undefined;
  client.middlewareStack.add(
    (next, context) => (args) => {
      if (context.commandName === "UpdateItemCommand" && captured === undefined) {
        captured = structuredClone(args.input as Record<string, unknown>);
      }
      return next(args);
    },
    { step: "initialize", name: "zaeBenchCapture" },
  );
  const limiter = new RateLimiter({ tableName: "bench_cpu", client, clock: () => T0 });
  // The client the limiter makes itself, with its lean transport's sender stubbed (the same
  // options as makeClient; the SDK, stubbed too, answers the calls off the hot path).
  const own = new DynamoDBClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:9",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
    requestHandler: stubHandler({}) as unknown as DynamoDBClientConfig["requestHandler"],
  });
  useLeanTransport(own, { sender: stubSender(cannedItem("gpt-4", LIMITS, nowMs, 1_000n)) });
  const lean = leanTransportOf(own)!;
  const ownLimiter = new RateLimiter({ tableName: "bench_cpu", client: own, clock: () => T0 });
  const request = {
    entityId: "key-1",
    resource: "gpt-4",
    limits: LIMITS,
    consume: { rpm: 1, tpm: 500 },
  };
  try {
    const sdkAcquire = async () => await (await limiter.acquire(request)).commit();
    const acquire = async () => await (await ownLimiter.acquire(request)).commit();
    const sdkSend = () => client.send(new UpdateItemCommand(captured as never));
    const send = () => lean.send("UpdateItem", captured!);
    const tiny = { ...request, resource: "tiny", limits: TINY, consume: { rpm: 1 } };
    let admitted = 0;
    const deny = async () => {
      try {
        await (await limiter.acquire(tiny)).commit();
        admitted++;
      } catch (err) {
        if (!(err instanceof RateLimitExceeded)) throw err;
      }
    };
    // Warm up: caches, the JIT, and the canned item's warm state; fill "tiny" (1 a minute).
    for (let i = 0; i < Math.min(2_000, iterations); i++) await sdkAcquire();
    for (let i = 0; i < Math.min(2_000, iterations); i++) await acquire();
    captured = undefined;
    await sdkAcquire(); // capture a warm acquire's UpdateItem input
    for (let i = 0; i < Math.min(2_000, iterations); i++) await sdkSend();
    for (let i = 0; i < Math.min(2_000, iterations); i++) await send();
    await (await limiter.acquire(tiny)).commit(); // the answer shows it empty
    for (let i = 0; i < 100; i++) await deny();
    if (admitted > 0) throw new Error("the deny cache let a request through an empty bucket");
    // Call by call, alternating both acquires, both transports alone and a refusal, so that a
    // drift of a shared machine hits all alike; five blocks, the quietest one kept.
    const steps = [acquire, send, sdkAcquire, sdkSend, deny];
    let best: number[] | undefined;
    for (let block = 0; block < 5; block++) {
      const sums = steps.map(() => 0);
      for (let i = 0; i < iterations; i++) {
        for (let k = 0; k < steps.length; k++) {
          const t0 = performance.now();
          await steps[k]();
          sums[k] += performance.now() - t0;
        }
      }
      const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      if (!best || total(sums) < total(best)) best = sums;
    }
    const [acquireUs, sdkUs, sdkAcquireUs, sdkCallUs, denyUs] = best!.map((ms) =>
      (ms * 1000) / iterations
    );
    const otelAcquireUs = await withOtelSdk(async () => {
      const traced = new RateLimiter({ tableName: "bench_cpu", client: own, clock: () => T0 });
      try {
        const one = async () => await (await traced.acquire(request)).commit();
        for (let i = 0; i < Math.min(2_000, iterations); i++) await one();
        let bestMs = Infinity;
        for (let block = 0; block < 5; block++) {
          const t0 = performance.now();
          for (let i = 0; i < iterations; i++) await one();
          bestMs = Math.min(bestMs, performance.now() - t0);
        }
        return (bestMs * 1000) / iterations;
      } finally {
        await traced.close();
      }
    });
    return {
      iterations,
      acquireUs,
      sdkUs,
      sdkShare: sdkUs / acquireUs,
      sdkAcquireUs,
      sdkCallUs,
      denyUs,
      otelAcquireUs,
    };
  } finally {
    await limiter.close();
    await ownLimiter.close();
    client.destroy();
    own.destroy();
  }
}

/** Runs `fn` with an OpenTelemetry SDK registered globally, then unregisters it. */
async function withOtelSdk<T>(fn: () => Promise<T>): Promise<T> {
  const api = await import("@opentelemetry/api");
  const { MeterProvider, MetricReader } = await import("@opentelemetry/sdk-metrics");
  const { BasicTracerProvider, NoopSpanProcessor } = await import("@opentelemetry/sdk-trace-base");
  const { AsyncLocalStorageContextManager } = await import("@opentelemetry/context-async-hooks");
  class Reader extends MetricReader {
    protected onForceFlush = () => Promise.resolve();
    protected onShutdown = () => Promise.resolve();
  }
  const meters = new MeterProvider({ readers: [new Reader()] });
  const tracers = new BasicTracerProvider({ spanProcessors: [new NoopSpanProcessor()] });
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.metrics.setGlobalMeterProvider(meters);
  api.trace.setGlobalTracerProvider(tracers);
  try {
    return await fn();
  } finally {
    api.metrics.disable();
    api.trace.disable();
    api.context.disable();
    await meters.shutdown();
    await tracers.shutdown();
  }
}

/** Result of {@link measureLiveCpu}. */
export interface LiveCpuResult {
  /** Acquires measured per path. */
  iterations: number;
  /** Process CPU (user + system) µs per `acquire` + `commit`, the limiter's own client (lean). */
  leanUs: number;
  /** The same through a client of the caller's own (the AWS SDK and its Node HTTP handler). */
  sdkUs: number;
}

/**
 * Client CPU per acquire against a real DynamoDB (Local): the process's CPU time
 * (`process.cpuUsage`, the emulator being another process), so the HTTP stack counts too.
 * One acquire at a time, warm bucket, 2 limits; the two paths alternate in blocks, the quietest
 * block of each kept.
 */
export async function measureLiveCpu(
  options: { endpoint: string; tableName: string; iterations?: number },
): Promise<LiveCpuResult> {
  const { endpoint, tableName, iterations = 500 } = options;
  const process = (await import("node:process")).default;
  const sdkClient = new DynamoDBClient({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
  const own = new RateLimiter({ tableName, endpoint });
  const sdk = new RateLimiter({ tableName, client: sdkClient });
  await own.createTable();
  const request = {
    entityId: "live",
    resource: "gpt-4",
    limits: LIMITS,
    consume: { rpm: 1, tpm: 1 },
  };
  const block = async (limiter: RateLimiter) => {
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < iterations; i++) await (await limiter.acquire(request)).commit();
    const cpu = process.cpuUsage(cpu0);
    return (cpu.user + cpu.system) / iterations;
  };
  try {
    await block(own);
    await block(sdk);
    let leanUs = Infinity, sdkUs = Infinity;
    for (let round = 0; round < 4; round++) {
      leanUs = Math.min(leanUs, await block(own));
      sdkUs = Math.min(sdkUs, await block(sdk));
    }
    return { iterations, leanUs, sdkUs };
  } finally {
    await own.close();
    await sdk.close();
    sdkClient.destroy();
  }
}
