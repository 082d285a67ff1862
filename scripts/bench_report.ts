/**
 * The benchmark's verdicts (each goal of the issue, met or missed) and its report as Markdown.
 *
 * @module
 */

import { billedWcu, type CostRow, goalMet } from "./bench_cost.ts";
import type { CpuResult } from "./bench_cpu.ts";
import type { OverAdmission, RoundStats, ThroughputCase } from "./bench_throughput.ts";
import type { Cost } from "./bench_trace.ts";
import type { BundleSize, ConfigExpiry, RequestBody } from "./bench_probe.ts";

/** Everything one run measured. */
export interface BenchResults {
  /** Cost per operation. */
  costs: CostRow[];
  /** Throughput cases (empty when skipped). */
  throughput: ThroughputCase[];
  /** Two processes on one small bucket. */
  overAdmission?: OverAdmission;
  /** Client CPU per acquire. */
  cpu?: CpuResult;
  /** esbuild bundle of `import { RateLimiter }`. */
  bundle?: BundleSize;
  /** Request body of a warm 2-limit acquire. */
  body?: RequestBody;
  /** A warm acquire whose cached entity config ran out. */
  configExpiry?: ConfigExpiry;
  /** Why the Python peer did not run, when it did not (e.g. a quick run). */
  pythonSkipped?: string;
}

/** One goal's verdict. */
export interface Verdict {
  /** The goal. */
  goal: string;
  /** The target, as text. */
  target: string;
  /** What was measured, as text. */
  measured: string;
  /** Met or missed; `undefined` when not judged (e.g. a throughput goal in a quick run). */
  met: boolean | undefined;
}

/** Minimum median ratio of throughput at 16 in flight on distinct keys. */
export const THROUGHPUT_GOAL = 1.5;
/** Minimum median ratio of throughput against the Python zae-limiter 0.17.0, same settings. */
export const PYTHON_THROUGHPUT_GOAL = 2;
/** DynamoDB Local CPU per acquire, at most this many times the plain write's. */
export const SERVER_CPU_GOAL = 1.2;
/** Client CPU per warm 2-limit acquire, µs. */
export const CLIENT_CPU_GOAL_US = 150;
/** Request body of a warm 2-limit acquire, bytes (1 KB = 1,000 bytes). */
export const BODY_GOAL_BYTES = 1_000;
/** Minified bundle of `import { RateLimiter }`, bytes (600 KB = 600,000 bytes). */
export const BUNDLE_GOAL_BYTES = 600_000;

/**
 * Judges every goal.
 *
 * @example
 * ```ts ignore
 * for (const v of verdicts(results, { judgeThroughput: true })) console.log(v.goal, v.met);
 * ```
 */
