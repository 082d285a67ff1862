/**
 * The audit trail on DynamoDB Local: every admin method of `RateLimiter` writes exactly one event
 * (a method with no recipe fails the test by name), the hot path writes none, concurrent changes
 * from two limiters never lose an event and end in the newest event's state, and
 * `getAuditEvents` pages newest first and refuses a crafted cursor.
 */
import assert from "node:assert/strict";
import {
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  QueryCommand,
} from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, ValidationError } from "../mod.ts";
import { type AuditRecord, parseAuditItem } from "../src/audit_record.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

/** Methods that change nothing an operator would audit: reads, the hot path, lifecycle. */
const NOT_AUDITED = new Set([
  "constructor",
  "acquire",
  "available",
  "timeUntilAvailable",
  "held",
  "flush",
  "getEntity",
  "listChildren",
  "getLimits",
  "getShards",
  "getUsageSnapshots",
  "getUsageSummary",
  "listResourceBuckets",
  "getAuditEvents",
  "createTable", // creates the table itself (development); no entity, limit or control changes
  "listEntities",
  "getResourceControls",
  "getResourceDefaults",
  "listResources",
  "getSystemDefaults",
  "listStoredLimits",
  "ping",
  "close",
]);

/** A call of one admin method, and the action of the one event it must write. */
interface Recipe {
  action: string;
  /** Makes what the call needs (its own events are not counted). */
  setup?: (l: RateLimiter, id: string) => Promise<unknown>;
  call: (l: RateLimiter, id: string) => Promise<unknown>;
}

const rpm = (n: number) => Limit.perMinute("rpm", n);
const mk = (l: RateLimiter, id: string) => l.createEntity({ entityId: id });

/** One recipe per admin method: add a line here with each new admin method. */
const RECIPES: Record<string, Recipe> = {
  createEntity: { action: "entity.create", call: (l, id) => l.createEntity({ entityId: id }) },
  deleteEntity: {
    action: "entity.delete",
    setup: (l, id) => l.createEntity({ entityId: id }),
    call: (l, id) => l.deleteEntity(id),
  },
  setLimits: {
    action: "limits.set",
    call: (l, id) => l.setLimits({ entityId: id, resource: "api", limits: [rpm(10)] }),
  },
  deleteLimits: {
    action: "limits.delete",
    setup: (l, id) => l.setLimits({ entityId: id, resource: "api", limits: [rpm(10)] }),
    call: (l, id) => l.deleteLimits({ entityId: id, resource: "api" }),
  },
  disableEntity: { action: "entity.disable", setup: mk, call: (l, id) => l.disableEntity(id) },
  enableEntity: {
    action: "entity.enable",
    setup: (l, id) => mk(l, id).then(() => l.disableEntity(id)),
    call: (l, id) => l.enableEntity(id),
  },
  setBypass: {
    action: "entity.bypass",
    setup: mk,
    call: (l, id) => l.setBypass({ entityId: id, bypass: true }),
  },
  setParent: {
    action: "entity.set-parent",
    setup: (l, id) => mk(l, id).then(() => mk(l, `${id}-p`)),
    call: (l, id) => l.setParent({ entityId: id, parentId: `${id}-p` }),
  },
  setCascade: {
    action: "entity.set-cascade",
    setup: mk,
    call: (l, id) => l.setCascade({ entityId: id, cascade: true }),
  },
  disableResource: { action: "resource.disable", call: (l, id) => l.disableResource(id) },
  enableResource: {
    action: "resource.enable",
    setup: (l, id) => l.disableResource(id),
    call: (l, id) => l.enableResource(id),
  },
  resetBucket: {
    action: "bucket.reset",
    setup: (l, id) =>
      l.acquire({ entityId: id, resource: "api", limits: [rpm(10)], consume: { rpm: 4 } }),
    call: (l, id) => l.resetBucket({ entityId: id, resource: "api" }),
  },
  topUp: {
    action: "bucket.top-up",
    setup: (l, id) =>
      l.acquire({ entityId: id, resource: "api", limits: [rpm(10)], consume: { rpm: 4 } }),
    call: (l, id) =>
      l.topUp({ entityId: id, resource: "api", limit: "rpm", amount: 2, idempotencyKey: id }),
  },
  setResourceDefaults: {
    action: "defaults.resource.set",
    call: (l, id) => l.setResourceDefaults({ resource: id, limits: [rpm(10)] }),
  },
  deleteResourceDefaults: {
    action: "defaults.resource.delete",
    setup: (l, id) => l.setResourceDefaults({ resource: id, limits: [rpm(10)] }),
    call: (l, id) => l.deleteResourceDefaults({ resource: id }),
  },
  setSystemDefaults: {
    action: "defaults.system.set",
    call: (l) => l.setSystemDefaults({ limits: [rpm(1000)] }),
  },
  deleteSystemDefaults: {
    action: "defaults.system.delete",
    setup: (l) => l.setSystemDefaults({ limits: [rpm(1000)] }),
    call: (l) => l.deleteSystemDefaults(),
  },
};

