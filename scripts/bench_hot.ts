/**
 * The hot-project benchmark (issue 14): one project with 10 API keys behind the write-ceiling
 * harness, 4 OS processes acquiring with cascade (rpm and tpm, `adjust` on every fourth
 * request), for a fixed time. Prints admitted requests per second, DynamoDB writes per admitted
 * request, throttling errors that reached callers, and over-admission (the bucket items' own
 * counts `rq` and `u_*` against capacity plus refill).
 *
 * `deno run -A scripts/bench_hot.ts [--batches | --shards N] [--seconds 10] [--wcu 100] [--processes 4] [--inflight 8]
 * [--endpoint http://…] [--json]`; without `--endpoint` (or `ZAE_LIMITER_ENDPOINT`) it starts
 * DynamoDB Local. The same file is the worker (`--worker '<json>'`).
 *
 * @module
 */

import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import process from "node:process";
import { parseArgs } from "node:util";
import { attr, bucketSk, entityPk, REQUESTS } from "../src/keys.ts";
import { startDynamoDBLocal } from "../src/local/mod.ts";
import { startWriteCeiling } from "../src/testing/mod.ts";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { benchClient } from "./bench_clients.ts";

const RESOURCE = "gpt-4o";
const PROJECT = "proj-hot";
const KEYS = Array.from({ length: 10 }, (_, i) => `key-${i}`);
/** The one key of the shard mode, with limits far above the traffic. */
const HOT_KEY = "key-hot";
const ESTIMATE = 500;
/** Far above the traffic: the ceiling, not the limits, is what this measures. */
const PROJECT_LIMITS = [Limit.perMinute("rpm", 6_000_000), Limit.perMinute("tpm", 6_000_000_000)];
const KEY_LIMITS = [Limit.perMinute("rpm", 600_000), Limit.perMinute("tpm", 600_000_000)];

interface WorkerArgs {
  endpoint: string;
  tableName: string;
  inflight: number;
  index: number;
  /** Token batches on (issue 14): requests served from tokens each process holds. */
  batches: boolean;
  /** Shard mode: one hot key (no cascade, no batches) whose stored limits are in this many shards. */
  shards?: number;
}

interface WorkerReport {
  admitted: number;
  refused: number;
  /** Failures other than a refusal, by name (a throttle past the deadline shows here). */
  errors: Record<string, number>;
  /** Amount of `tpm` each key was charged in all (estimates plus adjustments). */
  tpm: Record<string, number>;
}

async function worker(args: WorkerArgs): Promise<WorkerReport> {
  const limiter = new RateLimiter({
    tableName: args.tableName,
    endpoint: args.endpoint,
    batches: args.batches,
    autoShard: false, // the shard mode measures the count it sets
    closeTimeoutMs: 60_000, // the batches' returns must all land before the counts are read
  });
  const report: WorkerReport = { admitted: 0, refused: 0, errors: {}, tpm: {} };
  let n = args.index;
  const once = async () => {
    const i = n++;
    const entityId = args.shards ? HOT_KEY : KEYS[i % KEYS.length];
    try {
      const lease = await limiter.acquire({
        entityId,
        resource: RESOURCE,
        limits: KEY_LIMITS,
        consume: { rpm: 1, tpm: ESTIMATE },
        useStoredLimits: true,
        ...(args.shards ? { cascade: false } : {}),
      });
      const delta = i % 4 === 0 ? ((i * 37) % 400) - 200 : 0; // the answer's real size
      if (delta !== 0) await lease.adjust({ tpm: delta });
      await lease.commit();
      report.admitted++;
      report.tpm[entityId] = (report.tpm[entityId] ?? 0) + ESTIMATE + delta;
    } catch (err) {
      if (err instanceof RateLimitExceeded) report.refused++;
      else {
        const name = err instanceof Error ? err.name : String(err);
        report.errors[name] = (report.errors[name] ?? 0) + 1;
      }
    }
  };
  // Loads the stored limits and metadata into this process's caches; counted like the others (a
  // batch it takes is only written back at the end).
  await once();
  console.log("ready");
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) Deno.exit(1); // the parent is gone
    text += value;
  }
  // The parent's end closes stdin: stop at once rather than outlive it.
  lines.read().then(({ done }) => done && Deno.exit(1));
  const { startAt, endAt } = JSON.parse(text) as { startAt: number; endAt: number };
  await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
  await Promise.all(Array.from({ length: args.inflight }, async () => {
    while (Date.now() < endAt) await once();
  }));
  await limiter.close();
  return report;
}

