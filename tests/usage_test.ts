import assert from "node:assert/strict";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, ValidationError } from "../mod.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import {
  formatUsageChart,
  getUsageSnapshots,
  getUsageSummary,
  iterUsageSnapshots,
  type UsageSnapshot,
} from "../src/usage.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const at = (iso: string) => Date.parse(iso);
const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 100_000)];

Deno.test("usage queries are checked before any read", async (t) => {
  // Never contacted: every call below must fail validation first.
  const client = new DynamoDBClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:9",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
  });
  const base = { entityId: "key-1", window: "hourly" as const };
  const refused = async (query: Record<string, unknown>, field: string, rule: RegExp) => {
    await assert.rejects(
      getUsageSnapshots(client, "rate_limits", { ...base, ...query } as never),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError, String(err));
        assert.equal(err.field, field);
        assert.match(err.rule, rule);
        return true;
      },
    );
  };
  try {
    await t.step("entity, resource and window", async () => {
      await refused({ entityId: "a#b" }, "entityId", /letters, digits/);
      await refused({ resource: "gpt#4" }, "resource", /letter followed by/);
      await refused({ window: "weekly" }, "window", /"hourly" or "daily"/);
    });
    await t.step("times: Date, ISO 8601 or epoch ms; end after start", async () => {
      await refused({ start: "yesterday" }, "start", /ISO 8601/);
      await refused({ end: NaN }, "end", /epoch ms/);
      await refused(
        { start: "2026-11-28T10:00:00Z", end: "2026-11-28T10:00:00Z" },
        "end",
        /must be after start \(2026-11-28T10:00:00.000Z\)/,
      );
      await refused({ pageSize: 0 }, "pageSize", /whole number >= 1/);
    });
    await t.step("the iterator refuses at once, and the summary checks peakBy", async () => {
      assert.throws(
        () => iterUsageSnapshots(client, "rate_limits", { ...base, window: "monthly" as never }),
        /Invalid window: "monthly"/,
      );
      await assert.rejects(
        getUsageSummary(client, "rate_limits", { ...base, peakBy: "t#pm" }),
        /Invalid peakBy: "t#pm"/,
      );
      await assert.rejects(getUsageSnapshots(client, "x", base), /Invalid tableName: "x"/);
    });
  } finally {
    client.destroy();
  }
});

Deno.test("usage chart: bars scaled to the largest window, resources summed", () => {
  const snap = (resource: string, hour: string, tpm: number, requests: number): UsageSnapshot => ({
    entityId: "k",
    resource,
    window: "hourly",
    windowStart: `2026-11-28T${hour}:00:00Z`,
    windowEnd: "",
    consumed: { tpm },
    requests,
  });
  const snapshots = [
    snap("gpt-4", "08", 100, 1),
    snap("claude", "08", 300, 1),
    snap("gpt-4", "09", 200, 2),
    snap("gpt-4", "10", -50, -1),
  ];
  assert.equal(
    formatUsageChart(snapshots, { metric: "tpm", width: 10 }),
    [
      "2026-11-28T08:00:00Z  ██████████  400",
      "2026-11-28T09:00:00Z  █████       200",
      "2026-11-28T10:00:00Z              -50",
    ].join("\n"),
  );
  assert.equal(
    formatUsageChart(snapshots, { width: 2 }),
    [
      "2026-11-28T08:00:00Z  ██   2",
      "2026-11-28T09:00:00Z  ██   2",
      "2026-11-28T10:00:00Z      -1",
    ].join("\n"),
  );
  assert.equal(formatUsageChart([]), "");
  assert.throws(() => formatUsageChart(snapshots, { width: 0 }), /Invalid width: 0/);
  assert.throws(() => formatUsageChart(snapshots, { metric: "a b" }), /Invalid metric: "a b"/);
});

