#!/usr/bin/env node
/**
 * A Node script using the npm package: a batch job that summarises documents with an LLM while
 * staying under the key's limits (5 requests a second, 20 000 tokens a minute). Each call is
 * charged an estimate, then adjusted to the real usage; a refused call waits exactly the
 * `retryAfterSeconds` the error carries.
 *
 *   npm install @zae/limiter
 *   ZAE_LIMITER_ENDPOINT=http://localhost:8000 node node_script.mjs [--jobs 12]
 *
 * Without ZAE_LIMITER_ENDPOINT it starts DynamoDB Local itself (`@zae/limiter/local`, needs Java).
 * It prints one JSON summary line at the end and exits non-zero if a job failed.
 */
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { Limit, RateLimiter, RateLimitExceeded } from "@zae/limiter";
import { startDynamoDBLocal } from "@zae/limiter/local";

const limits = [Limit.perSecond("rps", 5), Limit.perMinute("tpm", 20_000)];

/** A stand-in for the model: the summary costs the prompt plus a tenth of it. */
async function summarise(doc) {
  await sleep(5);
  const promptTokens = Math.ceil(doc.length / 4);
  return { summary: doc.slice(0, 24) + "...", tokens: promptTokens + Math.ceil(promptTokens / 10) };
}

async function withLimit(limiter, doc, stats) {
  const estimate = Math.ceil(doc.length / 4) * 2; // prompt + a generous answer
  for (;;) {
    try {
      return await limiter.acquire(
        {
          entityId: "batch-job",
          resource: "summaries",
          limits,
          consume: { rps: 1, tpm: estimate },
        },
        async (lease) => {
          const result = await summarise(doc);
          await lease.adjust({ tpm: result.tokens - estimate }); // the real usage
          stats.tokens += result.tokens;
          return result;
        },
      );
    } catch (err) {
      if (!(err instanceof RateLimitExceeded) || err.impossible) throw err;
      stats.waits++;
      await sleep(Math.ceil(err.retryAfterSeconds * 1000));
    }
  }
}

async function main() {
  const jobsArg = process.argv.indexOf("--jobs");
  const jobs = jobsArg > 0 ? Number(process.argv[jobsArg + 1]) : 12;
  const ddb = process.env.ZAE_LIMITER_ENDPOINT ? undefined : await startDynamoDBLocal();
  const limiter = new RateLimiter({
    tableName: process.env.ZAE_LIMITER_TABLE ?? "rate_limits",
    endpoint: process.env.ZAE_LIMITER_ENDPOINT ?? ddb.endpoint,
    createTable: true,
  });
  const started = Date.now();
  const stats = { jobs: 0, waits: 0, tokens: 0 };
  try {
    await limiter.createTable();
    const docs = Array.from(
      { length: jobs },
      (_, i) => `Document ${i}: ` + "lorem ipsum ".repeat(40),
    );
    for (const doc of docs) {
      await withLimit(limiter, doc, stats);
      stats.jobs++;
    }
    const left = await limiter.available({ entityId: "batch-job", resource: "summaries", limits });
    console.log(JSON.stringify({ ...stats, seconds: (Date.now() - started) / 1000, left }));
  } finally {
    await limiter.close();
    await ddb?.stop();
  }
}

await main();
