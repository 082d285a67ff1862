/**
 * `deno task demo`: with no option its output is the same on every run (its own DynamoDB Local,
 * a fixed simulated clock); with `--endpoint-url` it runs the same workload on a DynamoDB that
 * already runs, twice in a row, and leaves what the dashboard shows: usage snapshots of the
 * demo's entities in the current hour, refusal counts, and an overview with traffic and "most
 * refused". The demo runs as a subprocess; the checks read the table through the library.
 */

import assert from "node:assert/strict";
import { Limit, RateLimiter } from "../mod.ts";
import type { OverviewView } from "../src/dashboard/mod.ts";
import { createDashboard } from "../src/dashboard/mod.ts";
import { runCli } from "./_cli.ts";
import { startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const HOUR = 3_600_000;

/** `deno run examples/demo.ts <args>`, as `deno task demo` runs it, without the CLI's variables. */
async function runDemo(
  args: string[],
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const env = Deno.env.toObject();
  delete env.AWS_ENDPOINT_URL_DYNAMODB;
  delete env.AWS_ENDPOINT_URL;
  Object.assign(env, extraEnv);
  return await runCli(
    ["examples/demo.ts", ...args],
    env,
    [Deno.execPath(), "run", "--quiet", "--allow-all"],
    { cwd: ROOT, clearEnv: true },
  );
}

/** The output of `deno task demo` with no option (the port of its DynamoDB Local left out). */
const EXPECTED = `Starting DynamoDB Local (the first run downloads it from the npm registry)...
DynamoDB Local at http://127.0.0.1:PORT
The clock is simulated: it starts at 2026-11-28 12:00:00 UTC and moves 2 s per request, so the
t=+… times below run ahead of the wall clock. The DynamoDB calls are real.

t=+ 0.0s  key-alice admitted   estimate 600 tokens, used 300 (adjust -300)
t=+ 2.0s  key-alice admitted   estimate 600 tokens, used 689 (adjust +89)
t=+ 4.0s  key-bob   admitted   estimate 600 tokens, used 1078 (adjust +478)
t=+ 6.0s  key-alice admitted   estimate 600 tokens, used 567 (adjust -33)
t=+ 8.0s  key-alice admitted   estimate 600 tokens, used 956 (adjust +356)
t=+10.0s  key-bob   admitted   estimate 600 tokens, used 445 (adjust -155)
t=+12.0s  key-alice admitted   estimate 600 tokens, used 834 (adjust +234)
t=+14.0s  key-alice REJECTED   429 Retry-After: 9s (tpm of proj-acme: 64 available, 600 requested)
t=+16.0s  key-bob   REJECTED   429 Retry-After: 7s (tpm of proj-acme: 197 available, 600 requested)
t=+18.0s  key-alice REJECTED   429 Retry-After: 5s (tpm of proj-acme: 331 available, 600 requested)
t=+20.0s  key-alice REJECTED   429 Retry-After: 3s (tpm of proj-acme: 464 available, 600 requested)
t=+22.0s  key-bob   REJECTED   429 Retry-After: 1s (tpm of proj-acme: 597 available, 600 requested)
t=+24.0s  key-alice admitted   estimate 600 tokens, used 468 (adjust -132)
t=+26.0s  key-alice REJECTED   429 Retry-After: 4s (tpm of proj-acme: 396 available, 600 requested)
t=+28.0s  key-bob   REJECTED   429 Retry-After: 2s (tpm of proj-acme: 529 available, 600 requested)
t=+30.0s  key-alice admitted   estimate 600 tokens, used 735 (adjust +135)
t=+32.0s  key-alice REJECTED   429 Retry-After: 9s (tpm of proj-acme: 61 available, 600 requested)
t=+34.0s  key-bob   REJECTED   429 Retry-After: 7s (tpm of proj-acme: 194 available, 600 requested)
t=+36.0s  key-alice REJECTED   429 Retry-After: 5s (tpm of proj-acme: 328 available, 600 requested)
t=+38.0s  key-alice REJECTED   429 Retry-After: 3s (tpm of proj-acme: 461 available, 600 requested)
t=+40.0s  key-bob   REJECTED   429 Retry-After: 1s (tpm of proj-acme: 594 available, 600 requested)
t=+42.0s  key-alice admitted   estimate 600 tokens, used 369 (adjust -231)
t=+44.0s  key-alice REJECTED   429 Retry-After: 4s (rpm of key-alice: 0 available, 1 requested)
t=+46.0s  key-bob   admitted   estimate 600 tokens, used 1147 (adjust +547)
t=+48.0s  key-alice REJECTED   429 Retry-After: 15s (tpm of proj-acme: -388 available, 600 requested)
t=+50.0s  key-alice REJECTED   429 Retry-After: 13s (tpm of proj-acme: -255 available, 600 requested)
t=+52.0s  key-bob   REJECTED   429 Retry-After: 11s (tpm of proj-acme: -122 available, 600 requested)
t=+54.0s  key-alice REJECTED   429 Retry-After: 9s (tpm of proj-acme: 12 available, 600 requested)
t=+56.0s  key-alice REJECTED   429 Retry-After: 7s (tpm of proj-acme: 145 available, 600 requested)
t=+58.0s  key-bob   REJECTED   429 Retry-After: 5s (tpm of proj-acme: 278 available, 600 requested)

11 admitted, 19 rejected.
Balances now:
  key-alice rpm 2, tpm 2082
  key-bob   rpm 5, tpm 3553
  proj-acme rpm 5, tpm 412
proj-acme can take a 2,000-token request in 23.82s.
`;

/** The workload part of the output: from the first request to the last balance. */
function workload(out: string): string {
  return out.slice(out.indexOf("t=+ 0.0s"), out.indexOf("proj-acme can take"));
}

/** The simulated start a run printed, epoch ms. */
function startOf(out: string): number {
  const m = /it starts at (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) UTC/.exec(out);
  assert.ok(m, `no start time in:\n${out}`);
  return Date.parse(`${m[1]}T${m[2]}Z`);
}

Deno.test({
  name: "deno task demo: the same output with no option",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const r = await runDemo([]);
    assert.equal(r.code, 0, `the demo exited ${r.code}:\n${r.out}\n${r.err}`);
    assert.equal(r.out.replace(/127\.0\.0\.1:\d+/, "127.0.0.1:PORT"), EXPECTED);
  },
});