Deno.test({
  name: "usage snapshots and summaries on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("usage");
    let now = 0;
    const limiter = new RateLimiter({
      tableName,
      client,
      createTable: true,
      clock: () => now,
      timeoutMs: 10_000, // generous: test files run in parallel on one machine
    });
    const rows = (snapshots: { resource: string; windowStart: string; consumed: object }[]) =>
      snapshots.map((s) => [s.resource, s.windowStart, s.consumed]);
    try {
      for (
        const [iso, resource, tpm] of [
          ["2026-11-28T08:10:00Z", "gpt-4", 100],
          ["2026-11-28T08:20:00Z", "claude", 50],
          ["2026-11-28T09:30:00Z", "gpt-4", 300],
          ["2026-11-28T09:31:00Z", "gpt-4", 100],
          ["2026-11-29T10:00:00Z", "claude", 500],
        ] as const
      ) {
        now = at(iso);
        await (await limiter.acquire({
          entityId: "key-1",
          resource,
          limits,
          consume: { rpm: 1, tpm },
        })).commit();
      }
      await aggregateLocal({ tableName, client });

      await t.step("one resource, one window type, in time order", async () => {
        const hours = await getUsageSnapshots(client, tableName, {
          entityId: "key-1",
          resource: "gpt-4",
          window: "hourly",
        });
        assert.deepEqual(hours, [
          {
            entityId: "key-1",
            resource: "gpt-4",
            window: "hourly",
            windowStart: "2026-11-28T08:00:00Z",
            windowEnd: "2026-11-28T09:00:00Z",
            consumed: { rpm: 1, tpm: 100 },
            requests: 1,
          },
          {
            entityId: "key-1",
            resource: "gpt-4",
            window: "hourly",
            windowStart: "2026-11-28T09:00:00Z",
            windowEnd: "2026-11-28T10:00:00Z",
            consumed: { rpm: 2, tpm: 400 },
            requests: 2,
          },
        ]);
      });

      await t.step("every resource, by resource then time; daily apart from hourly", async () => {
        assert.deepEqual(
          rows(await getUsageSnapshots(client, tableName, { entityId: "key-1", window: "hourly" })),
          [
            ["claude", "2026-11-28T08:00:00Z", { rpm: 1, tpm: 50 }],
            ["claude", "2026-11-29T10:00:00Z", { rpm: 1, tpm: 500 }],
            ["gpt-4", "2026-11-28T08:00:00Z", { rpm: 1, tpm: 100 }],
            ["gpt-4", "2026-11-28T09:00:00Z", { rpm: 2, tpm: 400 }],
          ],
        );
        assert.deepEqual(
          rows(await getUsageSnapshots(client, tableName, { entityId: "key-1", window: "daily" })),
          [
            ["claude", "2026-11-28T00:00:00Z", { rpm: 1, tpm: 50 }],
            ["claude", "2026-11-29T00:00:00Z", { rpm: 1, tpm: 500 }],
            ["gpt-4", "2026-11-28T00:00:00Z", { rpm: 3, tpm: 500 }],
          ],
        );
      });

      await t.step("start and end select the windows overlapping [start, end)", async () => {
        const gpt = (start: string | Date | number, end?: string | Date | number) =>
          getUsageSnapshots(client, tableName, {
            entityId: "key-1",
            resource: "gpt-4",
            window: "hourly",
            start,
            end,
          }).then((s) => s.map((x) => x.windowStart));
        assert.deepEqual(await gpt("2026-11-28T08:30:00Z", "2026-11-28T09:00:00Z"), [
          "2026-11-28T08:00:00Z",
        ]);
        assert.deepEqual(
          await gpt(new Date("2026-11-28T08:30:00Z"), at("2026-11-28T09:00:01Z")),
          ["2026-11-28T08:00:00Z", "2026-11-28T09:00:00Z"],
        );
        assert.deepEqual(await gpt("2026-11-28T09:00:00Z"), ["2026-11-28T09:00:00Z"]);
        assert.deepEqual(await gpt("2026-11-28T10:00:00Z"), []);
        // Without a resource the same range applies to each resource.
        assert.deepEqual(
          rows(
            await getUsageSnapshots(client, tableName, {
              entityId: "key-1",
              window: "hourly",
              start: "2026-11-28T09:00:00Z",
              end: "2026-11-30T00:00:00Z",
            }),
          ),
          [
            ["claude", "2026-11-29T10:00:00Z", { rpm: 1, tpm: 500 }],
            ["gpt-4", "2026-11-28T09:00:00Z", { rpm: 2, tpm: 400 }],
          ],
        );
      });

      await t.step("the iterator reads every page", async () => {
        const seen: string[] = [];
        for await (
          const s of iterUsageSnapshots(client, tableName, {
            entityId: "key-1",
            window: "hourly",
            pageSize: 1, // one item a Query: five pages, the daily ones filtered out
          })
        ) seen.push(`${s.resource}@${s.windowStart}`);
        assert.deepEqual(seen, [
          "claude@2026-11-28T08:00:00Z",
          "claude@2026-11-29T10:00:00Z",
          "gpt-4@2026-11-28T08:00:00Z",
          "gpt-4@2026-11-28T09:00:00Z",
        ]);
      });

      await t.step("summary over every resource: a window counts once", async () => {
        const s = await getUsageSummary(client, tableName, { entityId: "key-1", window: "hourly" });
        assert.deepEqual({ ...s, average: undefined, averageRequests: undefined }, {
          entityId: "key-1",
          window: "hourly",
          windows: 3,
          total: { rpm: 5, tpm: 1050 },
          requests: 5,
          average: undefined,
          averageRequests: undefined,
          bypassed: 0,
          refused: 0,
          // 08:00 and 09:00 both have 2 requests: the earliest wins.
          peak: {
            windowStart: "2026-11-28T08:00:00Z",
            consumed: { rpm: 2, tpm: 150 },
            requests: 2,
          },
        });
        assert.equal(s.average.tpm, 350);
        assert.ok(Math.abs(s.average.rpm - 5 / 3) < 1e-12);
        assert.ok(Math.abs(s.averageRequests - 5 / 3) < 1e-12);
        const byTokens = await getUsageSummary(client, tableName, {
          entityId: "key-1",
          window: "hourly",
          peakBy: "tpm",
        });
        assert.deepEqual(byTokens.peak, {
          windowStart: "2026-11-29T10:00:00Z",
          consumed: { rpm: 1, tpm: 500 },
          requests: 1,
        });
      });

      await t.step("summary of one resource by day, and of nothing", async () => {
        assert.deepEqual(
          await getUsageSummary(client, tableName, {
            entityId: "key-1",
            resource: "gpt-4",
            window: "daily",
          }),
          {
            entityId: "key-1",
            resource: "gpt-4",
            window: "daily",
            windows: 1,
            total: { rpm: 3, tpm: 500 },
            requests: 3,
            average: { rpm: 3, tpm: 500 },
            averageRequests: 3,
            bypassed: 0,
            refused: 0,
            peak: {
              windowStart: "2026-11-28T00:00:00Z",
              consumed: { rpm: 3, tpm: 500 },
              requests: 3,
            },
          },
        );
        assert.deepEqual(
          await getUsageSummary(client, tableName, { entityId: "nobody", window: "daily" }),
          {
            entityId: "nobody",
            window: "daily",
            windows: 0,
            total: {},
            requests: 0,
            average: {},
            averageRequests: 0,
            bypassed: 0,
            refused: 0,
            peak: undefined,
          },
        );
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
