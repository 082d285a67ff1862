/**
 * A process of tests/concurrency_test.ts, on one entity with a concurrent limit (real clock).
 * `MODE=crash`: takes every slot, prints `{"takenAt": ms}` and waits to be killed.
 * `MODE=hammer`: for `DURATION` ms, acquires, holds the lease a few ms, commits; prints
 * `{"intervals": [[admitted, committing], …], "refused": n, "expired": n}` (epoch ms).
 */
import { LeaseExpiredError, Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { localClient } from "./_dynamo.ts";

const env = (name: string) => Deno.env.get(name) ?? "";
const limiter = new RateLimiter({ tableName: env("TABLE"), client: localClient(env("ENDPOINT")) });
const max = Number(env("MAX"));
const request = {
  entityId: "shared",
  resource: "llm",
  limits: [Limit.concurrent("streams", max), Limit.perSecond("rps", 10_000)],
  consume: { rps: 1 },
  leaseTimeoutMs: Number(env("TIMEOUT")),
};

if (env("MODE") === "crash") {
  const takenAt = Date.now();
  for (let i = 0; i < max; i++) await limiter.acquire(request);
  console.log(JSON.stringify({ takenAt }));
  await new Promise(() => {}); // held until SIGKILL
}

const end = Date.now() + Number(env("DURATION"));
const intervals: [number, number][] = [];
let refused = 0;
let expired = 0;
while (Date.now() < end) {
  try {
    const lease = await limiter.acquire(request);
    const admitted = Date.now();
    await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    intervals.push([admitted, Date.now()]);
    await lease.commit();
  } catch (err) {
    if (err instanceof RateLimitExceeded) {
      refused++;
      await new Promise((r) => setTimeout(r, 5));
    } else if (err instanceof LeaseExpiredError) expired++;
    else throw err;
  }
}
await limiter.close();
console.log(JSON.stringify({ intervals, refused, expired }));