/**
 * The public methods of `RateLimiter` (non-getter, string-named), its own and those it inherits
 * from the classes of its facade (`LimiterLimits`, `LimiterAdmin`), up to `Object.prototype`.
 */
function limiterMethods(): string[] {
  const names = new Set<string>();
  for (
    let proto = RateLimiter.prototype;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (d !== undefined && typeof d.value === "function") names.add(name);
    }
  }
  return [...names];
}

async function auditEvents(client: DynamoDBClient, tableName: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let start: Record<string, never> | undefined;
  do {
    const page = await client.send(
      new QueryCommand({
        TableName: tableName,
        KeyConditionExpression: "PK = :p",
        ExpressionAttributeValues: { ":p": { S: "AUDIT" } },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    out.push(...(page.Items ?? []).map(parseAuditItem));
    start = page.LastEvaluatedKey as typeof start;
  } while (start);
  return out;
}

Deno.test("every public method of RateLimiter is either audited by a recipe or listed read-only", () => {
  const missing = limiterMethods().filter((m) => !NOT_AUDITED.has(m) && !RECIPES[m]);
  assert.deepEqual(
    missing.map((m) => `admin method ${m} has no audit recipe`),
    [],
  );
  // The lists name real methods (a renamed method cannot hide behind a stale entry).
  const methods = new Set(limiterMethods());
  for (const name of [...NOT_AUDITED, ...Object.keys(RECIPES)]) {
    assert.ok(methods.has(name), `${name} is listed but is no method of RateLimiter`);
  }
});

Deno.test({
  name: "audit trail on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const client2 = localClient(ddb.endpoint);
    const tableName = uniqueTableName("audit");
    const limiter = new RateLimiter({
      tableName,
      client,
      createTable: true,
      principal: "ops@example.com",
    });
    const other = new RateLimiter({ tableName, client: client2, principal: "ci@example.com" });
    try {
      await limiter.createTable();
      await t.step("each admin method writes exactly one event with its action", async () => {
        let n = 0;
        for (const name of limiterMethods().filter((m) => !NOT_AUDITED.has(m))) {
          const recipe = RECIPES[name];
          assert.ok(recipe, `admin method ${name} has no audit recipe`);
          const id = `recipe-${name}-${n++}`;
          await recipe.setup?.(limiter, id);
          const before = await auditEvents(client, tableName);
          await recipe.call(limiter, id);
          const after = await auditEvents(client, tableName);
          const seen = new Set(before.map((e) => e.eventId));
          const added = after.filter((e) => !seen.has(e.eventId));
          assert.deepEqual(
            added.map((e) => e.action),
            [recipe.action],
            `${name} wrote ${added.length} events`,
          );
          assert.equal(added[0].principal, "ops@example.com");
          assert.ok(
            added[0].expiresAtSec > Date.now() / 1000 + 89 * 86_400 &&
              added[0].expiresAtSec <= Date.now() / 1000 + 90 * 86_400 + 1,
            `default retention is 90 days: ${added[0].expiresAtSec}`,
          );
        }
      });

      await t.step("the hot path writes no event", async () => {
        await limiter.createEntity({ entityId: "hot-proj" });
        await limiter.createEntity({ entityId: "hot-key", parentId: "hot-proj", cascade: true });
        await limiter.setLimits({ entityId: "hot-key", resource: "api", limits: [rpm(100)] });
        const before = await auditEvents(client, tableName);
        const limits = [rpm(100), Limit.perMinute("tpm", 10_000)];
        await other.acquire(
          { entityId: "hot-key", resource: "api", limits, consume: { rpm: 1, tpm: 100 } },
          async (lease) => await lease.adjust({ tpm: 50 }),
        );
        const lease = await other.acquire({
          entityId: "hot-key",
          resource: "api",
          limits,
          consume: { rpm: 1 },
          useStoredLimits: true,
          cascade: true,
        });
        await lease.adjust({ rpm: 1 });
        await lease.rollback();
        const committed = await other.acquire({
          entityId: "solo",
          resource: "api",
          limits,
          consume: { rpm: 1 },
        });
        await committed.commit();
        await other.available({ entityId: "solo", resource: "api", limits });
        await other.flush();
        assert.deepEqual(await auditEvents(client, tableName), before);
      });

      await t.step(
        "20 concurrent setLimits from two limiters: 20 events, newest wins",
        async () => {
          await limiter.createEntity({ entityId: "race" });
          const calls = Array.from({ length: 20 }, (_, i) =>
            (i % 2 ? other : limiter).setLimits({
              entityId: "race",
              resource: "api",
              limits: [rpm(i + 1)],
            }));
          await Promise.all(calls);
          const events = (await auditEvents(client, tableName))
            .filter((e) =>
              e.action === "limits.set" && e.scope.kind === "entity" &&
              e.scope.entityId === "race"
            );
          assert.equal(events.length, 20);
          const capacities = events.map((e) =>
            (e.after as { limits: { capacity: number }[] }).limits[0].capacity
          );
          assert.deepEqual([...capacities].sort((a, b) => a - b), range(1, 20));
          // Newest by sort key (what getAuditEvents returns first).
          const { events: [newest] } = await limiter.getAuditEvents({ entityId: "race", limit: 1 });
          const stored = await limiter.getLimits({ entityId: "race", resource: "api" });
          assert.deepEqual(
            stored.map((l) => l.capacity),
            (newest.after as { limits: { capacity: number }[] }).limits.map((l) => l.capacity),
          );
          // Each event's `before` is the `after` of the one before it: nothing was lost between.
          const chain = [...events].sort((a, b) =>
            a.atMs - b.atMs || (a.eventId < b.eventId ? -1 : 1)
          );
          for (let i = 1; i < chain.length; i++) {
            assert.deepEqual(chain[i].before, chain[i - 1].after, `event ${i}`);
          }
          assert.equal(chain[0].before, undefined);
        },
      );

      await t.step("getAuditEvents: newest first, paged, filtered", async () => {
        const all: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await limiter.getAuditEvents({ limit: 7, ...(cursor ? { cursor } : {}) });
          assert.ok(page.events.length <= 7);
          all.push(...page.events.map((e) => `${e.at}|${e.eventId}`));
          cursor = page.cursor;
          pages++;
        } while (cursor);
        const raw = await auditEvents(client, tableName);
        assert.equal(all.length, raw.length);
        assert.equal(new Set(all).size, all.length);
        assert.ok(pages >= Math.ceil(raw.length / 7));
        assert.deepEqual(all, [...all].sort().reverse());

        const race = await limiter.getAuditEvents({ entityId: "race", limit: 1000 });
        assert.equal(race.events.length, 21); // create + 20 sets
        assert.ok(race.events.every((e) => e.entityId === "race"));
        assert.equal(race.cursor, undefined);

        const api = await limiter.getAuditEvents({ resource: "api", limit: 1000 });
        assert.ok(api.events.length >= 20 && api.events.every((e) => e.resource === "api"));
        const raceApi = await limiter.getAuditEvents({
          entityId: "race",
          resource: "api",
          limit: 5,
        });
        assert.equal(raceApi.events.length, 5);
        const rest = await limiter.getAuditEvents({
          entityId: "race",
          resource: "api",
          limit: 1000,
          cursor: raceApi.cursor,
        });
        assert.equal(rest.events.length, 15);

        const newest = race.events[0];
        const since = await limiter.getAuditEvents({ entityId: "race", since: newest.at });
        assert.ok(since.events.length >= 1 && since.events.every((e) => e.at >= newest.at));
        const future = await limiter.getAuditEvents({ since: new Date(Date.now() + 86_400_000) });
        assert.deepEqual(future, { events: [] });
      });

      await t.step("bad input and crafted cursors are refused before any read", async () => {
        for (
          const [options, field] of [
            [{ limit: 0 }, "limit"],
            [{ limit: 1001 }, "limit"],
            [{ limit: 1.5 }, "limit"],
            [{ since: "yesterday" }, "since"],
            [{ since: -1 }, "since"],
            [{ since: new Date(NaN) }, "since"],
            [{ entityId: "bad id" }, "entityId"],
            [{ resource: "1bad" }, "resource"],
            [{ cursor: "not-a-cursor" }, "cursor"],
          ] as const
        ) {
          await assert.rejects(
            limiter.getAuditEvents(options as never),
            (err) => err instanceof ValidationError && err.field === field,
            JSON.stringify(options),
          );
        }
        const page = await limiter.getAuditEvents({ entityId: "race", limit: 2 });
        assert.ok(page.cursor);
        // A cursor of one entity's query cannot read another's, nor the whole trail.
        await assert.rejects(
          limiter.getAuditEvents({ entityId: "hot-key", cursor: page.cursor }),
          (err) => err instanceof ValidationError && err.field === "cursor",
        );
        await assert.rejects(
          limiter.getAuditEvents({ cursor: page.cursor }),
          (err) => err instanceof ValidationError && err.field === "cursor",
        );
        // A crafted cursor pointing at an entity's items instead of an event is refused.
        const b64 = (o: unknown) =>
          btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
        for (
          const crafted of [
            { v: 1, sk: "#META" },
            { v: 1, sk: "0000000000000#x", e: "race", PK: "ENTITY#race" },
            { v: 1, sk: "9999999999999#x\u0000" },
            { v: 2, sk: "0000000000000#x" },
          ]
        ) {
          await assert.rejects(
            limiter.getAuditEvents({ cursor: b64(crafted) }),
            (err) => err instanceof ValidationError && err.field === "cursor",
            JSON.stringify(crafted),
          );
        }
        // A well-formed cursor only moves within the audit partition.
        const far = await limiter.getAuditEvents({
          cursor: b64({ v: 1, sk: "9999999999999#zzz" }),
          limit: 1000,
        });
        assert.ok(far.events.length > 0 && far.events.every((e) => e.eventId.length > 0));
        assert.equal(far.events.length, (await auditEvents(client, tableName)).length);
      });

      await t.step("the table's TTL attribute is the events' ttl", async () => {
        const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
        assert.equal(ttl.TimeToLiveDescription?.AttributeName, "ttl");
        const raw = await client.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: "PK = :p",
            ExpressionAttributeValues: { ":p": { S: "AUDIT" } },
            Limit: 1,
          }),
        );
        assert.match(raw.Items?.[0]?.ttl?.N ?? "", /^\d{10}$/);
      });

      await t.step("zae-limiter audit list: all pages up to --limit, newest first", async () => {
        const args = ["--table-name", tableName, "--endpoint-url", ddb.endpoint];
        const json = await cli(["audit", "list", ...args, "--entity", "race", "--json"]);
        assert.equal(json.code, 0, json.err);
        const listed = JSON.parse(json.out) as { action: string; at: string }[];
        assert.equal(listed.length, 21);
        assert.equal(listed.at(-1)?.action, "entity.create");
        const some = await cli(["audit", "list", ...args, "--limit", "3", "--json"]);
        assert.equal(JSON.parse(some.out).length, 3);
        const text = await cli(["audit", "list", ...args, "--entity", "race", "--limit", "2"]);
        assert.equal(text.code, 0, text.err);
        const lines = text.out.trim().split("\n");
        assert.equal(lines.length, 2);
        assert.match(
          lines[0],
          /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}(ops|ci)@example\.com {2}limits\.set {2}entity race \(api\) {2}\[rpm:\d+\/min\] → \[rpm:\d+\/min\]$/,
        );
        const since = await cli(["audit", "list", ...args, "--since", "1d", "--resource", "api"]);
        assert.equal(since.code, 0, since.err);
        assert.ok(since.out.includes("limits.set"));
        const none = await cli(["audit", "list", ...args, "--since", "2200-01-01"]);
        assert.equal(none.out.trim(), "No audit events.");
        const bad = await cli(["audit", "list", ...args, "--limit", "0"]);
        assert.notEqual(bad.code, 0);
        assert.match(bad.err, /limit/);
        const badSince = await cli(["audit", "list", ...args, "--since", "last week"]);
        assert.equal(badSince.code, 2);
      });
    } finally {
      await limiter.close();
      await other.close();
      client.destroy();
      client2.destroy();
      await ddb.stop();
    }
  },
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