Deno.test({
  name: "deno task demo --endpoint-url: the demo's traffic stays for the dashboard, run twice",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const tableName = uniqueTableName("demo");
    const args = ["--endpoint-url", ddb.endpoint, "--table-name", tableName];
    const limiter = new RateLimiter({ tableName, endpoint: ddb.endpoint });
    try {
      const before = Date.now();
      const first = await runDemo(args);
      const second = await runDemo(args);
      const after = Date.now();
      const starts = [startOf(first.out), startOf(second.out)];

      await t.step("both runs succeed, the second on the entities of the first", () => {
        assert.equal(first.code, 0, `first run exited ${first.code}:\n${first.out}\n${first.err}`);
        assert.equal(second.code, 0, `second run: ${second.code}:\n${second.out}\n${second.err}`);
        assert.doesNotMatch(first.out, /earlier run/);
        assert.match(
          second.out,
          /^proj-acme, key-alice, key-bob: there from an earlier run, kept\.$/m,
        );
        assert.ok(!first.out.includes("Starting DynamoDB Local"), "it started its own");
        assert.match(
          first.out,
          new RegExp(`^DynamoDB at ${ddb.endpoint}, table ${tableName}`, "m"),
        );
      });

      await t.step(
        "the clock starts at the current hour; a re-run when the buckets are full",
        () => {
          const hourOf = (ms: number) => Math.floor(ms / HOUR) * HOUR;
          assert.ok(
            starts[0] === hourOf(before) || starts[0] === hourOf(after),
            `first run started at ${new Date(starts[0]).toISOString()}, not the current hour`,
          );
          assert.ok(starts[1] > starts[0] + 58_000, "the second run starts after the first one");
          assert.ok(starts[1] < starts[0] + 5 * 60_000, "…and a few minutes at most after it");
          // With full buckets, the second run is the first one again (not 30 refusals).
          assert.match(workload(first.out), /^t=\+ 0\.0s {2}key-alice admitted/);
          assert.equal(workload(second.out), workload(first.out));
          assert.equal(workload(first.out), workload(EXPECTED));
        },
      );

      await t.step("it prints the dashboard command", () => {
        for (const out of [first.out, second.out]) {
          assert.match(
            out,
            new RegExp(
              `^ {2}deno task cli dashboard --endpoint-url ${ddb.endpoint} --table-name ${tableName}\n$`,
              "m",
            ),
          );
          assert.match(out, /the usage aggregator read the table's stream: \d+ records/);
        }
      });

      await t.step("usage snapshots of the demo's entities, refusals counted", async () => {
        const hour = new Date(Math.floor(starts[0] / HOUR) * HOUR).toISOString().slice(0, 19) + "Z";
        // Each run: 11 admitted (key-alice 8, key-bob 3, all on proj-acme), 19 refused (12, 7).
        const expected = {
          "proj-acme": { requests: 22, refused: 0 },
          "key-alice": { requests: 16, refused: 24 },
          "key-bob": { requests: 6, refused: 14 },
        };
        for (const [entityId, want] of Object.entries(expected)) {
          const hours = await limiter.getUsageSnapshots({
            entityId,
            window: "hourly",
            start: new Date(starts[0] - HOUR).toISOString(),
          });
          assert.ok(
            hours.some((s) => s.windowStart === hour && s.resource === "gpt-4o" && s.requests > 0),
            `${entityId}: no snapshot with requests for ${hour}: ${JSON.stringify(hours)}`,
          );
          // Both runs, in this hour's window or (past the hour) the next one.
          const sum = (f: (s: (typeof hours)[number]) => number) =>
            hours.reduce((n, s) => n + f(s), 0);
          assert.equal(sum((s) => s.requests), want.requests, `${entityId} requests`);
          assert.equal(sum((s) => s.refused ?? 0), want.refused, `${entityId} refused`);
        }
        const daily = await limiter.getUsageSnapshots({ entityId: "proj-acme", window: "daily" });
        assert.equal(daily.reduce((n, s) => n + s.requests, 0), 22, "daily snapshots too");
        assert.equal(daily.reduce((n, s) => n + (s.consumed.tpm ?? 0), 0), 2 * 7588);
      });

      await t.step("the dashboard's overview: hourly requests and most refused", async () => {
        const dashboard = createDashboard({ limiter, readOnly: true });
        const res = await dashboard.fetch(
          new Request("http://127.0.0.1:8787/api/overview", {
            headers: { Host: "127.0.0.1:8787" },
          }),
        );
        assert.equal(res.status, 200, await res.clone().text());
        const view = await res.json() as OverviewView;
        const requests = view.hourly.reduce((n, p) => n + p.requests, 0);
        const refused = view.hourly.reduce((n, p) => n + p.refused, 0);
        assert.equal(requests, 22, "the project's requests (its keys cascade to it)");
        assert.equal(refused, 38, "the keys' refusals");
        assert.ok(view.hourly.some((p) => p.requests > 0));
        assert.deepEqual(view.mostRefused, [
          { entityId: "key-alice", refused: 24, requests: 16 },
          { entityId: "key-bob", refused: 14, requests: 6 },
        ]);
        assert.ok(view.closeToLimit.length > 0, "close to limit has the demo's buckets");
        assert.ok(view.closeToLimit.every((b) => b.resource === "gpt-4o"));
        // The demo's limits, as the page shows them.
        const stored = await limiter.getLimits({ entityId: "proj-acme" });
        assert.deepEqual(
          stored.map((l) => [l.name, l.capacity]),
          [Limit.perMinute("rpm", 8), Limit.perMinute("tpm", 4_000)].map((l) => [
            l.name,
            l.capacity,
          ]),
        );
      });

      await t.step(
        "the endpoint from $AWS_ENDPOINT_URL_DYNAMODB, as the CLI reads it",
        async () => {
          const third = await runDemo(["--table-name", tableName], {
            AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
          });
          assert.equal(
            third.code,
            0,
            `third run exited ${third.code}:\n${third.out}\n${third.err}`,
          );
          assert.match(
            third.out,
            new RegExp(`^DynamoDB at ${ddb.endpoint}, table ${tableName}`, "m"),
          );
          assert.match(third.out, /there from an earlier run, kept/);
          assert.equal(workload(third.out), workload(EXPECTED));
        },
      );

      await t.step("a bad --endpoint-url: named, with its rule, and nothing started", async () => {
        const bad = await runDemo(["--endpoint-url", "localhost:8000"]);
        assert.equal(bad.code, 2);
        assert.equal(bad.out, "");
        assert.match(bad.err, /^Invalid --endpoint-url: "localhost:8000" \(must be an http:\/\//);
      });
    } finally {
      await limiter.close();
      await ddb.stop();
    }
  },
});
