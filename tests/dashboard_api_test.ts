/**
 * The dashboard's JSON API on DynamoDB Local, through `createDashboard(...).fetch` (no browser):
 * every route's shape and numbers against the library's own reads, on a seeded project with keys,
 * limits at all four levels and usage snapshots made by the aggregator; the effective level is the
 * one an acquire uses; edits are validated (nothing written) and stored (read back, audited);
 * read-only, the token, the same-origin check, bad ids and the page's headers.
 */

import assert from "node:assert/strict";
import { Limit, RateLimiter, RateLimiterUnavailable } from "../mod.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import { createDashboard, type Dashboard } from "../src/dashboard/mod.ts";
import type {
  AuditView,
  BucketsView,
  EntityPageView,
  ErrorView,
  InfoView,
  LimitLevelsView,
  LimitsWriteResult,
  OverviewView,
  SeriesPoint,
  TreeView,
  UsageView,
} from "../src/dashboard/api_types.ts";
import { answerFor } from "../src/dashboard/respond.ts";
import { refusedOf } from "../src/dashboard/series.ts";
import { ASSETS } from "../src/dashboard/ui/assets_generated.ts";
import type { UsageSnapshot } from "../src/usage.ts";
import { createTestLimiter } from "../src/testing/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { dynamoTest, localClient, uniqueTableName } from "./_dynamo.ts";

const at = (iso: string) => Date.parse(iso);
const ORIGIN = "http://127.0.0.1:8787";
const TOKEN = "test-token-0123456789abcdef";
const denoJson = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
) as { version: string };