export function verdicts(r: BenchResults, options: { judgeThroughput: boolean }): Verdict[] {
  const out: Verdict[] = [];
  const costGoals = r.costs.filter((row) => row.goal);
  for (const row of r.costs) {
    if (!row.goal) continue;
    out.push({
      goal: row.operation,
      target: `≤ ${row.goal.roundTrips} round trips, ≤ ${row.goal.wcu} WCU`,
      measured: `${fmt(row.cost.roundTrips)} round trips, ${fmt(billedWcu(row.cost))} WCU`,
      met: goalMet(row),
    });
  }
  const main = mainCase(r.throughput);
  if (main) {
    out.push({
      goal: "throughput at 16 in flight, distinct keys, vs rate-limiter-flexible",
      target: `median ratio ≥ ${THROUGHPUT_GOAL}×`,
      measured: `${main.medianRatio.toFixed(2)}× (rounds: ${
        main.rounds.map((x) => x.ratio.toFixed(2)).join(", ")
      })`,
      met: options.judgeThroughput ? main.medianRatio >= THROUGHPUT_GOAL : undefined,
    });
  }
  out.push(...issue13Verdicts(r, main, costGoals, options.judgeThroughput));
  const rejection = r.costs.find((c) => c.operation.startsWith("repeated rejection"));
  if (rejection) {
    out.push({
      goal: "rejections cost nothing once the process knows the bucket is empty",
      target: "0 calls per rejection",
      measured: `${fmt(rejection.cost.calls)} calls` +
        (r.cpu ? `, ${r.cpu.denyUs.toFixed(0)} µs of client CPU` : ""),
      met: rejection.cost.calls === 0,
    });
  }
  if (r.overAdmission) {
    const o = r.overAdmission;
    out.push({
      goal: "no over-admission: 2 processes × 32 in flight on one bucket of 100/min",
      target: "admitted ≤ capacity + refill over the run",
      measured:
        `${o.admitted} admitted ≤ ${o.allowed} allowed (${o.refused} refused, ${o.errors} errors)`,
      // A run that never emptied the bucket would prove nothing.
      met: o.admitted <= o.allowed && o.errors === 0 && o.refused > 0,
    });
  }
  const errors = r.throughput.reduce(
    (a, c) => a + c.rounds.reduce((b, x) => b + x.ours.errors, 0),
    0,
  );
  if (r.throughput.length > 0) {
    out.push({
      goal: "no failed request in the throughput rounds",
      target: "0",
      measured: String(errors),
      met: errors === 0,
    });
  }
  const hot1 = r.throughput.find((c) => c.keys === "hot" && c.concurrency === 1);
  const hotMany = r.throughput.filter((c) => c.keys === "hot" && c.concurrency > 1);
  if (hot1) {
    const retries = Math.max(...hot1.rounds.map((x) => x.ours.failedPerRequest));
    out.push({
      goal: "one hot key, 1 in flight: no retries (no contention, none needed)",
      target: "0 retries per request",
      measured: `${retries.toFixed(3)} per request`,
      met: retries === 0,
    });
  }
  if (hotMany.length > 0) {
    const worst = Math.max(...hotMany.flatMap((c) => c.rounds.map((x) => x.ours.failedPerRequest)));
    out.push({
      goal: "one hot key, many in flight: at most one retry per request (a failed guess, " +
        "corrected by the item the failure returns)",
      target: "≤ 1 retry per request",
      measured: `${worst.toFixed(2)} per request (worst round; ${
        hotMany.map((c) =>
          `${c.concurrency} in flight: ${
            median(c.rounds.map((x) => x.ours.failedPerRequest)).toFixed(2)
          }`
        ).join(", ")
      })`,
      met: worst <= 1,
    });
  }
  return out;
}

/** The goals of issue 13 (the light write engine), in the order of its table. */
function issue13Verdicts(
  r: BenchResults,
  main: ThroughputCase | undefined,
  costGoals: CostRow[],
  judgeTimings: boolean,
): Verdict[] {
  const out: Verdict[] = [];
  const med = (f: (x: ThroughputCase["rounds"][number]) => number | undefined) =>
    main ? median(main.rounds.flatMap((x) => f(x) ?? [])) : NaN;
  const judged = (ok: boolean, measurable = true) => judgeTimings && measurable ? ok : undefined;
  const notRun = r.pythonSkipped ? `not run (${r.pythonSkipped})` : "not run";
  if (main) {
    const ours = med((x) => x.ours.serverCpuUs), plain = med((x) => x.plain?.serverCpuUs);
    const ratio = ours / plain;
    out.push({
      goal: "DynamoDB Local CPU per acquire vs the plain-write baseline (16 in flight, 200 keys)",
      target: `≤ ${SERVER_CPU_GOAL}×`,
      measured: Number.isFinite(ratio)
        ? `${ratio.toFixed(2)}× (${ours.toFixed(0)} vs ${plain.toFixed(0)} µs)`
        : "not measured (no plain rounds, or no /proc)",
      met: judged(ratio <= SERVER_CPU_GOAL, Number.isFinite(ratio)),
    });
    const pyRatio = main.medianPythonRatio;
    out.push({
      goal: "throughput vs Python zae-limiter 0.17.0, 16 in flight, 200 keys",
      target: `median ratio ≥ ${PYTHON_THROUGHPUT_GOAL}×`,
      measured: pyRatio === undefined
        ? notRun
        : `${pyRatio.toFixed(2)}× (rounds: ${
          main.rounds.flatMap((x) => x.pythonRatio ?? []).map((x) => x.toFixed(2)).join(", ")
        })`,
      // A full run that could not run the peer misses the goal rather than hiding it.
      met: judgeTimings ? (pyRatio ?? 0) >= PYTHON_THROUGHPUT_GOAL : undefined,
    });
    const p50 = med((x) => x.ours.p50Ms);
    const rlf = med((x) => x.theirs.p50Ms), py = med((x) => x.python?.p50Ms);
    out.push({
      goal: "p50 latency, 16 in flight, below both peers",
      target: "below rate-limiter-flexible's and Python's",
      measured: `${p50.toFixed(1)} ms vs ${rlf.toFixed(1)} ms (rlf), ${
        Number.isFinite(py) ? `${py.toFixed(1)} ms` : notRun
      } (Python)`,
      met: judgeTimings ? p50 < rlf && Number.isFinite(py) && p50 < py : undefined,
    });
  }
  if (r.cpu) {
    out.push({
      goal: "client CPU per acquire, warm, 2 limits",
      target: `≤ ${CLIENT_CPU_GOAL_US} µs`,
      measured: `${r.cpu.acquireUs.toFixed(0)} µs (of which the AWS SDK ${
        r.cpu.sdkUs.toFixed(0)
      } µs)`,
      met: judged(r.cpu.acquireUs <= CLIENT_CPU_GOAL_US),
    });
  }
  if (r.body) {
    out.push({
      goal: "request body of a warm 2-limit acquire",
      target: `≤ ${BODY_GOAL_BYTES / 1000} KB`,
      measured: `${r.body.bytes} bytes (${r.body.command}, ${r.body.calls} call)`,
      met: r.body.bytes <= BODY_GOAL_BYTES && r.body.calls === 1,
    });
  }
  if (costGoals.length > 0) {
    const missed = costGoals.filter((row) => goalMet(row) !== true);
    out.push({
      goal: "every cost goal of this page",
      target: "still met",
      measured: missed.length === 0
        ? `${costGoals.length} of ${costGoals.length} met`
        : `missed: ${missed.map((row) => row.operation).join("; ")}`,
      met: missed.length === 0,
    });
  }
  if (r.configExpiry) {
    const e = r.configExpiry;
    out.push({
      goal: "warm acquire of an entity whose config cache ran out (useStoredLimits)",
      target: "1 round trip",
      measured: `${e.roundTrips} round trip(s); ${e.calls} call(s) in all (${
        Object.entries(e.commands).map(([k, v]) => `${k} × ${v}`).join(", ")
      })`,
      met: e.roundTrips === 1,
    });
  }
  if (r.bundle) {
    out.push({
      goal: "esbuild bundle of `import { RateLimiter }` (minified, platform node)",
      target: `≤ ${BUNDLE_GOAL_BYTES / 1000} KB`,
      measured: `${(r.bundle.bytes / 1000).toFixed(0)} KB`,
      met: r.bundle.bytes <= BUNDLE_GOAL_BYTES,
    });
  }
  return out;
}

