/**
 * `deno task bench`: what each limiter operation costs in DynamoDB calls, round trips and capacity;
 * throughput against rate-limiter-flexible's `RateLimiterDynamo`, the Python zae-limiter 0.17.0
 * and a plain conditional write; client CPU per acquire; request body, bundle size and config
 * expiry. Starts its own DynamoDB Local, prints every goal as met or missed, and writes
 * `docs/benchmarks.md`.
 *
 * ```sh
 * deno task bench            # full run (about 4 minutes), writes docs/benchmarks.md
 * deno task bench --quick    # smoke run (about 30 s, no Python peer), writes nothing
 * deno task bench --endpoint http://127.0.0.1:8000   # use a running DynamoDB Local
 * ```
 *
 * Flags: `--quick`, `--endpoint URL`, `--rounds N`, `--round-ms N`, `--no-write`, `--write`,
 * `--out PATH`, `--skip-throughput`, `--python` (run the Python peer in a quick run too),
 * `--no-python`. The Python peer's venv is made on first use (`~/.cache/zae-limiter/bench-venv`,
 * about 20 s; needs PyPI). Exits with 1 when a judged goal is missed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { DYNAMODB_LOCAL_VERSION, type LocalDynamo, startDynamoDBLocal } from "../src/local/mod.ts";
import { measureCosts } from "./bench_cost.ts";
import { measureCpu } from "./bench_cpu.ts";
import { runHotBench } from "./bench_hot.ts";
import {
  type BenchResults,
  peerRows,
  peerTable,
  renderMarkdown,
  type Verdict,
  verdictLines,
  verdicts,
} from "./bench_report.ts";
import { checkOverAdmission, measureThroughput } from "./bench_throughput.ts";
import { measureBundle, measureConfigExpiry, measureRequestBody } from "./bench_probe.ts";
import { ensurePythonPeer, PYTHON_PEER_VERSION } from "./bench_peers.ts";

/** Options of {@link runBench}. */
export interface BenchOptions {
  /** Short rounds and few repeats: a smoke run. @default false */
  quick?: boolean;
  /** A running DynamoDB (Local); otherwise one is started and stopped. */
  endpoint?: string;
  /** Throughput rounds per case (an odd count: the median is one round). @default 5 (quick: 1) */
  rounds?: number;
  /** Duration of one library's part of a round, ms. @default 2000 (quick: 300) */
  roundMs?: number;
  /** Skip the throughput rounds. @default false */
  skipThroughput?: boolean;
  /** Run the Python zae-limiter as a third peer. @default true (quick: false) */
  python?: boolean;
  /** Progress lines. @default none */
  log?: (line: string) => void;
}

/**
 * Runs every part of the benchmark and judges the goals.
 *
 * @example
 * ```ts ignore
 * const { results, verdicts } = await runBench({ quick: true });
 * ```
 */
