/**
 * An LLM plan as a gateway sells it, on DynamoDB Local started here: each API key has, per
 * model, 100,000 tokens a month (calendar months in the customer's time zone) and 60 requests a
 * minute, a soft 20,000 tokens-a-minute limit that only warns, and every request is also charged
 * to the key's "all-models" pool of 150,000 tokens a month. Answers stream: each chunk's tokens
 * are taken with `lease.consume`, so a stream is cut off the moment a budget runs out.
 *
 * `deno run -A examples/llm_plan.ts` (`--smoke` checks its own output and exits non-zero on a
 * difference). Time is simulated (an injected clock), so the output is the same on every run;
 * the DynamoDB calls are real. With `ZAE_LIMITER_ENDPOINT` it uses that DynamoDB instead.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { Limit, type LimitStatus, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { rateLimitHeaders } from "../src/http/mod.ts";
import { startDynamoDBLocal } from "../src/local/mod.ts";

const ZONE = "America/New_York"; // the customer's
const KEY = "key-anna";

// The plan, stored once for the key: per model (entity-wide, so every model gets its own
// buckets), and the pool across models (the key's limits on the "all-models" resource).
const perModel = [
  Limit.quota("tokens", 100_000, { reset: `month@${ZONE}` }),
  Limit.perMinute("rpm", 60),
  Limit.perMinute("tpm", 20_000, { soft: true }), // a warning, never a refusal
];
const pool = [Limit.quota("tokens", 150_000, { reset: `month@${ZONE}` })];

/** 2026-01-31 23:40 in New York (04:40 UTC on 1 February): 20 minutes before the reset. */
const START = Date.UTC(2026, 1, 1, 4, 40, 0);
let now = START;
const clock = () => now;
const nyTime = () =>
  new Date(now).toLocaleString("en-CA", { timeZone: ZONE, hour12: false }).replace(",", "");

const lines: string[] = [];
const say = (line = "") => {
  lines.push(line);
  console.log(line);
};

const external = process.env.ZAE_LIMITER_ENDPOINT;
await using ddb = external ? undefined : await startDynamoDBLocal();
await using limiter = new RateLimiter({
  tableName: process.env.ZAE_LIMITER_TABLE ?? "llm_plan",
  endpoint: external ?? ddb!.endpoint,
  region: "us-east-1",
  createTable: true,
  clock,
});
await limiter.createEntity({ entityId: KEY, name: "Anna's app" });
await limiter.setLimits({ entityId: KEY, limits: perModel }); // entity-wide: every model
await limiter.setLimits({ entityId: KEY, resource: "all-models", limits: pool });

/** A fake model: `n` chunks of `size` tokens. */
async function* stream(n: number, size: number) {
  for (let i = 0; i < n; i++) yield { tokens: size };
}

/** One streamed request: the prompt on acquire, each chunk with `consume`, then commit. */
async function chat(model: string, prompt: number, chunks: number, size: number) {
  let streamed = 0;
  const head = `${nyTime()}  ${model.padEnd(6)}`;
  let lease;
  try {
    lease = await limiter.acquire({
      entityId: KEY,
      resource: model,
      also: ["all-models"],
      consume: { rpm: 1, tokens: prompt, tpm: prompt },
    });
  } catch (err) {
    if (!(err instanceof RateLimitExceeded)) throw err;
    const v = err.primaryViolation;
    say(`${head} 429 ${v.resource}:${v.limitName}, Retry-After ${err.retryAfterHeader} s`);
    return undefined;
  }
  let cut = "";
  try {
    for await (const chunk of stream(chunks, size)) {
      await lease.consume({ tokens: chunk.tokens, tpm: chunk.tokens });
      streamed += chunk.tokens;
    }
  } catch (err) {
    if (!(err instanceof RateLimitExceeded)) {
      await lease.rollback();
      throw err;
    }
    const v = err.primaryViolation;
    cut = `, cut off by ${v.resource}:${v.limitName} (back in ${v.retryAfterSeconds} s)`;
  }
  await lease.commit();
  const tpm = lease.statuses.find((s) => s.soft)!;
  const left = await limiter.available({ entityId: KEY, resource: model });
  const all = await limiter.available({ entityId: KEY, resource: "all-models" });
  say(
    `${head} 200 prompt ${prompt} + ${streamed} streamed${cut}; left: ${model} ${left.tokens}, ` +
      `all-models ${all.tokens}${warn(tpm, left.tpm)}`,
  );
  return lease.statuses;
}

/** The soft limit's warning at 80 % of its capacity in use. */
function warn(status: LimitStatus, left: number): string {
  const used = Math.floor(((status.limit.capacity - left) * 100) / status.limit.capacity);
  return used >= 80 ? ` [warning: tpm at ${used} %]` : "";
}

say(`Plan of ${KEY}: 100,000 tokens a month per model and 60 rpm (calendar months in ${ZONE}),`);
say("a soft 20,000 tpm that only warns, and 150,000 tokens a month across all models.");
say("The clock is simulated; the DynamoDB calls are real.\n");

await chat("gpt-4o", 30_000, 10, 2_000);
now += 5 * 60_000;
await chat("claude", 30_000, 15, 2_000);
now += 5 * 60_000;
await chat("gpt-4o", 20_000, 20, 2_000);
now += 5 * 60_000;
await chat("claude", 500, 1, 100);
now = Date.UTC(2026, 1, 1, 5, 0, 0); // midnight in New York: a new month for Anna
const statuses = await chat("gpt-4o", 1_000, 2, 500);
const headers = rateLimitHeaders(statuses!);
say(`RateLimit-Policy: ${headers.get("RateLimit-Policy")}`);
say(`RateLimit: ${headers.get("RateLimit")}`);
say(`X-RateLimit-Soft: ${headers.get("X-RateLimit-Soft")}`);

if (process.argv.includes("--smoke")) {
  const text = lines.join("\n");
  const expect = [
    "2026-01-31 23:40:00  gpt-4o 200 prompt 30000 + 20000 streamed; left: gpt-4o 50000, " +
    "all-models 100000 [warning: tpm at 250 %]",
    "2026-01-31 23:45:00  claude 200 prompt 30000 + 30000 streamed; left: claude 40000, " +
    "all-models 40000 [warning: tpm at 300 %]",
    "2026-01-31 23:50:00  gpt-4o 200 prompt 20000 + 20000 streamed, cut off by " +
    "all-models:tokens (back in 600 s); left: gpt-4o 10000, all-models 0 [warning: tpm at 200 %]",
    "2026-01-31 23:55:00  claude 429 all-models:tokens, Retry-After 300 s",
    "2026-02-01 00:00:00  gpt-4o 200 prompt 1000 + 1000 streamed; left: gpt-4o 98000, " +
    "all-models 148000",
    'RateLimit-Policy: "tokens";q=100000;w=2419200, "rpm";q=60;w=60, ' +
    '"all-models:tokens";q=150000;w=2419200',
  ];
  for (const line of expect) assert.ok(text.includes(line), `missing:\n${line}\nin:\n${text}`);
  say("smoke run passed");
}