/** The main case: 16 in flight on distinct keys, no stream, no added latency. */
export function mainCase(cases: ThroughputCase[]): ThroughputCase | undefined {
  return cases.find((c) =>
    c.concurrency === 16 && c.keys === "distinct" && !c.stream && c.latencyMs === 0
  );
}

/** Console lines: one per goal. */
export function verdictLines(vs: Verdict[]): string[] {
  return vs.map((v) =>
    `${
      v.met === undefined ? "NOT JUDGED" : v.met ? "MET   " : "MISSED"
    }  ${v.goal}: ${v.measured} (goal: ${v.target})`
  );
}

/** One contender's medians in the main case (16 in flight, 200 distinct keys). */
export interface PeerRow {
  /** Who. */
  name: string;
  /** Median requests per second. */
  perSecond: number;
  /** Median of p50 latency, ms. */
  p50Ms: number;
  /** Median of p99 latency, ms. */
  p99Ms: number;
  /** Median client CPU per request, µs (its own process). */
  clientCpuUs: number;
  /** Median DynamoDB Local CPU per request, µs. */
  serverCpuUs: number;
  /** Failed requests over all rounds. */
  errors: number;
  /** Rounds it ran. */
  rounds: number;
}

/**
 * The main case's contenders side by side: zae-limiter, rate-limiter-flexible, the plain write
 * and the Python zae-limiter (those that ran).
 *
 * @example
 * ```ts ignore
 * for (const row of peerRows(results)) console.log(row.name, row.perSecond);
 * ```
 */