export async function runBench(
  options: BenchOptions = {},
): Promise<{ results: BenchResults; verdicts: Verdict[]; settings: string }> {
  const { quick = false, skipThroughput = false, log = () => {} } = options;
  const rounds = options.rounds ?? (quick ? 1 : 5);
  const roundMs = options.roundMs ?? (quick ? 300 : 2_000);
  const wantPython = (options.python ?? !quick) && !skipThroughput;
  let pythonSkipped: string | undefined = skipThroughput
    ? "throughput skipped"
    : wantPython
    ? undefined
    : quick
    ? "quick run; --python runs it"
    : "--no-python";
  let python: string | undefined;
  if (wantPython) {
    try {
      python = await ensurePythonPeer({ log });
    } catch (err) {
      pythonSkipped = `no venv with zae-limiter ${PYTHON_PEER_VERSION}: ${(err as Error).message}`
        .slice(0, 300);
      log(pythonSkipped);
    }
  }
  let local: LocalDynamo | undefined;
  let endpoint = options.endpoint;
  if (endpoint === undefined) {
    log("starting DynamoDB Local ...");
    // The JVM's default JIT: the library's default start options (C1 only) favour start-up
    // time, which would make the emulator's steady state slower than it is.
    local = await startDynamoDBLocal({ javaOptions: [] });
    endpoint = local.endpoint;
  }
  try {
    log(`cost per operation (${endpoint}) ...`);
    const costs = await measureCosts({
      endpoint,
      repeats: quick ? 2 : 3,
      rejections: quick ? 20 : 100,
    });
    log("over-admission check ...");
    const overAdmission = await checkOverAdmission({ endpoint });
    const throughput = skipThroughput ? [] : await measureThroughput({
      endpoint,
      rounds,
      roundMs,
      streamCase: !quick,
      latencyMs: quick ? 0 : 3,
      warmupRounds: quick ? 1 : 4,
      serverPid: local?.pid,
      python,
      onRound: ({ concurrency, keys, stream, round, result }) =>
        log(
          `throughput ${concurrency} in flight, ${keys}${
            stream ? ", stream on" : ""
          }, round ${round}: ` +
            `${result.ours.perSecond.toFixed(0)} vs ${result.theirs.perSecond.toFixed(0)} req/s` +
            (result.python ? ` (Python ${result.python.perSecond.toFixed(0)})` : "") +
            (result.plain ? ` (plain ${result.plain.perSecond.toFixed(0)})` : "") + ", " +
            `ratio ${result.ratio.toFixed(2)}, retries/req ${
              result.ours.failedPerRequest.toFixed(2)
            }, CPU µs/req client+server ${result.ours.clientCpuUs.toFixed(0)}+${
              result.ours.serverCpuUs.toFixed(0)
            } vs ${result.theirs.clientCpuUs.toFixed(0)}+${result.theirs.serverCpuUs.toFixed(0)}`,
        ),
    });
    log("client CPU per acquire ...");
    const cpu = await measureCpu({ iterations: quick ? 300 : 5_000 });
    log("request body, config expiry, bundle size ...");
    const body = await measureRequestBody({ endpoint });
    const configExpiry = await measureConfigExpiry({ endpoint });
    const bundle = await measureBundle();
    log("a hot project at a write ceiling, without and with token batches ...");
    // Each run starts a DynamoDB Local of its own: the emulator slows down once the rounds above
    // have filled it with tens of thousands of items, which is not what a hot key measures.
    const hotSeconds = quick ? 2 : 8;
    const hot = {
      off: await runHotBench({ seconds: hotSeconds, batches: false }),
      on: await runHotBench({ seconds: hotSeconds, batches: true }),
      shards: await runHotBench({
        seconds: hotSeconds,
        batches: false,
        extra: ["--shards", "16", "--wcu", "50"],
      }),
    };
    const results: BenchResults = {
      costs,
      throughput,
      overAdmission,
      cpu,
      body,
      configExpiry,
      bundle,
      pythonSkipped,
      hot,
    };
    const settings = skipThroughput
      ? "throughput skipped"
      : `throughput: ${rounds} round(s) of ${roundMs} ms per library and case`;
    return {
      results,
      // Short rounds are too noisy to judge a ratio: a quick run reports it only.
      verdicts: verdicts(results, { judgeThroughput: !quick }),
      settings,
    };
  } finally {
    await local?.stop();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      endpoint: { type: "string" },
      rounds: { type: "string" },
      "round-ms": { type: "string" },
      write: { type: "boolean" },
      "no-write": { type: "boolean", default: false },
      out: { type: "string", default: "docs/benchmarks.md" },
      "skip-throughput": { type: "boolean", default: false },
      python: { type: "boolean" },
      "no-python": { type: "boolean", default: false },
    },
  });
  const int = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`--${name} must be a whole number ≥ 1: got ${JSON.stringify(v)}`);
    }
    return n;
  };
  const started = Date.now();
  const { results, verdicts, settings } = await runBench({
    quick: values.quick,
    endpoint: values.endpoint,
    rounds: int("rounds", values.rounds),
    roundMs: int("round-ms", values["round-ms"]),
    skipThroughput: values["skip-throughput"],
    python: values["no-python"] ? false : values.python,
    log: (line) => console.error(line),
  });
  const peers = peerRows(results);
  if (peers.length > 0) {
    console.log("\nAt 16 in flight, 200 distinct keys (medians):");
    for (const line of peerTable(peers)) console.log(`  ${line}`);
  }
  console.log("\nGoals:");
  for (const line of verdictLines(verdicts)) console.log(`  ${line}`);
  const write = values.write ?? (!values.quick && !values["no-write"]);
  if (write) {
    const command = ["deno task bench", ...Deno.args].join(" ");
    const markdown = renderMarkdown(results, verdicts, {
      command,
      date: new Date().toISOString().slice(0, 10),
      environment: `Deno ${Deno.version.deno}, DynamoDB Local ${DYNAMODB_LOCAL_VERSION}, ` +
        `${availableParallelism()} cores, ${((Date.now() - started) / 1000).toFixed(0)} s`,
      settings,
    });
    await Deno.writeTextFile(values.out, markdown);
    // Keep the file as `deno fmt` would write it (tables aligned), so `deno fmt --check` passes.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", values.out] }).output();
    console.log(`\nWrote ${values.out}`);
  }
  const missed = verdicts.filter((v) => v.met === false).length;
  console.log(missed === 0 ? "\nEvery judged goal met." : `\n${missed} goal(s) missed.`);
  return missed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
