/**
 * The over-admission check of the benchmark: two processes hammering one small bucket, admissions
 * counted against what the limit allows over the run.
 *
 * @module
 */

import { type DynamoDB, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { bucketSk, entityPk, REQUESTS } from "../src/keys.ts";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { Meter } from "./meter.ts";
import { benchClient } from "./bench_clients.ts";

/** Result of {@link checkOverAdmission}. */
export interface OverAdmission {
  /** Requests admitted in all, as the callers saw it. */
  admitted: number;
  /** Requests admitted, as the bucket item counts them (`rq`). */
  stored: number;
  /** The most the limit allows over the run: capacity plus the refill over the elapsed time. */
  allowed: number;
  /** Requests refused. */
  refused: number;
  /** Requests that failed otherwise (unavailable): should be 0. */
  errors: number;
  /** DynamoDB calls per request, refusals included. */
  callsPerRequest: number;
  /** Conditional writes that failed, per request. */
  failedPerRequest: number;
  /** Seconds the run took. */
  seconds: number;
  /** Errors by kind (`name: message, cause`). */
  errorKinds: Record<string, number>;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.name}: ${err.cause.message})` : "";
  return `${err.name}: ${err.message}${cause}`.slice(0, 200);
}

/**
 * Two processes (two limiters, two clients), `perProcess` requests in flight each, send
 * `requests` requests (several times the capacity) to one bucket of `capacity` per minute:
 * counts admissions against what the limit allows over the run.
 *
 * @example
 * ```ts ignore
 * const r = await checkOverAdmission({ endpoint: "http://127.0.0.1:8000" });
 * console.assert(r.admitted <= r.allowed);
 * ```
 */
export async function checkOverAdmission(options: {
  endpoint: string;
  capacity?: number;
  perProcess?: number;
  requests?: number;
  maxMs?: number;
}): Promise<OverAdmission> {
  const { endpoint, capacity = 100, perProcess = 32, requests = 4 * capacity, maxMs = 20_000 } =
    options;
  const tableName = `bench_oa_${Date.now().toString(36)}`;
  const clients: DynamoDB[] = [benchClient(endpoint), benchClient(endpoint)];
  const meters = clients.map((c) => new Meter(c));
  // Correctness, not latency: a long deadline, so a slow machine does not turn requests into errors.
  const limiters = clients.map((client) =>
    new RateLimiter({ tableName, client, timeoutMs: 30_000 })
  );
  const limits = [Limit.perMinute("rpm", capacity)];
  let admitted = 0, refused = 0, errors = 0;
  const errorKinds = new Map<string, number>();
  try {
    await limiters[0].createTable();
    meters.forEach((m) => m.reset());
    const start = Date.now();
    const until = performance.now() + maxMs;
    let attempts = 0;
    const worker = async (limiter: RateLimiter) => {
      while (attempts < requests && performance.now() < until) {
        attempts++;
        try {
          const lease = await limiter.acquire({
            entityId: "hot",
            resource: "oa",
            limits,
            consume: { rpm: 1 },
            cascade: false,
          });
          await lease.commit();
          admitted++;
        } catch (err) {
          if (err instanceof RateLimitExceeded) refused++;
          else {
            errors++;
            errorKinds.set(describe(err), (errorKinds.get(describe(err)) ?? 0) + 1);
          }
        }
      }
    };
    await Promise.all(
      limiters.flatMap((l) => Array.from({ length: perProcess }, () => worker(l))),
    );
    const elapsedMs = Date.now() - start;
    // The item's own count of admitted requests: also counts a write that landed after its
    // caller gave up.
    const item = await clients[0].send(
      new GetItemCommand({
        TableName: tableName,
        Key: { PK: { S: entityPk("hot") }, SK: { S: bucketSk("oa") } },
        ConsistentRead: true,
      }),
    );
    const stored = Number(item.Item?.[REQUESTS]?.N ?? 0);
    const calls = meters.reduce((a, m) => a + m.count, 0);
    const failed = meters.reduce((a, m) => a + m.calls.filter((c) => c.failed).length, 0);
    const total = Math.max(1, admitted + refused + errors);
    return {
      admitted,
      stored,
      // The first write starts a full bucket no earlier than `start`; the last ends by now.
      allowed: capacity + Math.floor((capacity * elapsedMs) / 60_000),
      refused,
      errors,
      callsPerRequest: calls / total,
      failedPerRequest: failed / total,
      seconds: elapsedMs / 1000,
      errorKinds: Object.fromEntries(errorKinds),
    };
  } finally {
    for (const l of limiters) await l.close();
    for (const c of clients) c.destroy();
  }
}
