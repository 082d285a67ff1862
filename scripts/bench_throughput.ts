/**
 * Throughput: zae-limiter against rate-limiter-flexible's `RateLimiterDynamo` (and, in the main
 * case, the Python zae-limiter and a plain conditional write) on the same DynamoDB Local, in
 * rotating fixed-duration rounds (the absolute numbers on a shared machine are noise; the ratio
 * per round and its median are the figures). The over-admission check lives in
 * `bench_overadmission.ts`.
 *
 * @module
 */

import process from "node:process";
import { readFileSync } from "node:fs";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import type { RateLimiterDynamo } from "rate-limiter-flexible";
import { Limit, RateLimiter } from "../mod.ts";
import { closeLeanTransport, useLeanTransport } from "../src/transport/lean.ts";
import { Meter } from "./meter.ts";
import { benchClient } from "./bench_clients.ts";
import { makeFlexible } from "./bench_cost.ts";
import { tableDefinition } from "../src/repository.ts";
import { plainWrite, PythonPeer } from "./bench_peers.ts";

/** Which keys a round spreads its requests over. */
export type KeySet = "distinct" | "hot";

/** One library's part of one round. */
export interface RoundStats {
  /** Requests completed (admitted). */
  requests: number;
  /** Requests that failed (refused or unavailable): should be 0 with these limits. */
  errors: number;
  /** Wall time of the round, s. */
  seconds: number;
  /** Requests per second. */
  perSecond: number;
  /** DynamoDB calls per request. */
  callsPerRequest: number;
  /** Calls that failed a condition, per request (retries for zae-limiter). */
  failedPerRequest: number;
  /** Median latency, ms. */
  p50Ms: number;
  /** 99th percentile latency, ms. */
  p99Ms: number;
  /** This process's CPU time per request (user + system), µs. */
  clientCpuUs: number;
  /** DynamoDB Local's CPU time per request, µs (`NaN` when its process is not known). */
  serverCpuUs: number;
}

/** Every contender's results for one round, and the ratios. */
export interface Round {
  /** zae-limiter. */
  ours: RoundStats;
  /** rate-limiter-flexible. */
  theirs: RoundStats;
  /** ours.perSecond / theirs.perSecond. */
  ratio: number;
  /** The plain conditional GCRA write (main case only). */
  plain?: RoundStats;
  /**
   * zae-limiter on a table without its three indexes (main case only): a diagnostic of what
   * DynamoDB Local charges every write for the table's indexes (docs/design.md, "Throughput on
   * DynamoDB Local").
   */
  bare?: RoundStats;
  /** The Python zae-limiter 0.17.0 (main case only, when it runs). */
  python?: RoundStats;
  /** ours.perSecond / python.perSecond. */
  pythonRatio?: number;
}

/** Every round of one (concurrency, key set) case. */
export interface ThroughputCase {
  /** Requests in flight. */
  concurrency: number;
  /** Distinct keys or one hot key. */
  keys: KeySet;
  /** Whether zae-limiter's table had its stream on (see {@link ThroughputOptions.streamCase}). */
  stream: boolean;
  /** Simulated network round trip added to every call of both libraries, ms (0: loopback). */
  latencyMs: number;
  /** The rounds, in order. */
  rounds: Round[];
  /** Median of the per-round ratios. */
  medianRatio: number;
  /** Median of the per-round ratios against the Python peer, when it ran. */
  medianPythonRatio?: number;
}

