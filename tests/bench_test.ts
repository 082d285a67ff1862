import assert from "node:assert/strict";
import { billedWcu, type CostRow, goalMet, measureCosts } from "../scripts/bench_cost.ts";
import { measureCpu } from "../scripts/bench_cpu.ts";
import { renderMarkdown, verdicts } from "../scripts/bench_report.ts";
import { checkOverAdmission, measureThroughput, median } from "../scripts/bench_throughput.ts";
import { countWaves } from "../scripts/bench_trace.ts";
import { dynamoTest } from "./_dynamo.ts";

Deno.test("countWaves: overlapping calls are one round trip, sequential ones count each", () => {
  const call = (start: number, end: number) => ({ command: "UpdateItemCommand", start, end });
  assert.equal(countWaves([]), 0);
  assert.equal(countWaves([call(0, 5)]), 1);
  assert.equal(countWaves([call(0, 5), call(5, 9)]), 2);
  assert.equal(countWaves([call(0, 5), call(1, 6), call(2, 4)]), 1);
  // Order of recording does not matter; a call starting inside the wave joins it.
  assert.equal(countWaves([call(10, 12), call(0, 5), call(4, 11), call(13, 14)]), 2);
});

Deno.test("median: odd and even counts", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

dynamoTest("bench on DynamoDB Local (small sizes)", async (t, { ddb }) => {
  let rows: CostRow[] = [];
  await t.step("cost per operation: every goal of the issue is met", async () => {
    rows = await measureCosts({ endpoint: ddb.endpoint, repeats: 1, rejections: 10 });
    const byOp = (library: string, operation: string) => {
      const row = rows.find((r) => r.library === library && r.operation.startsWith(operation));
      assert.ok(row, `no row for ${library}: ${operation}`);
      return row;
    };
    const goals = rows.filter((r) => r.goal);
    assert.equal(goals.length, 7);
    for (const r of goals) {
      assert.equal(goalMet(r), true, `${r.operation}: ${JSON.stringify(r.cost)}`);
    }

    const warm = byOp("zae-limiter", "warm acquire + commit").cost;
    assert.deepEqual([warm.calls, warm.roundTrips, warm.wcu, warm.indexWcu], [1, 1, 1, 0]);
    assert.deepEqual(warm.commands, { UpdateItem: 1 });
    const rejection = byOp("zae-limiter", "repeated rejection").cost;
    assert.equal(rejection.calls, 0);
    const cascade = byOp("zae-limiter", "warm cascaded acquire + commit").cost;
    assert.deepEqual(cascade.commands, { TransactWriteItems: 1 });
    assert.equal(cascade.wcu, 4);
    // The one-off metadata read of an unseen entity is reported, not hidden.
    const unseen = byOp("zae-limiter", "first call for an unseen entity").cost;
    assert.deepEqual(unseen.commands, { BatchGetItem: 1, UpdateItem: 1 });
    assert.equal(unseen.roundTrips, 2);
    // The commit of a cascaded lease writes both items in one wave.
    const cascAdj = byOp("zae-limiter", "cascaded acquire + adjust + commit").cost;
    assert.equal(cascAdj.calls, 3);
    assert.equal(cascAdj.roundTrips, 2);

    // rate-limiter-flexible in steady state: a failed conditional write, then an increment.
    const steady = byOp("rate-limiter-flexible", "consume in steady state").cost;
    assert.equal(steady.calls, 2);
    assert.equal(steady.roundTrips, 2);
    assert.equal(steady.failedConditions, 1);
    assert.equal(billedWcu(steady), 2);
  });

  await t.step("over-admission: two processes on one bucket never pass its limit", async () => {
    const o = await checkOverAdmission({
      endpoint: ddb.endpoint,
      capacity: 20,
      perProcess: 8,
      requests: 80,
    });
    assert.ok(o.refused > 0, "the bucket was never emptied: the check would prove nothing");
    assert.equal(o.errors, 0, JSON.stringify(o.errorKinds));
    assert.equal(o.stored, o.admitted);
    assert.ok(o.admitted <= o.allowed, `${o.admitted} admitted > ${o.allowed} allowed`);
    assert.ok(o.admitted >= 20, `only ${o.admitted} admitted of a full bucket of 20`);
  });

  await t.step("throughput rounds alternate both libraries and report ratios", async () => {
    const cases = await measureThroughput({
      endpoint: ddb.endpoint,
      concurrency: [2],
      rounds: 2,
      roundMs: 150,
      distinctKeys: 5,
      streamCase: false,
      latencyMs: 0,
    });
    assert.deepEqual(cases.map((c) => `${c.concurrency}/${c.keys}`), ["2/distinct", "2/hot"]);
    for (const c of cases) {
      assert.equal(c.rounds.length, 2);
      for (const r of c.rounds) {
        assert.ok(r.ours.requests > 0 && r.theirs.requests > 0);
        assert.equal(r.ours.errors + r.theirs.errors, 0);
        assert.ok(Number.isFinite(r.ratio) && r.ratio > 0);
        assert.equal(r.theirs.callsPerRequest, 2);
      }
    }
    // Distinct keys never contend: one call per request.
    for (const r of cases[0].rounds) assert.equal(r.ours.callsPerRequest, 1);
  });

  await t.step("report: verdicts and Markdown", async () => {
    const cpu = await measureCpu({ iterations: 200 });
    assert.ok(cpu.acquireUs > 0 && cpu.sdkUs > 0);
    assert.ok(cpu.denyUs < cpu.acquireUs, "a local refusal costs less than a write");
    const results = { costs: rows, throughput: [], cpu };
    const vs = verdicts(results, { judgeThroughput: true });
    assert.ok(vs.every((v) => v.met === true), JSON.stringify(vs.filter((v) => !v.met)));
    const md = renderMarkdown(results, vs, {
      command: "deno task bench",
      date: "2026-01-01",
      environment: "test",
      settings: "test",
    });
    assert.match(md, /^# Benchmarks/);
    assert.match(md, /Generated by `deno task bench` on 2026-01-01/);
    assert.match(
      md,
      /\| warm acquire \+ commit \(2 limits\) \| ≤ 1 round trips, ≤ 1 WCU \| 1 round trips, 1 WCU \| \*\*met\*\* \|/,
    );
    assert.match(md, /## Client CPU per acquire/);
  });
});
