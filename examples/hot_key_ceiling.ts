/**
 * A hot project stalls at one item's write ceiling: `deno run -A examples/hot_key_ceiling.ts`.
 *
 * Starts DynamoDB Local (or uses `ZAE_LIMITER_ENDPOINT`), puts the write-ceiling harness in front
 * of it at 100 WCU per item per second (a real partition takes about 1,000), and runs one project
 * with 10 API keys, every acquire cascading to the project, limits far above the traffic: first
 * straight to DynamoDB Local, then through the ceiling. Each cascaded acquire writes the project's
 * bucket in a transaction, at 2 WCU, so the project tops out at about 50 requests a second,
 * however many callers there are. `--smoke` runs it shorter and checks the result.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { startDynamoDBLocal } from "../src/local/mod.ts";
import { startWriteCeiling } from "../src/testing/mod.ts";
import { Limit, RateLimiter } from "../mod.ts";

const smoke = Deno.args.includes("--smoke");
const seconds = smoke ? 2 : 5;
const WCU = 100;
const limits = [Limit.perMinute("rpm", 10_000_000), Limit.perMinute("tpm", 1_000_000_000)];

let endpoint = process.env.ZAE_LIMITER_ENDPOINT;
let ddb: AsyncDisposable | undefined;
if (!endpoint) {
  console.log("Starting DynamoDB Local...");
  const local = await startDynamoDBLocal(); // stops with this process, however it ends
  endpoint = local.endpoint;
  ddb = local;
}
await using _ddb = ddb;
await using ceiling = await startWriteCeiling({ upstream: endpoint, wcuPerSecond: WCU });

/** 8 callers in flight for `seconds` on one project with 10 keys: admitted per second. */
async function load(endpoint: string): Promise<{ perSecond: number; failed: number }> {
  const tableName = `hot_demo_${Date.now().toString(36)}`;
  await using limiter = new RateLimiter({ tableName, endpoint, createTable: true });
  await limiter.createEntity({ entityId: "proj-acme" });
  await limiter.setLimits({ entityId: "proj-acme", limits });
  for (let k = 0; k < 10; k++) {
    await limiter.createEntity({ entityId: `key-${k}`, parentId: "proj-acme", cascade: true });
  }
  let admitted = 0, failed = 0;
  const start = performance.now();
  const until = start + seconds * 1000;
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; performance.now() < until; i += 8) {
      const consume = { rpm: 1, tpm: 500 };
      try {
        const entityId = `key-${i % 10}`;
        await (await limiter.acquire({ entityId, resource: "gpt-4o", limits, consume })).commit();
        admitted++;
      } catch {
        failed++;
      }
    }
  }));
  return { perSecond: admitted / ((performance.now() - start) / 1000), failed };
}

console.log(`One project, 10 API keys, 8 callers, cascade on, ${seconds} s per run:`);
const free = await load(endpoint);
console.log(
  `  straight to DynamoDB Local:      ${free.perSecond.toFixed(0).padStart(5)} admitted/s`,
);
ceiling.reset();
const hot = await load(ceiling.endpoint);
const stats = ceiling.stats();
const project = [...stats.items.values()].find((s) =>
  s.key.includes("ENTITY#proj-acme") && s.key.includes("#BUCKET#")
);
console.log(
  `  through a ${WCU} WCU/s item ceiling: ${hot.perSecond.toFixed(0).padStart(5)} admitted/s ` +
    `(${stats.throttled} throttled answers retried, ${hot.failed} failed)`,
);
console.log(
  `The project's item took ${project?.wcu} WCU in ${seconds} s: its ceiling, 2 WCU a request.`,
);
if (smoke) {
  assert.ok(hot.perSecond <= (WCU + WCU * seconds) / 2 / seconds + 1, "at most the ceiling");
  assert.ok(stats.throttled > 0 && hot.perSecond < free.perSecond, "the stall shows");
  console.log("smoke run passed");
}