/** Options of {@link measureThroughput}. */
export interface ThroughputOptions {
  /** DynamoDB (Local) endpoint. */
  endpoint: string;
  /** Requests in flight per case. @default [1, 16, 64] */
  concurrency?: number[];
  /** Rounds per case (each runs both libraries). @default 3 */
  rounds?: number;
  /** Duration of one library's part of a round, ms. @default 2000 */
  roundMs?: number;
  /** Distinct keys. @default 200 */
  distinctKeys?: number;
  /**
   * Also run 16 in flight on distinct keys against the full table, stream on. The other cases
   * use the same table without its stream: DynamoDB Local writes stream records synchronously
   * (about 4× the cost of a write here), DynamoDB writes them asynchronously, and
   * rate-limiter-flexible's table has none. @default true
   */
  streamCase?: boolean;
  /**
   * The DynamoDB Local process, to read its CPU time from `/proc` (Linux): on a machine where the
   * emulator and the client share the cores, CPU per request is steadier than requests per second.
   */
  serverPid?: number;
  /**
   * Also run these in-flight counts on distinct keys with a simulated network round trip of
   * `latencyMs` added to every call of both libraries: over loopback a call takes well under a
   * millisecond of network, against DynamoDB several. @default [1, 16]
   */
  latencyConcurrency?: number[];
  /** The simulated round trip of those cases, ms; 0 skips them. @default 3 */
  latencyMs?: number;
  /**
   * Warm-up rounds (each library, 16 in flight, `roundMs` each) before the measured ones: the
   * emulator's JIT compiles each library's path, which costs CPU while it happens. @default 2
   */
  warmupRounds?: number;
  /**
   * The venv Python with zae-limiter 0.17.0 (see `ensurePythonPeer`): runs it in the main case
   * (16 in flight, distinct keys) as a third library. @default not run
   */
  python?: string;
  /** Run the plain-write baseline in the main case. @default true */
  plainBaseline?: boolean;
  /** Run zae-limiter on a table without indexes in the main case (a diagnostic). @default true */
  bareTable?: boolean;
  /**
   * In-flight count of the main case (distinct keys, no stream, no added latency), the one case
   * where the plain write and the Python peer run too. @default 16
   */
  peersConcurrency?: number;
  /** Called after each round, for progress output. */
  onRound?: (
    c: {
      concurrency: number;
      keys: KeySet;
      stream: boolean;
      latencyMs: number;
      round: number;
      result: Round;
    },
  ) => void;
}

/** A request of one library: resolves when admitted, throws when not. */
type Request = (key: string) => Promise<void>;

/** The contenders of a round. */
type Who = "ours" | "theirs" | "plain" | "python" | "bare";

// Limits high enough that every request is admitted: we measure the cost of admitted requests.
const BIG = [Limit.perMinute("rpm", 10_000_000), Limit.perMinute("tpm", 10_000_000_000)];

/**
 * Runs the alternating rounds.
 *
 * @example
 * ```ts ignore
 * const cases = await measureThroughput({ endpoint: "http://127.0.0.1:8000", rounds: 1 });
 * ```
 */
