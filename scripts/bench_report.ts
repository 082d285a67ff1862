/**
 * The benchmark's verdicts (each goal of the issue, met or missed) and its report as Markdown.
 *
 * @module
 */

import { billedWcu, type CostRow, goalMet } from "./bench_cost.ts";
import type { CpuResult } from "./bench_cpu.ts";
import type { OverAdmission, ThroughputCase } from "./bench_throughput.ts";
import type { Cost } from "./bench_trace.ts";

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
  for (const row of r.costs) {
    if (!row.goal) continue;
    out.push({
      goal: row.operation,
      target: `≤ ${row.goal.roundTrips} round trips, ≤ ${row.goal.wcu} WCU`,
      measured: `${fmt(row.cost.roundTrips)} round trips, ${fmt(billedWcu(row.cost))} WCU`,
      met: goalMet(row),
    });
  }
  const main = r.throughput.find((c) =>
    c.concurrency === 16 && c.keys === "distinct" && !c.stream && c.latencyMs === 0
  );
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

/** Console lines: one per goal. */
export function verdictLines(vs: Verdict[]): string[] {
  return vs.map((v) =>
    `${
      v.met === undefined ? "NOT JUDGED" : v.met ? "MET   " : "MISSED"
    }  ${v.goal}: ${v.measured} (goal: ${v.target})`
  );
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
