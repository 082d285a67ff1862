/**
 * The benchmark's goals and their verdicts (met, missed, or not judged in a quick run), among
 * them issue 13's (a write engine at the price of a plain write), and the table of every
 * contender of the main throughput case.
 *
 * @module
 */

import { billedWcu, type CostRow, goalMet } from "./bench_cost.ts";
import { median, type RoundStats, type ThroughputCase } from "./bench_throughput.ts";
import type { BenchResults, Verdict } from "./bench_report.ts";

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
  if (r.hot) {
    const { off, on } = r.hot;
    const errors = (h: typeof on) =>
      Object.values(h.errorsReachingCallers).reduce((a, b) => a + b, 0);
    const ceiling = on.setting.wcuPerItemPerSecond;
    out.push({
      goal: `hot project at ${ceiling} WCU/s per item, batches on: admitted per second`,
      target: `≥ ${20 * ceiling} (20× one item's ceiling)`,
      measured: `${on.admittedPerSecond.toFixed(0)} (batches off: ${
        off.admittedPerSecond.toFixed(0)
      })`,
      met: on.admittedPerSecond >= 20 * ceiling,
    });
    out.push({
      goal: "hot project, batches on: DynamoDB writes per admitted request",
      target: "≤ 0.2",
      measured: on.writeCallsPerAdmitted.toFixed(3),
      met: on.writeCallsPerAdmitted <= 0.2,
    });
    out.push({
      goal: "hot project: over-admission (items' own counts vs capacity + refill and vs callers)",
      target: "0",
      measured: `batches on ${on.overAdmission}, off ${off.overAdmission}`,
      met: on.overAdmission === 0 && off.overAdmission === 0,
    });
    out.push({
      goal: "hot project, batches on: throttling errors reaching callers (fail closed)",
      target: "0",
      measured: `${errors(on)} (batches off, over the ceiling: ${errors(off)})`,
      met: errors(on) === 0,
    });
    if (r.hot.shards) {
      const sh = r.hot.shards;
      const c = sh.setting.wcuPerItemPerSecond;
      out.push({
        goal: `one hot key on 16 shards, no batches, ${c} WCU/s per item: admitted per second`,
        target: `≥ ${8 * c} (8× one item's ceiling)`,
        measured: `${sh.admittedPerSecond.toFixed(0)} (over-admission ${sh.overAdmission}, errors ${
          errors(sh)
        })`,
        met: sh.admittedPerSecond >= 8 * c && sh.overAdmission === 0,
      });
    }
  }
  return out;
}

/**
 * The goals of issue 13, in the order of its table.
 *
 * @example
 * ```ts ignore
 * const vs = issue13Verdicts(results, mainCase(results.throughput), [], true);
 * ```
 */
export function issue13Verdicts(
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
      measured: `${r.cpu.acquireUs.toFixed(0)} µs with the limiter's own client (of which its ` +
        `transport ${r.cpu.sdkUs.toFixed(0)} µs); ${r.cpu.sdkAcquireUs.toFixed(0)} µs through a ` +
        "client of your own (the AWS SDK)",
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
      goal:
        "esbuild bundle of `import { RateLimiter }` (minified, platform node, ES module builds)",
      target: `≤ ${BUNDLE_GOAL_BYTES / 1000} KB`,
      measured: `${(r.bundle.bytes / 1000).toFixed(0)} KB` +
        (r.bundle.mainFirstBytes === undefined
          ? ""
          : ` (${
            (r.bundle.mainFirstBytes / 1000).toFixed(0)
          } KB with esbuild's default main-first fields)`),
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
    row("zae-limiter on a table without indexes (diagnostic)", (x) => x.bare),
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

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}
