/**
 * A second process for tests/clock_skew_test.ts: its `Date.now` runs `ZAE_SKEW_MS` (default one
 * hour) fast, patched before the library is imported. Acquires `ZAE_ACQUIRES` tokens one by one
 * from the shared key of `ZAE_TABLE` at `ZAE_ENDPOINT` with the default clock (or, with
 * `ZAE_INJECT_CLOCK=1`, with `clock: Date.now` injected), then prints a JSON line of what it saw.
 *
 * @module
 */

import process from "node:process";

const skewMs = Number(process.env.ZAE_SKEW_MS ?? 3_600_000);
const realNow = Date.now;
Date.now = () => realNow() + skewMs;

const { Limit, RateLimiter } = await import("../mod.ts");
const limiter = new RateLimiter({
  tableName: process.env.ZAE_TABLE!,
  endpoint: process.env.ZAE_ENDPOINT!,
  ...(process.env.ZAE_INJECT_CLOCK === "1" ? { clock: Date.now } : {}),
});
const limits = [Limit.perMinute("rpm", 10)];
let admitted = 0;
for (let i = 0; i < Number(process.env.ZAE_ACQUIRES ?? 3); i++) {
  const lease = await limiter.acquire({
    entityId: "shared",
    resource: "api",
    limits,
    consume: { rpm: 1 },
  });
  await lease.commit();
  admitted++;
}
await limiter.close();
console.log(JSON.stringify({ admitted }));