/** A request to the dashboard as the page's own `fetch` makes it. */
function call(
  dashboard: Dashboard,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Response> {
  const change = init.method === "PUT" || init.method === "DELETE";
  return dashboard.fetch(
    new Request(`${ORIGIN}${path}`, {
      method: init.method ?? "GET",
      headers: {
        ...(change ? { Origin: ORIGIN, "Content-Type": "application/json" } : {}),
        ...init.headers,
      },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    }),
  );
}

async function ok<T>(response: Response | Promise<Response>): Promise<T> {
  const r = await response;
  const text = await r.text();
  assert.equal(r.status, 200, text);
  assert.equal(r.headers.get("Cache-Control"), "no-store");
  assert.match(r.headers.get("Content-Type") ?? "", /^application\/json/);
  return JSON.parse(text) as T;
}

async function refused(response: Response | Promise<Response>, status: number): Promise<ErrorView> {
  const r = await response;
  const body = await r.json() as { error: ErrorView };
  assert.equal(r.status, status, JSON.stringify(body));
  assert.equal(typeof body.error.message, "string");
  return body.error;
}

dynamoTest("dashboard API on DynamoDB Local", async (t, { client, ddb }) => {
  const tableName = uniqueTableName("dash_api");
  let now = at("2026-11-28T13:10:00Z");
  const limiter = new RateLimiter({
    tableName,
    client,
    createTable: true,
    clock: () => now,
    timeoutMs: 10_000,
  });
  const dashboard = createDashboard({ limiter, log: () => {} });
  const rpm = (n: number) => Limit.perMinute("rpm", n);
  try {
    await t.step("seed: a project, three keys, limits at all four levels, traffic", async () => {
      await limiter.setSystemDefaults({ limits: [rpm(1000)] });
      await limiter.setResourceDefaults({ resource: "gpt-4", limits: [rpm(500)] });
      await limiter.createEntity({ entityId: "proj-1", name: "Production" });
      await limiter.setLimits({ entityId: "proj-1", limits: [rpm(200)] });
      await limiter.createEntity({ entityId: "key-a", name: "Alpha", parentId: "proj-1" });
      await limiter.createEntity({ entityId: "key-b", parentId: "proj-1", cascade: true });
      await limiter.createEntity({ entityId: "key-c", parentId: "proj-1" });
      await limiter.setLimits({ entityId: "key-a", limits: [rpm(50)] });
      await limiter.setLimits({
        entityId: "key-a",
        resource: "gpt-4",
        limits: [rpm(10), Limit.perMinute("tpm", 1000)],
      });
      const acquire = (entityId: string, resource: string, consume: Record<string, number>) =>
        limiter.acquire({ entityId, resource, consume }, () => {});
      await acquire("key-a", "gpt-4", { rpm: 3, tpm: 300 }); // 13:10
      await acquire("key-b", "gpt-4", { rpm: 2 }); // cascades: key-b and proj-1
      await assert.rejects(acquire("key-a", "gpt-4", { rpm: 8 })); // 3 + 8 > 10: refused
      await limiter.flush(); // the refusal's count, written to key-a's 13:00 snapshot
      now = at("2026-11-28T14:05:00Z");
      await acquire("key-a", "gpt-4", { rpm: 1, tpm: 100 });
      await acquire("key-c", "claude", { rpm: 4 });
      const aggregated = await aggregateLocal({ tableName, client });
      assert.ok(aggregated.snapshotWrites > 0);
      // Now, the live buckets: 4 rpm and 200 tpm taken at 14:30:00, read 6 s later.
      now = at("2026-11-28T14:30:00Z");
      await acquire("key-a", "gpt-4", { rpm: 4, tpm: 200 });
      now = at("2026-11-28T14:30:06Z");
    });

    await t.step("GET /api/info", async () => {
      const info = await ok<InfoView>(call(dashboard, "/api/info"));
      assert.deepEqual(info, {
        version: denoJson.version,
        table: tableName,
        readOnly: false,
        tokenRequired: false,
      });
    });

    await t.step("GET /api/tree: projects and their keys; search by id or name", async () => {
      const tree = await ok<TreeView>(call(dashboard, "/api/tree"));
      assert.deepEqual(tree, {
        roots: [{
          entityId: "proj-1",
          name: "Production",
          children: [
            { entityId: "key-a", name: "Alpha", children: [] },
            { entityId: "key-b", children: [] },
            { entityId: "key-c", children: [] },
          ],
        }],
        truncated: false,
      });
      const alpha = await ok<TreeView>(call(dashboard, "/api/tree?search=ALPHA"));
      assert.deepEqual(alpha.roots[0].children.map((c) => c.entityId), ["key-a"]);
      const none = await ok<TreeView>(call(dashboard, "/api/tree?search=zzz"));
      assert.deepEqual(none.roots, []);
      const project = await ok<TreeView>(call(dashboard, "/api/tree?search=product"));
      assert.equal(project.roots[0].children.length, 3); // a matching project keeps its keys
    });

    await t.step("GET /api/entities/:id: the entity, its keys, its resources", async () => {
      const page = await ok<EntityPageView>(call(dashboard, "/api/entities/proj-1"));
      const entity = (await limiter.getEntity("proj-1"))!;
      assert.deepEqual(page, {
        entity: {
          entityId: "proj-1",
          name: "Production",
          cascade: false,
          disabled: false,
          bypass: false,
          createdAt: entity.createdAt,
          metadata: {},
        },
        children: ["key-a", "key-b", "key-c"],
        resources: ["gpt-4"], // the cascaded bucket
      });
      const key = await ok<EntityPageView>(call(dashboard, "/api/entities/key-a"));
      assert.equal(key.entity.parentId, "proj-1");
      assert.deepEqual(key.children, []);
      assert.deepEqual(key.resources, ["gpt-4"]);
      const missing = await refused(call(dashboard, "/api/entities/nobody"), 404);
      assert.match(missing.message, /nobody/);
    });

    await t.step(
      "GET .../buckets: available and time until full, as the library reads",
      async () => {
        const view = await ok<BucketsView>(call(dashboard, "/api/entities/key-a/buckets"));
        assert.equal(view.now, now);
        // rpm 10/min: 4 taken, 6 s back one; tpm 1000/min: 200 taken, 6 s back 100.
        assert.deepEqual(view.buckets, [
          { resource: "gpt-4", limit: "rpm", available: 7, capacity: 10, msUntilFull: 18_000 },
          { resource: "gpt-4", limit: "tpm", available: 900, capacity: 1000, msUntilFull: 6_000 },
        ]);
        const library = await limiter.available({ entityId: "key-a", resource: "gpt-4" });
        assert.deepEqual(library, { rpm: 7, tpm: 900 });
        const wait = await limiter.timeUntilAvailable({
          entityId: "key-a",
          resource: "gpt-4",
          needed: { rpm: 10 },
        });
        assert.equal(wait * 1000, 18_000); // full again when 10 fit
        const none = await ok<BucketsView>(call(dashboard, "/api/entities/proj-9/buckets"));
        assert.deepEqual(none.buckets, []);
      },
    );

    await t.step("GET .../buckets: a quota, a concurrent limit, and a sharded bucket", async () => {
      // As resource defaults: an entity's stored limits carry a shard layout, which a concurrent
      // limit refuses (src/engine/concurrency.ts); the capacities come from the effective level.
      await limiter.setResourceDefaults({
        resource: "jobs",
        limits: [Limit.concurrent("streams", 3), Limit.quota("tokens", 1000, { resetAfter: "1h" })],
      });
      const lease = await limiter.acquire({
        entityId: "key-d",
        resource: "jobs",
        consume: { tokens: 250 },
        leaseTimeoutMs: 60_000,
      });
      await limiter.setLimits({
        entityId: "key-d",
        resource: "wide",
        limits: [rpm(60)],
        shards: 2,
      });
      for (let i = 0; i < 6; i++) {
        await limiter.acquire(
          { entityId: "key-d", resource: "wide", consume: { rpm: 1 } },
          () => {},
        );
      }
      const view = await ok<BucketsView>(call(dashboard, "/api/entities/key-d/buckets"));
      const library = await limiter.available({ entityId: "key-d", resource: "jobs" });
      assert.deepEqual(library, { streams: 2, tokens: 750 });
      assert.deepEqual(view.buckets.filter((b) => b.resource === "jobs"), [
        { resource: "jobs", limit: "streams", available: 2, capacity: 3, msUntilFull: 60_001 },
        // The window started with the acquire: full again an hour later.
        {
          resource: "jobs",
          limit: "tokens",
          available: 750,
          capacity: 1000,
          msUntilFull: 3_600_000,
        },
      ]);
      // Two shards of 30 each, added up: 6 taken in all, none back yet (the clock stands still).
      const wide = view.buckets.filter((b) => b.resource === "wide");
      assert.equal(wide.length, 1);
      assert.equal(wide[0].capacity, 60);
      assert.equal(wide[0].available, 54);
      assert.deepEqual(await limiter.available({ entityId: "key-d", resource: "wide" }), {
        rpm: 54,
      });
      await lease.commit();
      const after = await ok<BucketsView>(call(dashboard, "/api/entities/key-d/buckets"));
      assert.equal(after.buckets.find((b) => b.limit === "streams")!.available, 3);
      assert.equal(after.buckets.find((b) => b.limit === "streams")!.msUntilFull, 0);
    });

    await t.step(
      "GET .../limits: four levels, the effective one is what acquire uses",
      async () => {
        const levels = await ok<LimitLevelsView>(
          call(dashboard, "/api/entities/key-a/limits?resource=gpt-4"),
        );
        assert.equal(levels.resource, "gpt-4");
        assert.deepEqual(
          levels.levels.map((l) => [l.level, l.limits?.map((x) => x.text) ?? null, l.effective]),
          [
            ["entity-resource", ["rpm: 10 per 60 s", "tpm: 1000 per 60 s"], true],
            ["entity", ["rpm: 50 per 60 s"], false],
            ["resource", ["rpm: 500 per 60 s"], false],
            ["system", ["rpm: 1000 per 60 s"], false],
          ],
        );
        assert.deepEqual(levels.levels[0].limits![0], {
          name: "rpm",
          kind: "rate",
          capacity: 10,
          refillAmount: 10,
          refillPeriodSeconds: 60,
          soft: false,
          text: "rpm: 10 per 60 s",
          json: { name: "rpm", capacity: 10, refillAmount: 10, refillPeriodSeconds: 60 },
        });
        // Each effective level, proved by an acquire's status (its capacity is that level's).
        const capacityUsed = async (entityId: string, resource: string) => {
          const lease = await limiter.acquire({ entityId, resource, consume: { rpm: 1 } });
          await lease.rollback();
          return lease.statuses.find((s) => s.entityId === entityId)!.limit.capacity;
        };
        const effective = async (entityId: string, resource: string) => {
          const v = await ok<LimitLevelsView>(
            call(dashboard, `/api/entities/${entityId}/limits?resource=${resource}`),
          );
          const level = v.levels.find((l) => l.effective)!;
          assert.equal(v.levels.filter((l) => l.effective).length, 1);
          return [level.level, level.limits![0].capacity];
        };
        assert.deepEqual(await effective("key-a", "gpt-4"), ["entity-resource", 10]);
        assert.equal(await capacityUsed("key-a", "gpt-4"), 10);
        assert.deepEqual(await effective("key-a", "claude"), ["entity", 50]);
        assert.equal(await capacityUsed("key-a", "claude"), 50);
        assert.deepEqual(await effective("key-c", "gpt-4"), ["resource", 500]);
        assert.equal(await capacityUsed("key-c", "gpt-4"), 500);
        assert.deepEqual(await effective("key-c", "claude"), ["system", 1000]);
        assert.equal(await capacityUsed("key-c", "claude"), 1000);
        const noResource = await refused(call(dashboard, "/api/entities/key-a/limits"), 400);
        assert.equal(noResource.field, "resource");
      },
    );

    await t.step(
      "PUT .../limits: a bad capacity is refused, naming the field; nothing written",
      async () => {
        const before = await limiter.getLimits({ entityId: "key-c", resource: "gpt-4" });
        const events = (await limiter.getAuditEvents({ entityId: "key-c" })).events.length;
        const error = await refused(
          call(dashboard, "/api/entities/key-c/limits", {
            method: "PUT",
            body: {
              resource: "gpt-4",
              limits: [
                { name: "rpm", capacity: 20, refillAmount: 20, refillPeriodSeconds: 60 },
                { name: "tpm", capacity: -5, refillAmount: 100, refillPeriodSeconds: 60 },
              ],
            },
          }),
          400,
        );
        assert.equal(error.field, "limit tpm: capacity");
        assert.equal(error.value, "-5");
        assert.equal(error.rule, "must be a finite number > 0");
        assert.equal(error.limitIndex, 1);
        assert.deepEqual(await limiter.getLimits({ entityId: "key-c", resource: "gpt-4" }), before);
        assert.equal((await limiter.getAuditEvents({ entityId: "key-c" })).events.length, events);
        // The list's own rules are the library's too: a name twice.
        const twice = await refused(
          call(dashboard, "/api/entities/key-c/limits", {
            method: "PUT",
            body: {
              resource: "gpt-4",
              limits: [rpm(5).toJSON(), rpm(6).toJSON()],
            },
          }),
          400,
        );
        assert.equal(twice.field, "limits[1].name");
        const badResource = await refused(
          call(dashboard, "/api/entities/key-c/limits", {
            method: "PUT",
            body: { resource: "a#b", limits: [rpm(5).toJSON()] },
          }),
          400,
        );
        assert.equal(badResource.field, "resource");
        const notJson = await refused(
          dashboard.fetch(
            new Request(`${ORIGIN}/api/entities/key-c/limits`, {
              method: "PUT",
              headers: { Origin: ORIGIN, "Content-Type": "application/json" },
              body: "{not json",
            }),
          ),
          400,
        );
        assert.equal(notJson.field, "body");
        const huge = await refused(
          call(dashboard, "/api/entities/key-c/limits", {
            method: "PUT",
            body: { resource: "gpt-4", limits: [rpm(5).toJSON()], pad: "x".repeat(70_000) },
          }),
          400,
        );
        assert.equal(huge.field, "body");
        assert.equal(huge.rule, "must be at most 64 KB");
        assert.deepEqual(await limiter.getLimits({ entityId: "key-c", resource: "gpt-4" }), before);
      },
    );

    await t.step("PUT .../limits stores, answers the value read back, and is audited", async () => {
      const json = Limit.perMinute("rpm", 20, { burst: 30 }).toJSON();
      const stored = await ok<LimitsWriteResult>(
        call(dashboard, "/api/entities/key-c/limits", {
          method: "PUT",
          body: { resource: "gpt-4", limits: [json] },
        }),
      );
      const readBack = await limiter.getLimits({ entityId: "key-c", resource: "gpt-4" });
      assert.equal(readBack.length, 1);
      assert.ok(readBack[0].equals(Limit.perMinute("rpm", 20, { burst: 30 })));
      assert.equal(stored.resource, "gpt-4");
      assert.deepEqual(stored.limits!.map((l) => l.json), readBack.map((l) => l.toJSON()));
      assert.equal(stored.limits![0].text, "rpm: 20 per 60 s, burst 30");
      const [event] = (await limiter.getAuditEvents({ entityId: "key-c" })).events;
      assert.equal(event.action, "limits.set");
      assert.equal(event.resource, "gpt-4");
      assert.deepEqual(event.after, { limits: [json] });
      // The entity-wide limits: resource "*".
      const wide = await ok<LimitsWriteResult>(
        call(dashboard, "/api/entities/key-c/limits", {
          method: "PUT",
          body: { resource: "*", limits: [rpm(40).toJSON()] },
        }),
      );
      assert.equal(wide.resource, "*");
      assert.equal((await limiter.getLimits({ entityId: "key-c" }))[0].capacity, 40);
    });

    await t.step("DELETE .../limits removes them; the effective level moves down", async () => {
      // As the page sends it: no body, so no Content-Type.
      const gone = await ok<LimitsWriteResult>(
        dashboard.fetch(
          new Request(`${ORIGIN}/api/entities/key-c/limits?resource=gpt-4`, {
            method: "DELETE",
            headers: { Origin: ORIGIN },
          }),
        ),
      );
      assert.deepEqual(gone, { resource: "gpt-4", limits: null });
      assert.deepEqual(await limiter.getLimits({ entityId: "key-c", resource: "gpt-4" }), []);
      const v = await ok<LimitLevelsView>(
        call(dashboard, "/api/entities/key-c/limits?resource=gpt-4"),
      );
      assert.equal(v.levels.find((l) => l.effective)?.level, "entity"); // the 40 set above
      const lease = await limiter.acquire({
        entityId: "key-c",
        resource: "gpt-4",
        consume: { rpm: 1 },
      });
      await lease.rollback();
      assert.equal(lease.statuses[0].limit.capacity, 40);
      const [event] = (await limiter.getAuditEvents({ entityId: "key-c" })).events;
      assert.equal(event.action, "limits.delete");
      const unnamed = await refused(
        call(dashboard, "/api/entities/key-c/limits", { method: "DELETE" }),
        400,
      );
      assert.equal(unnamed.field, "resource");
    });

    await t.step("GET .../usage: the entity's snapshots per resource, zero-filled", async () => {
      const view = await ok<UsageView>(call(dashboard, "/api/entities/key-a/usage?window=hourly"));
      assert.equal(view.window, "hourly");
      assert.deepEqual(view.series.map((s) => s.resource), ["gpt-4"]);
      const points = view.series[0].points;
      assert.equal(points.length, 48);
      assert.equal(points.at(-1)!.windowStart, "2026-11-28T14:00:00Z");
      const snapshots = await limiter.getUsageSnapshots({ entityId: "key-a", window: "hourly" });
      assert.equal(snapshots.length, 2);
      for (const s of snapshots) {
        const p = points.find((x) => x.windowStart === s.windowStart)!;
        assert.deepEqual(p, {
          windowStart: s.windowStart,
          requests: s.requests,
          refused: refusedOf(s),
          consumed: s.consumed,
        });
      }
      assert.deepEqual(points.at(-2)!.consumed, { rpm: 3, tpm: 300 });
      assert.deepEqual(points.at(-1)!.consumed, { rpm: 1, tpm: 100 });
      const sum = points.reduce((n, p) => n + p.requests, 0);
      assert.equal(sum, 2);
      const daily = await ok<UsageView>(
        call(dashboard, "/api/entities/key-a/usage?window=daily&resource=gpt-4"),
      );
      assert.equal(daily.series[0].points.length, 30);
      assert.equal(daily.series[0].points.at(-1)!.requests, 2);
      const other = await ok<UsageView>(
        call(dashboard, "/api/entities/key-a/usage?resource=claude"),
      );
      assert.deepEqual(other.series, []);
      const bad = await refused(call(dashboard, "/api/entities/key-a/usage?window=weekly"), 400);
      assert.equal(bad.field, "window");
    });

    await t.step("GET /api/overview: totals, most refused, close to limits", async () => {
      const view = await ok<OverviewView>(call(dashboard, "/api/overview"));
      assert.equal(view.generatedAt, new Date(now).toISOString());
      assert.equal(view.entitiesScanned, 4);
      assert.equal(view.truncated, false);
      assert.equal(view.hourly.length, 48);
      assert.equal(view.daily.length, 30);
      // The library's own snapshots, summed over entities; key-b cascades, so its requests are
      // counted on proj-1 alone.
      const expected = new Map<string, SeriesPoint>();
      for (const entityId of ["proj-1", "key-a", "key-c"]) {
        for (const s of await limiter.getUsageSnapshots({ entityId, window: "hourly" })) {
          const p = expected.get(s.windowStart) ??
            { windowStart: s.windowStart, requests: 0, refused: 0, consumed: {} };
          p.requests += s.requests;
          p.refused += refusedOf(s);
          for (const [k, v] of Object.entries(s.consumed)) p.consumed[k] = (p.consumed[k] ?? 0) + v;
          expected.set(s.windowStart, p);
        }
      }
      // A cascading key's refusals are its own (never counted on its project): they are added.
      for (const s of await limiter.getUsageSnapshots({ entityId: "key-b", window: "hourly" })) {
        const p = expected.get(s.windowStart);
        if (p && refusedOf(s) > 0) p.refused += refusedOf(s);
        else if (refusedOf(s) > 0) {
          expected.set(s.windowStart, {
            windowStart: s.windowStart,
            requests: 0,
            refused: refusedOf(s),
            consumed: {},
          });
        }
      }
      for (const p of view.hourly) {
        assert.deepEqual(
          p,
          expected.get(p.windowStart) ??
            { windowStart: p.windowStart, requests: 0, refused: 0, consumed: {} },
        );
      }
      const hour = (iso: string) => view.hourly.find((p) => p.windowStart === iso)!;
      assert.equal(hour("2026-11-28T13:00:00Z").requests, 2); // key-a, and key-b on proj-1
      assert.equal(hour("2026-11-28T14:00:00Z").requests, 2); // key-a, key-c
      assert.equal(view.daily.at(-1)!.windowStart, "2026-11-28T00:00:00Z");
      assert.equal(view.daily.at(-1)!.requests, 4);
      // Refusals per entity over the last day, from the snapshots that carry them.
      const refusals = [];
      for (const entityId of ["key-a", "key-b", "key-c", "proj-1"]) {
        const hours: UsageSnapshot[] = await limiter.getUsageSnapshots({
          entityId,
          window: "hourly",
        });
        const n = hours.reduce((sum, s) => sum + refusedOf(s), 0);
        if (n > 0) {
          refusals.push({
            entityId,
            refused: n,
            requests: hours.reduce((sum, s) => sum + s.requests, 0),
          });
        }
      }
      assert.deepEqual(view.mostRefused, refusals.sort((a, b) => b.refused - a.refused));
      assert.deepEqual(view.mostRefused, [{ entityId: "key-a", refused: 1, requests: 2 }]);
      assert.equal(hour("2026-11-28T13:00:00Z").refused, 1);
      // Buckets closest to a limit: the resource index of each resource with defaults (gpt-4)
      // or with usage in the snapshots (claude, which has no defaults).
      const listed = [];
      for (const resource of ["gpt-4", "claude"]) {
        for (const b of await limiter.listResourceBuckets({ resource })) {
          listed.push({ resource, b });
        }
      }
      assert.ok(listed.filter((x) => x.resource === "gpt-4").length >= 3);
      assert.ok(listed.some((x) => x.resource === "claude"));
      const close = listed.flatMap(({ resource, b }) =>
        Object.keys(b.capacity).map((limit) => ({
          entityId: b.entityId,
          resource,
          limit,
          available: b.available[limit],
          capacity: b.capacity[limit],
        }))
      ).sort((a, b) =>
        a.available / a.capacity - b.available / b.capacity || (a.entityId < b.entityId ? -1 : 1)
      );
      assert.deepEqual(view.closeToLimit, close.slice(0, 10));
      assert.equal(view.closeToLimit[0].entityId, "key-a");
    });

    await t.step("GET .../audit: the entity's events, newest first, with a cursor", async () => {
      const view = await ok<AuditView>(call(dashboard, "/api/entities/key-a/audit"));
      const library = await limiter.getAuditEvents({ entityId: "key-a" });
      assert.equal(view.available, true);
      assert.deepEqual(
        view.events.map((e) => [e.at, e.action]),
        library.events.map((e) => [
          e.at,
          e.action,
        ]),
      );
      assert.deepEqual(view.events.map((e) => e.action), [
        "limits.set",
        "limits.set",
        "entity.create",
      ]);
      assert.equal(view.events[0].scope, "entity key-a");
      assert.equal(
        view.events[0].summary,
        "limits.set (gpt-4): none → rpm: 10 per 60 s; tpm: 1000 per 60 s",
      );
      assert.equal(view.cursor, undefined);
      for (let i = 0; i < 55; i++) {
        await limiter.setLimits({ entityId: "key-b", resource: `r${i}`, limits: [rpm(i + 1)] });
      }
      const first = await ok<AuditView>(call(dashboard, "/api/entities/key-b/audit"));
      assert.equal(first.events.length, 50);
      assert.ok(first.cursor);
      const next = await ok<AuditView>(
        call(dashboard, `/api/entities/key-b/audit?cursor=${encodeURIComponent(first.cursor!)}`),
      );
      assert.equal(next.events.length, 6); // 5 more sets and the entity's creation
      assert.equal(next.events.at(-1)!.action, "entity.create");
      const bad = await refused(call(dashboard, "/api/entities/key-b/audit?cursor=nonsense"), 400);
      assert.equal(bad.field, "cursor");
    });

    await t.step("a bad entity id in the URL is refused with field, value and rule", async () => {
      for (const path of ["/api/entities/a%23b", "/api/entities/a%23b/buckets"]) {
        const error = await refused(call(dashboard, path), 400);
        assert.equal(error.field, "entityId");
        assert.equal(error.value, '"a#b"');
        assert.match(error.rule!, /letters, digits/);
      }
      const put = await refused(
        call(dashboard, `/api/entities/${"x".repeat(300)}/limits`, {
          method: "PUT",
          body: { resource: "gpt-4", limits: [rpm(1).toJSON()] },
        }),
        400,
      );
      assert.equal(put.field, "entityId");
      await refused(call(dashboard, "/api/nothing"), 404);
    });

    await t.step("cross-site changes are refused (403), nothing written", async () => {
      const before = await limiter.getLimits({ entityId: "key-c" });
      const put = (headers: Record<string, string>) =>
        dashboard.fetch(
          new Request(`${ORIGIN}/api/entities/key-c/limits`, {
            method: "PUT",
            headers,
            body: JSON.stringify({ resource: "*", limits: [rpm(1).toJSON()] }),
          }),
        );
      const json = { "Content-Type": "application/json" };
      await refused(put({ ...json, Origin: "https://evil.example" }), 403);
      await refused(put({ ...json, Origin: "http://127.0.0.1:9999" }), 403);
      await refused(put(json), 403); // no Origin, no Sec-Fetch-Site
      await refused(put({ ...json, "Sec-Fetch-Site": "cross-site" }), 403);
      await refused(put({ Origin: ORIGIN, "Content-Type": "text/plain" }), 403); // a form's
      await refused(
        call(dashboard, "/api/entities/key-c/limits?resource=*", {
          method: "DELETE",
          headers: { Origin: "https://evil.example" },
        }),
        403,
      );
      assert.deepEqual(await limiter.getLimits({ entityId: "key-c" }), before);
      await refused(
        dashboard.fetch(
          new Request(`${ORIGIN}/api/entities/key-c/limits?resource=*`, {
            method: "DELETE",
            headers: { Origin: ORIGIN, "Content-Type": "text/plain" },
          }),
        ),
        403,
      );
      assert.deepEqual(await limiter.getLimits({ entityId: "key-c" }), before);
      // Same origin by Sec-Fetch-Site when a browser sends no Origin.
      await ok(put({ ...json, "Sec-Fetch-Site": "same-origin" }));
      assert.equal((await limiter.getLimits({ entityId: "key-c" }))[0].capacity, 1);
    });

    await t.step("read-only: every change is refused (403), reads answer", async () => {
      const readOnly = createDashboard({ limiter, readOnly: true });
      const info = await ok<InfoView>(call(readOnly, "/api/info"));
      assert.equal(info.readOnly, true);
      const before = await limiter.getLimits({ entityId: "key-c" });
      const error = await refused(
        call(readOnly, "/api/entities/key-c/limits", {
          method: "PUT",
          body: { resource: "*", limits: [rpm(99).toJSON()] },
        }),
        403,
      );
      assert.match(error.message, /read-only/);
      await refused(
        call(readOnly, "/api/entities/key-c/limits?resource=*", { method: "DELETE" }),
        403,
      );
      assert.deepEqual(await limiter.getLimits({ entityId: "key-c" }), before);
      await ok(call(readOnly, "/api/entities/key-c/limits?resource=gpt-4"));
    });

    await t.step("token: missing or wrong 401, right 200; the page needs none", async () => {
      const guarded = createDashboard({ limiter, token: TOKEN });
      const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });
      const missing = await dashboard401(guarded.fetch(new Request(`${ORIGIN}/api/info`)));
      assert.match(missing.message, /token/);
      await dashboard401(call(guarded, "/api/info", bearer("wrong-token-0123456789abcdef")));
      await dashboard401(call(guarded, "/api/info", bearer(TOKEN.slice(0, -1))));
      await dashboard401(call(guarded, "/api/overview", { headers: { Authorization: TOKEN } }));
      const info = await ok<InfoView>(call(guarded, "/api/info", bearer(TOKEN)));
      assert.equal(info.tokenRequired, true);
      await ok(call(guarded, "/api/entities/key-a/buckets", bearer(TOKEN)));
      // A change needs the token too (checked before anything else).
      await dashboard401(
        call(guarded, "/api/entities/key-c/limits", {
          method: "PUT",
          body: { resource: "*", limits: [rpm(7).toJSON()] },
        }),
      );
      const page = await guarded.fetch(new Request(`${ORIGIN}/`));
      assert.equal(page.status, 200);
      assert.doesNotMatch(await page.text(), new RegExp(TOKEN));
      assert.throws(() => createDashboard({ limiter, token: "short" }), /token/);
    });

    await t.step(
      "the page: HTML with the CSP on / and on client routes; files by path",
      async () => {
        for (const path of ["/", "/entities/key-a", "/overview"]) {
          const page = await dashboard.fetch(new Request(`${ORIGIN}${path}`));
          assert.equal(page.status, 200, path);
          assert.match(page.headers.get("Content-Type")!, /^text\/html/);
          assert.equal(
            page.headers.get("Content-Security-Policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
              "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
          );
          assert.equal(page.headers.get("X-Content-Type-Options"), "nosniff");
          assert.equal(page.headers.get("Referrer-Policy"), "no-referrer");
          assert.equal(await page.text(), ASSETS["/"].body);
        }
        for (const [path, asset] of Object.entries(ASSETS)) {
          const r = await dashboard.fetch(new Request(`${ORIGIN}${path}`));
          assert.equal(r.headers.get("Content-Type"), asset.type);
          const etag = r.headers.get("ETag")!;
          assert.match(etag, /^"[0-9a-f]{32}"$/);
          assert.equal(await r.text(), asset.body);
          const again = await dashboard.fetch(
            new Request(`${ORIGIN}${path}`, { headers: { "If-None-Match": etag } }),
          );
          assert.equal(again.status, 304);
        }
        assert.equal((await dashboard.fetch(new Request(`${ORIGIN}/missing.js`))).status, 404);
        const api = await dashboard.fetch(new Request(`${ORIGIN}/api/info`));
        assert.match(api.headers.get("Content-Security-Policy")!, /default-src 'none'/);
        // No inline script in the page: every script is a file of its own.
        assert.doesNotMatch(ASSETS["/"].body, /<script(?![^>]*\bsrc=)[^>]*>/i);
      },
    );

    await t.step("Host check: only the names given are served", async () => {
      const local = createDashboard({ limiter, allowedHosts: ["127.0.0.1:8787"] });
      await ok(call(local, "/api/info"));
      const rebound = await local.fetch(
        new Request("http://evil.example:8787/api/info", {
          headers: { Host: "evil.example:8787" },
        }),
      );
      assert.equal(rebound.status, 403);
    });

    await t.step(
      "PUT .../limits without resource is a 400 naming it, nothing written",
      async () => {
        const before = await limiter.listStoredLimits({ entityId: "key-c" });
        const error = await refused(
          call(dashboard, "/api/entities/key-c/limits", {
            method: "PUT",
            body: { limits: [rpm(1).toJSON()] },
          }),
          400,
        );
        assert.equal(error.field, "resource");
        assert.match(error.message, /\*/);
        assert.deepEqual(await limiter.listStoredLimits({ entityId: "key-c" }), before);
      },
    );

    await t.step(
      "GET .../buckets after a reshard and a lowered limit: what available() says",
      async () => {
        const saved = now;
        const agree = async (expected: { rpm: number; capacity: number; shards?: number }) => {
          const library = await limiter.available({ entityId: "key-r", resource: "hot" });
          assert.deepEqual(library, { rpm: expected.rpm });
          const view = await ok<BucketsView>(call(dashboard, "/api/entities/key-r/buckets"));
          assert.equal(view.now, now);
          const [bucket, ...others] = view.buckets;
          assert.deepEqual(others, []);
          assert.equal(bucket.limit, "rpm");
          assert.equal(bucket.available, library.rpm);
          assert.equal(bucket.capacity, expected.capacity);
          assert.ok(bucket.available <= bucket.capacity);
          assert.equal(bucket.fromLastWrite, undefined);
          return bucket;
        };
        try {
          const take = async (n: number) => {
            for (let i = 0; i < n; i++) {
              await limiter.acquire(
                { entityId: "key-r", resource: "hot", consume: { rpm: 1 } },
                () => {},
              );
            }
          };
          await limiter.setLimits({ entityId: "key-r", resource: "hot", limits: [rpm(60)] });
          await take(10); // on the unsharded item, which stays in the table
          await agree({ rpm: 50, capacity: 60 });
          await limiter.setLimits({
            entityId: "key-r",
            resource: "hot",
            limits: [rpm(60)],
            shards: 2,
          });
          const { shardsSince } = await limiter.getShards({ entityId: "key-r", resource: "hot" });
          // A minute past the switch (the new items count as empty there, then refill), 4 taken
          // on the 2 shards.
          now = Date.parse(shardsSince!) + 60_000;
          await take(4);
          const resharded = await agree({ rpm: 56, capacity: 60 });
          // Full when both shards are: 2 s a token on a shard of 30 per minute, 2 to 4 taken on
          // the fuller one (the shard is picked at random).
          assert.ok(
            [4_000, 6_000, 8_000].includes(resharded.msUntilFull),
            `${resharded.msUntilFull}`,
          );
          // Was: 116 of 120, the old item summed in as a third shard.
          // The limit lowered to 6 per minute: the tats converted to it, as acquires do.
          await limiter.setLimits({ entityId: "key-r", resource: "hot", limits: [rpm(6)] });
          const lowered = await agree({ rpm: 6, capacity: 6 });
          assert.equal(lowered.msUntilFull, 0);
          // 2 more taken: the page follows the lowered limit, not the one of the writes.
          await take(2);
          const after = await limiter.available({ entityId: "key-r", resource: "hot" });
          assert.ok(after.rpm < 6);
          await agree({ rpm: after.rpm, capacity: 6 });
          const wait = await limiter.timeUntilAvailable({
            entityId: "key-r",
            resource: "hot",
            needed: { rpm: 3 }, // one shard's whole capacity (6 on 2 shards)
          });
          const view = await ok<BucketsView>(call(dashboard, "/api/entities/key-r/buckets"));
          assert.ok(view.buckets[0].msUntilFull >= wait * 1000);
        } finally {
          now = saved;
        }
      },
    );

    await t.step("GET .../buckets costs, warm: 1 Query and 1 GetItem per shard", async () => {
      const metered = localClient(ddb.endpoint);
      const meter = new Meter(metered);
      const other = new RateLimiter({ tableName, client: metered, clock: () => now });
      const saved = now;
      const { shardsSince } = await limiter.getShards({ entityId: "key-r", resource: "hot" });
      now = Date.parse(shardsSince!) + 60_000; // the 2 shards in force
      try {
        const board = createDashboard({ limiter: other, log: () => {} });
        meter.reset();
        await ok<BucketsView>(call(board, "/api/entities/key-r/buckets")); // the limits cached
        const cold = meter.calls.filter((c) => c.command !== "DescribeTableCommand");
        console.log(
          `cold: ${cold.map((c) => c.command).join(", ")}: ` +
            `${cold.reduce((n, c) => n + c.rcu, 0)} RCU (Local)`,
        );
        meter.reset();
        const view = await ok<BucketsView>(call(board, "/api/entities/key-r/buckets"));
        assert.equal(view.buckets.length, 1);
        // Its bucket items (1 Query, the old layout's item among them), the 2 shards of the
        // layout in force (2 GetItems); the limits come from the cache.
        assert.deepEqual(meter.calls.map((c) => c.command).sort(), [
          "GetItemCommand",
          "GetItemCommand",
          "QueryCommand",
        ]);
        const rcu = meter.calls.reduce((n, c) => n + c.rcu, 0);
        console.log(`one refresh of .../buckets, 2 shards: ${rcu} RCU (Local)`);
      } finally {
        now = saved;
        await other.close();
        metered.destroy();
      }
    });

    await t.step(
      "GET .../buckets: a resource with no stored limits, under its last write's limits",
      async () => {
        await limiter.deleteSystemDefaults();
        try {
          await limiter.acquire({
            entityId: "key-app",
            resource: "inline",
            limits: [rpm(30)],
            useStoredLimits: false,
            consume: { rpm: 5 },
          }, () => {});
          const view = await ok<BucketsView>(call(dashboard, "/api/entities/key-app/buckets"));
          assert.deepEqual(view.buckets, [{
            resource: "inline",
            limit: "rpm",
            available: 25,
            capacity: 30,
            msUntilFull: 10_000,
            fromLastWrite: true,
          }]);
        } finally {
          await limiter.setSystemDefaults({ limits: [rpm(1000)] });
        }
      },
    );

    await t.step("errors: a missing table is a 500 with its message; an outage a 503", async () => {
      const lost = new RateLimiter({ tableName: uniqueTableName("missing"), client });
      try {
        const error = await refused(call(createDashboard({ limiter: lost }), "/api/tree"), 500);
        assert.match(error.message, /does not exist|not found/i);
        assert.doesNotMatch(error.message, /\n\s+at /); // no stack trace
      } finally {
        await lost.close();
      }
      const outage = answerFor(new RateLimiterUnavailable("read", new Error("ECONNREFUSED")));
      assert.equal(outage.status, 503);
      const body = await outage.json();
      assert.doesNotMatch(JSON.stringify(body), /ECONNREFUSED/);
      const unknown = answerFor(new Error("secret detail"));
      assert.equal(unknown.status, 500);
      assert.doesNotMatch(await unknown.text(), /secret detail/);
    });
  } finally {
    await limiter.close();
  }
});