interface ItemCounts {
  rq: number;
  used: Record<string, number>;
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "10" },
      wcu: { type: "string", default: "100" },
      processes: { type: "string", default: "4" },
      inflight: { type: "string", default: "8" },
      endpoint: { type: "string" },
      json: { type: "boolean", default: false },
      batches: { type: "boolean", default: false },
      shards: { type: "string" },
    },
  });
  const shards = values.shards === undefined ? undefined : Number(values.shards);
  if (shards !== undefined && !(Number.isInteger(shards) && shards >= 1 && shards <= 64)) {
    throw new Error(`--shards must be a whole number from 1 to 64: ${values.shards}`);
  }
  const seconds = Number(values.seconds), wcu = Number(values.wcu);
  const processes = Number(values.processes), inflight = Number(values.inflight);
  for (const [name, v] of Object.entries({ seconds, wcu, processes, inflight })) {
    if (!Number.isInteger(v) || v < 1) {
      throw new Error(`--${name} must be a whole number ≥ 1: ${v}`);
    }
  }
  const children: Deno.ChildProcess[] = [];
  await using stack = new AsyncDisposableStack();
  const stop = () => {
    for (const c of children) {
      try {
        c.kill("SIGTERM");
      } catch { /* already gone */ }
    }
  };
  stack.defer(stop);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      stop();
      stack.disposeAsync().finally(() => Deno.exit(signal === "SIGINT" ? 130 : 143));
    });
  }
  let upstream = values.endpoint ?? process.env.ZAE_LIMITER_ENDPOINT;
  if (!upstream) {
    const ddb = stack.use(await startDynamoDBLocal());
    upstream = ddb.endpoint;
  }
  const ceiling = stack.use(await startWriteCeiling({ upstream, wcuPerSecond: wcu }));
  const tableName = `bench_hot_${Date.now().toString(36)}`;
  const admin = new RateLimiter({ tableName, endpoint: upstream, createTable: true });
  stack.defer(() => admin.close());
  await admin.createEntity({ entityId: PROJECT });
  await admin.setLimits({ entityId: PROJECT, limits: PROJECT_LIMITS });
  for (const key of KEYS) {
    await admin.createEntity({ entityId: key, parentId: PROJECT, cascade: true });
    await admin.setLimits({ entityId: key, limits: KEY_LIMITS });
  }
  if (shards) {
    await admin.createEntity({ entityId: HOT_KEY });
    // Set an hour back: a new shard layout starts empty, and this measures the ceiling.
    const setter = new RateLimiter({
      tableName,
      endpoint: upstream,
      clock: () => Date.now() - 3_600_000,
    });
    await setter.setLimits({ entityId: HOT_KEY, limits: PROJECT_LIMITS, shards });
    await setter.close();
  }

  // Counted before the workers start: what they take at their first request (a batch) and give
  // back at the end is in the difference.
  const client = benchClient(upstream);
  stack.defer(() => client.destroy());
  const items = [PROJECT, ...KEYS];
  const before = await Promise.all(items.map((id) => countsOf(client, tableName, id)));

  const self = new URL(import.meta.url).pathname;
  for (let index = 0; index < processes; index++) {
    const args: WorkerArgs = {
      endpoint: ceiling.endpoint,
      tableName,
      inflight,
      index,
      batches: values.batches && !shards,
      shards,
    };
    children.push(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", self, "--worker", JSON.stringify(args)],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn(),
    );
  }
  const outputs = children.map((c) => c.stdout.pipeThrough(new TextDecoderStream()).getReader());
  const readLine = async (r: ReadableStreamDefaultReader<string>, buf: { text: string }) => {
    while (!buf.text.includes("\n")) {
      const { value, done } = await r.read();
      if (done) throw new Error(`a worker ended early: ${buf.text}`);
      buf.text += value;
    }
    const line = buf.text.slice(0, buf.text.indexOf("\n"));
    buf.text = buf.text.slice(line.length + 1);
    return line;
  };
  const bufs = children.map(() => ({ text: "" }));
  await Promise.all(outputs.map((r, i) => readLine(r, bufs[i]))); // every worker ready

  ceiling.reset();
  const startAt = Date.now() + 200;
  const endAt = startAt + seconds * 1000;
  const go = new TextEncoder().encode(JSON.stringify({ startAt, endAt }) + "\n");
  const stdins = children.map((c) => c.stdin.getWriter());
  await Promise.all(stdins.map((w) => w.write(go)));
  const reports = await Promise.all(
    outputs.map(async (r, i) => JSON.parse(await readLine(r, bufs[i])) as WorkerReport),
  );
  const elapsed = (Date.now() - startAt) / 1000;
  const stats = ceiling.stats();
  await Promise.all(stdins.map((w) => w.close()));
  await Promise.all(children.map((c) => c.status));
  const after = await Promise.all(items.map((id) => countsOf(client, tableName, id)));

  const admitted = reports.reduce((a, r) => a + r.admitted, 0);
  const errors: Record<string, number> = {};
  for (const r of reports) {
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  }
  // Over-admission: what each item counted during the run beyond capacity + refill over it.
  let overAdmitted = 0;
  const counted: Record<string, { rq: number; tpm: number }> = {};
  items.forEach((id, i) => {
    const limits = id === PROJECT ? PROJECT_LIMITS : KEY_LIMITS;
    const rq = after[i].rq - before[i].rq;
    const tpm = ((after[i].used.tpm ?? 0) - (before[i].used.tpm ?? 0)) / 1000;
    counted[id] = { rq, tpm };
    const allowed = (l: Limit) => l.capacity + (l.refillAmount * elapsed) / l.refillPeriodSeconds;
    overAdmitted += Math.max(0, rq - allowed(limits[0])) + Math.max(0, tpm - allowed(limits[1]));
  });
  const projectWcu = [...stats.items.values()]
    .find((s) => s.key.includes(entityPk(PROJECT)) && s.key.includes(bucketSk(RESOURCE)))?.wcu ?? 0;
  const callerTpm = reports.reduce(
    (a, r) => a + Object.values(r.tpm).reduce((x, y) => x + y, 0),
    0,
  );
  const hotWcu = [...stats.items.values()].filter((s) => s.key.includes(entityPk(HOT_KEY)));
  const result = {
    ...(shards
      ? {
        shards,
        hotKeyItems: hotWcu.length,
        hotKeyWcuPerSecond: hotWcu.reduce((a, s) => a + s.wcu, 0) / elapsed,
      }
      : {}),
    setting: {
      wcuPerItemPerSecond: wcu,
      processes,
      inflightPerProcess: inflight,
      batches: values.batches,
      seconds: elapsed,
    },
    admittedPerSecond: admitted / elapsed,
    admitted,
    refused: reports.reduce((a, r) => a + r.refused, 0),
    writeCallsPerAdmitted: stats.writesForwarded / Math.max(1, admitted),
    wcuPerAdmitted: stats.wcu / Math.max(1, admitted),
    throttledAnswers: stats.throttled,
    projectItemWcuPerSecond: projectWcu / elapsed,
    errorsReachingCallers: errors,
    overAdmission: overAdmitted,
    projectItem: { ...counted[PROJECT], callersAdmitted: admitted, callersTpm: callerTpm },
  };
  if (values.json) console.log(JSON.stringify(result));
  else {
    const f = (x: number, d = 1) => x.toFixed(d);
    console.log(
      shards
        ? `hot key: ${processes} processes × ${inflight} in flight, one key in ${shards} shards, ` +
          `no cascade, no batches, ${wcu} WCU/s per item, ${f(elapsed)} s`
        : `hot project: ${processes} processes × ${inflight} in flight, 10 keys, cascade, ` +
          `${wcu} WCU/s per item, batches ${values.batches ? "on" : "off"}, ${f(elapsed)} s`,
    );
    if (shards) {
      console.log(
        `  hot key's items written / WCU per s ${hotWcu.length} / ${
          f(result.hotKeyWcuPerSecond ?? 0)
        } ` +
          `(goal: admitted ≥ 8 × ${wcu} = ${8 * wcu} a second)`,
      );
    }
    console.log(`  admitted requests per second        ${f(result.admittedPerSecond)}`);
    console.log(
      `  DynamoDB writes per admitted        ${f(result.writeCallsPerAdmitted, 2)} calls, ` +
        `${f(result.wcuPerAdmitted, 2)} WCU`,
    );
    console.log(`  project item's WCU per second       ${f(result.projectItemWcuPerSecond)}`);
    console.log(`  throttled answers (retried)         ${stats.throttled}`);
    console.log(
      `  throttling errors reaching callers  ${Object.values(errors).reduce((a, b) => a + b, 0)} ${
        JSON.stringify(errors)
      }`,
    );
    console.log(
      `  over-admission                      ${overAdmitted} (project item: rq ${
        counted[PROJECT].rq
      }, tpm ${counted[PROJECT].tpm}; callers: ${admitted} admitted, ${callerTpm} tpm)`,
    );
  }
}