export function peerRows(r: BenchResults): PeerRow[] {
  const main = mainCase(r.throughput);
  if (!main) return [];
  type Pick = (x: ThroughputCase["rounds"][number]) => RoundStats | undefined;
  const row = (name: string, pick: Pick): PeerRow | undefined => {
    const stats = main.rounds.flatMap((x) => pick(x) ?? []);
    if (stats.length === 0) return undefined;
    const m = (f: (s: RoundStats) => number) => median(stats.map(f));
    return {
      name,
      perSecond: m((s) => s.perSecond),
      p50Ms: m((s) => s.p50Ms),
      p99Ms: m((s) => s.p99Ms),
      clientCpuUs: m((s) => s.clientCpuUs),
      serverCpuUs: m((s) => s.serverCpuUs),
      errors: stats.reduce((a, s) => a + s.errors, 0),
      rounds: stats.length,
    };
  };
  return [
    row("zae-limiter (this library)", (x) => x.ours),
    row("rate-limiter-flexible 11.4.0", (x) => x.theirs),
    row("Python zae-limiter 0.17.0", (x) => x.python),
    row("plain conditional GCRA write (baseline)", (x) => x.plain),
  ].filter((x): x is PeerRow => x !== undefined);
}

/** The peer rows as a Markdown table (also printed by the bench). */
export function peerTable(rows: PeerRow[]): string[] {
  const lines = [
    "| contender | req/s | p50 ms | p99 ms | client CPU µs / req | DynamoDB Local CPU µs / req | errors |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const x of rows) {
    lines.push(
      `| ${x.name} | ${x.perSecond.toFixed(0)} | ${x.p50Ms.toFixed(1)} | ${x.p99Ms.toFixed(1)} | ${
        x.clientCpuUs.toFixed(0)
      } | ${Number.isNaN(x.serverCpuUs) ? "?" : x.serverCpuUs.toFixed(0)} | ${x.errors} |`,
    );
  }
  return lines;
}

/** Context printed at the top of the report. */
export interface ReportContext {
  /** The command that produced the figures. */
  command: string;
  /** ISO date. */
  date: string;
  /** Versions and machine, e.g. `Deno 2.9.6, DynamoDB Local 1.25.1, 2 cores`. */
  environment: string;
  /** Settings of the run, e.g. rounds and their duration. */
  settings: string;
}

/**
 * The Markdown of `docs/benchmarks.md`.
 *
 * @example
 * ```ts ignore
 * await Deno.writeTextFile("docs/benchmarks.md", renderMarkdown(results, verdicts(results, o), ctx));
 * ```
 */
