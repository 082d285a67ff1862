/**
 * Subprocess of `reliability_load_test.ts`: one OS process with its own {@link RateLimiter} (real
 * clock). It makes one acquire (which fills its caches), prints `ready`, reads one line
 * `{"startAt": ms, "endAt": ms}` from stdin, keeps `concurrency` acquires in flight on one
 * cascaded key from `startAt` until `endAt`, then prints its counts as one JSON line.
 *
 * Run: `deno run -A tests/_worker_load.ts '<json LoadWorkerArgs>'`.
 *
 * @module
 */

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { RateLimiter } from "../src/limiter.ts";
import { Limit } from "../src/limit.ts";
import { RateLimitExceeded } from "../src/errors.ts";
import { localClient } from "./_dynamo.ts";

/** What the test hands a worker (as JSON in `argv[0]`). */
export interface LoadWorkerArgs {
  /** DynamoDB Local endpoint. */
  endpoint: string;
  /** The table. */
  tableName: string;
  /** The child entity (cascades to its parent through stored metadata). */
  entityId: string;
  /** The resource. */
  resource: string;
  /** Requests kept in flight. */
  concurrency: number;
  /** Deadline of each limiter call, ms. */
  timeoutMs: number;
}

/** What a worker prints. */
export interface LoadWorkerReport {
  /** The first, sequential acquire (it fills the process's caches): admitted or not. */
  warmup: { admitted: boolean; start: number; end: number };
  /** Acquires admitted (after the warm-up). */
  admitted: number;
  /** Acquires refused with `RateLimitExceeded`. */
  rejected: number;
  /** Other failures, by error name (should stay empty). */
  errors: Record<string, number>;
  /** One example message per error name. */
  errorSamples: Record<string, string>;
  /** `Date.now()` before the first request after the warm-up started. */
  firstStart: number;
  /** `Date.now()` after the last request ended. */
  lastEnd: number;
  /** Latencies of admitted acquires, ms: p50, p99, max. */
  admittedLatencyMs: { p50: number; p99: number; max: number };
  /**
   * DynamoDB calls sent, by command and outcome (`UpdateItemCommand`, or with the failure:
   * `TransactWriteItemsCommand:TransactionConflict`, `UpdateItemCommand:ConditionalCheckFailed`).
   */
  calls: Record<string, number>;
}

/** Counts calls by command and outcome (cancellation reasons of transactions included). */
function countCalls(client: DynamoDBClient, into: Record<string, number>): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = String(context.commandName);
      const bump = (k: string) => (into[k] = (into[k] ?? 0) + 1);
      try {
        const out = await next(args);
        bump(command);
        return out;
      } catch (err) {
        const e = err as Error & { CancellationReasons?: { Code?: string }[] };
        const codes = (e.CancellationReasons ?? []).map((r) => r.Code ?? "None")
          .filter((c) => c !== "None");
        const why = codes.length > 0 ? [...new Set(codes)].join("+") : e.name ?? String(err);
        bump(`${command}:${why.replace(/Exception$/, "")}`);
        throw err;
      }
    },
    { step: "initialize", name: "loadWorkerCounter" },
  );
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** The start signal, read from stdin once every worker is ready. */
interface Go {
  /** Epoch ms at which to start (all workers start together). */
  startAt: number;
  /** Epoch ms after which no new request starts. */
  endAt: number;
}

async function readLine(): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of Deno.stdin.readable) {
    text += decoder.decode(chunk, { stream: true });
    const nl = text.indexOf("\n");
    if (nl >= 0) return text.slice(0, nl);
  }
  return text;
}

async function main(args: LoadWorkerArgs): Promise<LoadWorkerReport> {
  let go: Go = { startAt: 0, endAt: 0 };
  const client = localClient(args.endpoint);
  const calls: Record<string, number> = {};
  countCalls(client, calls);
  const limiter = new RateLimiter({
    tableName: args.tableName,
    client,
    timeoutMs: args.timeoutMs,
  });
  // The limits passed are a fallback only: the child's and the parent's stored limits apply.
  const fallback = [Limit.perSecond("rps", 1)];
  const report: LoadWorkerReport = {
    warmup: { admitted: false, start: 0, end: 0 },
    admitted: 0,
    rejected: 0,
    errors: {},
    errorSamples: {},
    firstStart: Infinity,
    lastEnd: 0,
    admittedLatencyMs: { p50: 0, p99: 0, max: 0 },
    calls,
  };
  const latencies: number[] = [];
  /** One acquire + commit; returns how long to wait before the next (the retry-after). */
  const once = async (): Promise<number> => {
    const start = Date.now();
    if (start < report.firstStart) report.firstStart = start;
    let wait = 0;
    try {
      const lease = await limiter.acquire({
        entityId: args.entityId,
        resource: args.resource,
        limits: fallback,
        consume: { rps: 1 },
        useStoredLimits: true,
      });
      await lease.commit();
      report.admitted++;
      latencies.push(Date.now() - start);
    } catch (err) {
      if (err instanceof RateLimitExceeded) {
        report.rejected++;
        // A well-behaved client waits for the exact moment the token returns (plus jitter).
        wait = Math.min(1000, err.retryAfterSeconds * 1000) + Math.random() * 5;
      } else {
        const name = err instanceof Error ? err.name : typeof err;
        report.errors[name] = (report.errors[name] ?? 0) + 1;
        report.errorSamples[name] ??= String(err instanceof Error ? err.message : err);
      }
    }
    const end = Date.now();
    if (end > report.lastEnd) report.lastEnd = end;
    return wait;
  };
  const slot = async () => {
    while (Date.now() < go.endAt) {
      const wait = await once();
      if (wait > 0) {
        if (Date.now() + wait >= go.endAt) break;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  };
  // One request first (it loads the entity's metadata and stored limits into the process's
  // cache), then all slots together at `startAt`. Every request counts, the first included.
  const warmStart = Date.now();
  await once();
  report.warmup = { admitted: report.admitted === 1, start: warmStart, end: report.lastEnd };
  Object.assign(report, { admitted: 0, rejected: 0, firstStart: Infinity, lastEnd: 0 });
  latencies.length = 0;
  console.log("ready");
  go = JSON.parse(await readLine()) as Go;
  await new Promise((r) => setTimeout(r, Math.max(0, go.startAt - Date.now())));
  try {
    await Promise.all(Array.from({ length: args.concurrency }, slot));
  } finally {
    await limiter.close();
    client.destroy();
  }
  latencies.sort((a, b) => a - b);
  report.admittedLatencyMs = {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies.at(-1) ?? 0,
  };
  return report;
}

if (import.meta.main) {
  const report = await main(JSON.parse(Deno.args[0]) as LoadWorkerArgs);
  console.log(JSON.stringify(report));
}