async function countsOf(
  client: ReturnType<typeof benchClient>,
  TableName: string,
  entityId: string,
): Promise<ItemCounts> {
  const out = await client.send(
    new GetItemCommand({
      TableName,
      Key: { PK: { S: entityPk(entityId) }, SK: { S: bucketSk(RESOURCE) } },
      ConsistentRead: true,
    }),
  );
  const n = (name: string) => Number(out.Item?.[name]?.N ?? 0);
  return { rq: n(REQUESTS), used: { rpm: n(attr.used("rpm")), tpm: n(attr.used("tpm")) } };
}

/** What `main` prints with `--json`. */
export interface HotResult {
  setting: {
    wcuPerItemPerSecond: number;
    processes: number;
    inflightPerProcess: number;
    batches: boolean;
    seconds: number;
  };
  admittedPerSecond: number;
  admitted: number;
  refused: number;
  writeCallsPerAdmitted: number;
  wcuPerAdmitted: number;
  throttledAnswers: number;
  projectItemWcuPerSecond: number;
  errorsReachingCallers: Record<string, number>;
  overAdmission: number;
}

/** Runs this benchmark in a process of its own (for `deno task bench`) and returns its result. */
export async function runHotBench(
  options: { endpoint?: string; seconds: number; batches: boolean; extra?: string[] },
): Promise<HotResult> {
  const args = [
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    "--json",
    ...(options.endpoint ? ["--endpoint", options.endpoint] : []),
    "--seconds",
    String(options.seconds),
    ...(options.batches ? ["--batches"] : []),
    ...(options.extra ?? []),
  ];
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "inherit" })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) throw new Error(`bench_hot failed (${out.code}): ${text.slice(-300)}`);
  return JSON.parse(text.split("\n").at(-1)!) as HotResult;
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--worker");
  if (at >= 0) {
    console.log(JSON.stringify(await worker(JSON.parse(Deno.args[at + 1]) as WorkerArgs)));
    Deno.exit(0);
  } else {
    await main();
    Deno.exit(0);
  }
}