export function renderMarkdown(r: BenchResults, vs: Verdict[], ctx: ReportContext): string {
  const lines: string[] = [];
  const p = (s = "") => lines.push(s);
  p("# Benchmarks");
  p();
  p(`Generated by \`${ctx.command}\` on ${ctx.date} (${ctx.environment}; ${ctx.settings}).`);
  p("Do not edit by hand: run the command again. `deno task bench --quick` is a short smoke run");
  p("that writes nothing.");
  p();
  p("## Goals");
  p();
  p("| goal | target | measured | verdict |");
  p("|---|---|---|---|");
  for (const v of vs) {
    p(`| ${v.goal} | ${v.target} | ${v.measured} | ${
      v.met === undefined ? "not judged" : v.met ? "**met**" : "**missed**"
    } |`);
  }
  p();
  p("## Cost per operation");
  p();
  p("Measured on DynamoDB Local with an SDK middleware that adds");
  p('`ReturnConsumedCapacity: "INDEXES"` to every call and counts calls and capacity');
  p("(`scripts/meter.ts`); another one times each call, and calls in flight at the same time count");
  p("as one round trip. Time is an injected clock, so these figures are the same on every run");
  p("(each row is the worst of its repeats). *WCU billed* adds 1 WCU per failed conditional write:");
  p("AWS bills those, DynamoDB Local reports nothing for them. Limits: 2 per bucket (`rpm`, `tpm`).");
  p();
  p(
    "| library | operation | round trips | calls | WCU reported (table + indexes) | of which indexes | failed conditions | WCU billed | RCU | calls made | note |",
  );
  p("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const row of r.costs) {
    const c = row.cost;
    p(`| ${row.library} | ${row.operation} | ${fmt(c.roundTrips)} | ${fmt(c.calls)} | ${
      fmt(c.wcu)
    } | ${fmt(c.indexWcu)} | ${fmt(c.failedConditions)} | ${fmt(billedWcu(c))} | ${fmt(c.rcu)} | ${
      commands(c)
    } | ${row.note ?? ""} |`);
  }
  p();
  p("For comparison, the Python zae-limiter needs 2 round trips on its normal path and 3 (with");
  p("4 WCU) for a cascaded request.");
  if (r.throughput.length > 0) {
    p();
    p("## Throughput against rate-limiter-flexible");
    p();
    p("Both libraries on the same DynamoDB Local, each with its own client (same settings: keep-alive,");
    p("up to 256 sockets), in alternating fixed-duration rounds (A/B, then B/A) after a warm-up");
    p("that made the first use of every key and ran each library for a few rounds (DynamoDB Local");
    p("runs with the JVM's default JIT, which compiles each library's path during the warm-up).");
    p("zae-limiter: `acquire` (2 limits) + `commit`;");
    p("rate-limiter-flexible: `RateLimiterDynamo.consume(key, 1)`. Limits are high enough that every");
    p("request is admitted. Absolute requests per second on a shared 2-core machine, where the");
    p("emulator and the client share the CPU, are noise; the ratio per round is the figure. CPU");
    p("per request (this process, and the DynamoDB Local process read from `/proc`) is the");
    p("steadier view of what each request costs such a machine.");
    p();
    p("zae-limiter's table is its full table (2 indexes) with the stream off, except in the row");
    p("marked *stream on*: DynamoDB Local writes stream records synchronously (in these runs about");
    p("4× the cost of a write), while DynamoDB writes them asynchronously, off the request's path;");
    p("rate-limiter-flexible's table has no stream and no index. Rows marked *+N ms per call* add");
    p("that delay before every call of both libraries, as a network would: over loopback a call");
    p("spends well under a millisecond on the network, against DynamoDB in a region a few.");
    p();
    p(
      "| in flight | keys | ratio per round | median ratio | zae-limiter req/s | rate-limiter-flexible req/s | zae-limiter calls / req | zae-limiter retries / req | rate-limiter-flexible calls / req | p50 latency ms (zae / rlf) | CPU µs / req, client + DynamoDB Local (zae / rlf) |",
    );
    p("|---|---|---|---|---|---|---|---|---|---|---|");
    for (const c of r.throughput) {
      const m = (f: (x: ThroughputCase["rounds"][number]) => number) => median(c.rounds.map(f));
      p(`| ${c.concurrency} | ${c.keys === "distinct" ? "200 distinct" : "1 hot"}${
        c.stream ? ", stream on" : ""
      }${c.latencyMs > 0 ? `, +${c.latencyMs} ms per call` : ""} | ${
        c.rounds.map((x) => x.ratio.toFixed(2)).join(", ")
      } | **${c.medianRatio.toFixed(2)}** | ${m((x) => x.ours.perSecond).toFixed(0)} | ${
        m((x) => x.theirs.perSecond).toFixed(0)
      } | ${m((x) => x.ours.callsPerRequest).toFixed(2)} | ${
        m((x) => x.ours.failedPerRequest).toFixed(2)
      } | ${m((x) => x.theirs.callsPerRequest).toFixed(2)} | ${
        m((x) => x.ours.p50Ms).toFixed(1)
      } / ${m((x) => x.theirs.p50Ms).toFixed(1)} | ${
        cpuPair(m((x) => x.ours.clientCpuUs), m((x) => x.ours.serverCpuUs))
      } / ${cpuPair(m((x) => x.theirs.clientCpuUs), m((x) => x.theirs.serverCpuUs))} |`);
    }
    p();
    const peers = peerRows(r);
    if (peers.length > 0) {
      p();
      p("### Every contender at 16 in flight, 200 distinct keys");
      p();
      p("Medians over the rounds of the case above, each contender in turn (the order rotates");
      p("from round to round). The Python zae-limiter 0.17.0 runs in its own process");
      p("(`scripts/bench_python.py`, in a venv the bench creates under");
      p("`~/.cache/zae-limiter/bench-venv`): `Repository.open` on a table it creates, its async");
      p("`RateLimiter.acquire(limits=..., consume=...)` as a context manager that commits on exit,");
      p("16 in flight in one event loop, with its aiobotocore pool widened to 256 connections like");
      p("the other clients (its default, 10, is fewer than 16). Its client CPU is its own process's.");
      p("The plain write is one conditional GCRA `UpdateItem` per request with the same two limits");
      p("and nothing else (no idempotency), on items of zae-limiter's table: what a write costs the");
      p("emulator. DynamoDB Local CPU per request is read from `/proc/<pid>/stat` around each round.");
      if (r.pythonSkipped) p(`The Python peer did not run: ${r.pythonSkipped}.`);
      p();
      for (const line of peerTable(peers)) p(line);
      p();
    }
    p("Each rate-limiter-flexible request in steady state is 2 sequential writes: a conditional");
    p("write that fails while the key's window is open, then an increment. A zae-limiter request");
    p("is one conditional write. On one hot key, requests of one process planned in the same");
    p("millisecond on a bucket that is (nearly) full all guess it idle; one wins, the others fail");
    p("and retry once with the state the failure returned (see docs/hot-keys.md). More than one");
    p("call per request on distinct keys is the entity metadata read (the requests name no");
    p("`cascade`), made again for each of the 200 entities when its 60 s cache runs out.");
  }
  if (r.overAdmission) {
    const o = r.overAdmission;
    p();
    p("## Over-admission");
    p();
    p("Two limiters with their own clients (two processes), 32 requests in flight each, on one bucket");
    p(`of 100 per minute for ${
      o.seconds.toFixed(1)
    } s: **${o.admitted} admitted** (the item's own count: ${o.stored}), at most ${o.allowed}`);
    p(`allowed (capacity plus refill over the run), ${o.refused} refused, ${o.errors} errors;`);
    p(`${o.callsPerRequest.toFixed(2)} calls and ${
      o.failedPerRequest.toFixed(2)
    } failed conditions`);
    p("per request (refusals included: a process refuses locally once it knows the bucket is empty).");
  }
  if (r.body || r.bundle || r.configExpiry) {
    p();
    p("## Request body, config expiry, bundle");
    p();
    if (r.body) {
      p(`- **Request body** of a warm 2-limit acquire + commit: ${r.body.bytes} bytes (one`);
      p(`  ${r.body.command}), captured at the SDK's \`finalizeRequest\` step, after serialisation.`);
    }
    if (r.configExpiry) {
      const e = r.configExpiry;
      p(`- **Config cache ran out**: a warm acquire with \`useStoredLimits: true\` after the`);
      p(`  ${e.ttlMs} ms \`limitsCacheTtlMs\` passed (injected clock and real time) waited for`);
      p(`  ${e.roundTrips} round trip(s) and made ${e.calls} call(s) in all (${
        Object.entries(e.commands).map(([k, v]) => `${k} × ${v}`).join(", ")
      }); a call made in the background after it returned is counted as a call, not a round trip.`);
    }
    if (r.bundle) {
      p(`- **Bundle**: esbuild (minified, platform node, ESM) of`);
      p(`  \`export { RateLimiter } from "./mod.ts"\`: ${(r.bundle.bytes / 1000).toFixed(0)} KB`);
      p(`  (1 KB = 1,000 bytes). Largest parts: ${
        r.bundle.largest.map((x) => `${x.name} ${(x.bytes / 1000).toFixed(0)} KB`).join(", ")
      }.`);
    }
  }
  if (r.cpu) {
    const c = r.cpu;
    p();
    p("## Client CPU per acquire");
    p();
    p("The DynamoDB client's transport is a stub that answers with a canned `ALL_NEW` item (a warm");
    p("bucket with room), so no time goes to the network or DynamoDB. The three are timed call by");
    p(`call, alternating, in 5 blocks of ${c.iterations} each (the quietest block is kept); wall time`);
    p("on a single thread, so roughly CPU time (GC included).");
    p();
    p("| measure | µs per call |");
    p("|---|---|");
    p(`| \`acquire\` + \`commit\` (2 limits, warm bucket) | ${c.acquireUs.toFixed(0)} |`);
    p(`| of which the AWS SDK (\`client.send\` of the same UpdateItem and answer) | ${
      c.sdkUs.toFixed(0)
    } (${(c.sdkShare * 100).toFixed(0)} %) |`);
    p(`| of which zae-limiter (the difference) | ${(c.acquireUs - c.sdkUs).toFixed(0)} (${
      ((1 - c.sdkShare) * 100).toFixed(0)
    } %) |`);
    p(`| a rejection served by the deny cache (no call) | ${c.denyUs.toFixed(0)} |`);
    p();
    p("The SDK's part is mostly request signing (SigV4 hashing), JSON serialisation and its");
    p("middleware stack; zae-limiter's part includes its deadline and retry wrapper around each call.");
  }
  p();
  return lines.join("\n");
}

function cpuPair(client: number, server: number): string {
  return Number.isNaN(server)
    ? `${client.toFixed(0)} + ?`
    : `${client.toFixed(0)} + ${server.toFixed(0)}`;
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}

function commands(c: Cost): string {
  const parts = Object.entries(c.commands).map(([k, v]) => `${k} × ${fmt(v)}`);
  return parts.length ? parts.join(", ") : "none";
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