async function dashboard401(response: Response | Promise<Response>): Promise<ErrorView> {
  const r = await response;
  assert.equal(r.headers.get("WWW-Authenticate"), 'Bearer realm="zae-limiter dashboard"');
  return await refused(r, 401);
}

Deno.test("dashboard API on a limiter with a custom backend (createTestLimiter)", async (t) => {
  let now = at("2026-11-28T14:30:00Z");
  const limiter = createTestLimiter({ clock: () => now });
  const dashboard = createDashboard({ limiter, log: () => {} });
  try {
    await t.step("seed: stored limits and an acquire", async () => {
      await limiter.createEntity({ entityId: "key-m" });
      await limiter.setLimits({
        entityId: "key-m",
        resource: "api",
        limits: [Limit.perMinute("rpm", 10)],
      });
      await limiter.acquire({ entityId: "key-m", resource: "api", consume: { rpm: 4 } }, () => {});
      now += 6_000;
    });

    await t.step(
      "GET /api/entities/:id answers 200 with the stored limits' resources",
      async () => {
        const page = await ok<EntityPageView>(call(dashboard, "/api/entities/key-m"));
        assert.equal(page.entity.entityId, "key-m");
        assert.deepEqual(page.resources, ["api"]);
      },
    );

    await t.step("GET .../buckets reads as limiter.available does", async () => {
      const view = await ok<BucketsView>(call(dashboard, "/api/entities/key-m/buckets"));
      assert.deepEqual(await limiter.available({ entityId: "key-m", resource: "api" }), { rpm: 7 });
      assert.deepEqual(view, {
        now,
        buckets: [{
          resource: "api",
          limit: "rpm",
          available: 7,
          capacity: 10,
          msUntilFull: 18_000,
        }],
      });
    });
  } finally {
    await limiter.close();
  }
});