Deno.test("the in-memory backend reads its audit log the same way", async () => {
  const backend = new InMemoryBackend();
  let now = 1_800_000_000_000;
  const limiter = new RateLimiter({ tableName: "mem", backend, clock: () => now });
  try {
    await limiter.createEntity({ entityId: "a" });
    for (let i = 1; i <= 5; i++) {
      now += 1000;
      await limiter.setLimits({ entityId: "a", resource: "api", limits: [rpm(i)] });
    }
    await limiter.createEntity({ entityId: "b" });
    const first = await limiter.getAuditEvents({ entityId: "a", limit: 4 });
    assert.equal(first.events.length, 4);
    assert.ok(first.cursor);
    const rest = await limiter.getAuditEvents({ entityId: "a", limit: 4, cursor: first.cursor });
    assert.deepEqual(rest.events.map((e) => e.action), ["limits.set", "entity.create"]);
    assert.equal(rest.cursor, undefined);
    const caps = first.events.map((e) =>
      (e.after as { limits: { capacity: number }[] }).limits[0].capacity
    );
    assert.deepEqual(caps, [5, 4, 3, 2]);
    assert.equal((await limiter.getAuditEvents({ resource: "api" })).events.length, 5);
    assert.equal((await limiter.getAuditEvents()).events[0].entityId, "b");
    await assert.rejects(
      limiter.getAuditEvents({ entityId: "b", cursor: first.cursor }),
      (err) => err instanceof ValidationError && err.field === "cursor",
    );
  } finally {
    await limiter.close();
  }
});