export async function measureThroughput(options: ThroughputOptions): Promise<ThroughputCase[]> {
  const {
    endpoint,
    concurrency = [1, 16, 64],
    rounds = 3,
    roundMs = 2_000,
    distinctKeys = 200,
    streamCase = true,
    serverPid,
    latencyConcurrency = [1, 16],
    latencyMs = 3,
    warmupRounds = 2,
    python,
    plainBaseline = true,
    bareTable = true,
    peersConcurrency = 16,
    onRound,
  } = options;
  const latency = { ms: 0 };
  const serverCpuMs = serverPid === undefined ? () => NaN : () => processCpuMs(serverPid);
  const suffix = Date.now().toString(36);
  const ourClient = benchClient(endpoint, { latency });
  const theirClient = benchClient(endpoint, { latency });
  const plainClient = benchClient(endpoint, { latency });
  const ourMeter = new Meter(ourClient);
  // This library's hot-path calls go through its lean transport and its socket sender, as with a
  // client it makes itself; the meter wraps that sender.
  useLeanTransport(ourClient, { sender: ourMeter.sender(latency) });
  const theirMeter = new Meter(theirClient);
  const plainMeter = new Meter(plainClient);
  let pythonPeer: PythonPeer | undefined;
  // rate-limiter-flexible has no deadline; a long one here too, so a slow round is not an error.
  const timeoutMs = 30_000;
  const limiter = new RateLimiter({
    tableName: `bench_tp_${suffix}`,
    client: ourClient,
    timeoutMs,
  });
  const streamed = new RateLimiter({
    tableName: `bench_tp_s_${suffix}`,
    client: ourClient,
    timeoutMs,
  });
  // The same library, client and meter on a table with the same keys and no index.
  const bare = new RateLimiter({ tableName: `bench_tp_b_${suffix}`, client: ourClient, timeoutMs });
  try {
    await ourClient.send(
      new CreateTableCommand({
        ...tableDefinition(limiter.tableName),
        StreamSpecification: undefined,
      }),
    );
    if (streamCase) await streamed.createTable();
    if (bareTable) {
      const def = tableDefinition(bare.tableName);
      await ourClient.send(
        new CreateTableCommand({
          ...def,
          StreamSpecification: undefined,
          GlobalSecondaryIndexes: undefined,
          AttributeDefinitions: def.AttributeDefinitions!.filter((a) =>
            a.AttributeName === "PK" || a.AttributeName === "SK"
          ),
        }),
      );
    }
    const flexible: RateLimiterDynamo = await makeFlexible(theirClient, {
      tableName: `bench_tp_rlf_${suffix}`,
      points: 1_000_000_000,
      duration: 600,
    });
    const oursOn = (lim: RateLimiter): Request => async (key) => {
      const lease = await lim.acquire({
        entityId: key,
        resource: "gpt-4",
        limits: BIG,
        consume: { rpm: 1, tpm: 500 },
      });
      await lease.commit();
    };
    const ours = oursOn(limiter);
    const theirs: Request = async (key) => {
      await flexible.consume(key, 1);
    };
    const keys = Array.from({ length: distinctKeys }, (_, i) => `key-${i}`);
    const oursStreamed = oursOn(streamed);
    // First use of every key (and the metadata read of each entity) before any round, then
    // alternating warm-up rounds: the emulator's JIT compiles each library's path.
    // The plain write's items sit in zae-limiter's table (same schema and indexes), under keys
    // of their own.
    const plain: Request | undefined = plainBaseline
      ? plainWrite(plainClient, limiter.tableName)
      : undefined;
    const oursBare: Request | undefined = bareTable ? oursOn(bare) : undefined;
    const all = [
      ours,
      theirs,
      ...(streamCase ? [oursStreamed] : []),
      ...(plain ? [plain] : []),
      ...(oursBare ? [oursBare] : []),
    ];
    for (const request of all) {
      for (const k of [...keys, "hot"]) await request(k);
    }
    if (python) {
      pythonPeer = await PythonPeer.start({
        python,
        endpoint,
        table: `bench-py-${suffix}`,
        keys: distinctKeys,
      });
    }
    const pythonRound = async (n: number, ms: number, hot: boolean): Promise<RoundStats> => {
      const server0 = serverCpuMs();
      const r = await pythonPeer!.round({ concurrency: n, seconds: ms / 1000, hot });
      const server = serverCpuMs() - server0;
      return {
        requests: r.requests,
        errors: r.errors,
        seconds: r.seconds,
        perSecond: r.perSecond,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        clientCpuUs: r.clientCpuUs,
        serverCpuUs: (server * 1000) / Math.max(1, r.requests + r.errors),
        callsPerRequest: NaN,
        failedPerRequest: NaN,
      };
    };
    for (let w = 0; w < warmupRounds; w++) {
      for (const request of all) {
        await runRound(request, keys, peersConcurrency, roundMs, serverCpuMs);
      }
      if (pythonPeer) await pythonRound(peersConcurrency, roundMs, false);
    }
    const plan: { keys: KeySet; n: number; stream: boolean; latencyMs: number }[] = [];
    for (const keySet of ["distinct", "hot"] as const) {
      for (const n of concurrency) plan.push({ keys: keySet, n, stream: false, latencyMs: 0 });
    }
    if (streamCase) plan.push({ keys: "distinct", n: 16, stream: true, latencyMs: 0 });
    if (latencyMs > 0) {
      for (const n of latencyConcurrency) {
        plan.push({ keys: "distinct", n, stream: false, latencyMs });
      }
    }
    const cases: ThroughputCase[] = [];
    {
      for (const { keys: keySet, n, stream, latencyMs: ms } of plan) {
        latency.ms = ms;
        const roundKeys = keySet === "distinct" ? keys : ["hot"];
        const mine = stream ? oursStreamed : ours;
        const main = keySet === "distinct" && n === peersConcurrency && !stream && ms === 0;
        const who: Who[] = ["ours", "theirs"];
        if (main && plain) who.push("plain");
        if (main && oursBare) who.push("bare");
        if (main && pythonPeer) who.push("python");
        const list: Round[] = [];
        for (let r = 0; r < rounds; r++) {
          // Rotate which library goes first, so a drift of the machine hits all alike.
          const order = who.map((_, i) => who[(i + r) % who.length]);
          const got: Partial<Record<Who, RoundStats>> = {};
          for (const who of order) {
            if (who === "python") {
              got.python = await pythonRound(n, roundMs, keySet === "hot");
              continue;
            }
            const meter = who === "ours" || who === "bare"
              ? ourMeter
              : who === "theirs"
              ? theirMeter
              : plainMeter;
            meter.reset();
            const stats = await runRound(
              who === "ours"
                ? mine
                : who === "theirs"
                ? theirs
                : who === "bare"
                ? oursBare!
                : plain!,
              roundKeys,
              n,
              roundMs,
              serverCpuMs,
            );
            const failed = meter.calls.filter((c) => c.failed).length;
            got[who] = {
              ...stats,
              callsPerRequest: meter.count / Math.max(1, stats.requests + stats.errors),
              failedPerRequest: failed / Math.max(1, stats.requests + stats.errors),
            };
          }
          const result: Round = {
            ours: got.ours!,
            theirs: got.theirs!,
            ratio: got.ours!.perSecond / got.theirs!.perSecond,
            ...(got.plain ? { plain: got.plain } : {}),
            ...(got.bare ? { bare: got.bare } : {}),
            ...(got.python
              ? { python: got.python, pythonRatio: got.ours!.perSecond / got.python.perSecond }
              : {}),
          };
          list.push(result);
          onRound?.({ concurrency: n, keys: keySet, stream, latencyMs: ms, round: r + 1, result });
        }
        cases.push({
          concurrency: n,
          keys: keySet,
          stream,
          latencyMs: ms,
          rounds: list,
          medianRatio: median(list.map((x) => x.ratio)),
          ...(list.some((x) => x.pythonRatio !== undefined)
            ? { medianPythonRatio: median(list.flatMap((x) => x.pythonRatio ?? [])) }
            : {}),
        });
      }
    }
    return cases;
  } finally {
    await limiter.close();
    await streamed.close();
    await bare.close();
    await pythonPeer?.close();
    closeLeanTransport(ourClient);
    ourClient.destroy();
    theirClient.destroy();
    plainClient.destroy();
  }
}

/** `n` workers send requests over `keys` (round robin) for `ms`; each finishes its last one. */
async function runRound(
  request: Request,
  keys: string[],
  n: number,
  ms: number,
  serverCpuMs: () => number,
): Promise<Omit<RoundStats, "callsPerRequest" | "failedPerRequest">> {
  let next = 0, requests = 0, errors = 0;
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  const server0 = serverCpuMs();
  const start = performance.now();
  const until = start + ms;
  const worker = async () => {
    while (performance.now() < until) {
      const key = keys[next++ % keys.length];
      const t0 = performance.now();
      try {
        await request(key);
        requests++;
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: n }, worker));
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const server = serverCpuMs() - server0;
  const done = Math.max(1, requests + errors);
  latencies.sort((a, b) => a - b);
  return {
    requests,
    errors,
    seconds,
    perSecond: requests / seconds,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    clientCpuUs: (cpu.user + cpu.system) / done,
    serverCpuUs: (server * 1000) / done,
  };
}

/** CPU time (user + system) of a Linux process, ms; `NaN` where `/proc` cannot tell. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime (fields 14 and 15 of stat), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Median of a list (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export { checkOverAdmission, type OverAdmission } from "./bench_overadmission.ts";
