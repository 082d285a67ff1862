/**
 * A process that takes a token batch, serves a few requests from it, prints what it served and
 * holds, then waits to be killed (tests/batches_test.ts).
 */
import { Limit, RateLimiter } from "../mod.ts";
import { localClient } from "./_dynamo.ts";

const env = (name: string) => Deno.env.get(name) ?? "";
const now = Number(env("NOW"));
const limiter = new RateLimiter({
  tableName: env("TABLE"),
  client: localClient(env("ENDPOINT")),
  clock: () => now,
  batches: { idleMs: 600_000, maxAgeMs: 600_000 },
});
const request = {
  entityId: "killed",
  resource: "api",
  limits: [Limit.perMinute("rpm", 1_000)],
  consume: { rpm: 1 },
  cascade: false,
};
let served = 0;
for (let i = 0; i < 5; i++) {
  await (await limiter.acquire(request)).commit();
  served++;
}
const held = limiter.held({ entityId: "killed", resource: "api" }).rpm ?? 0;
console.log(JSON.stringify({ served, held }));
await new Promise(() => {}); // held until SIGKILL
