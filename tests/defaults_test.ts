/**
 * The four levels of stored limits (entity+resource, entity-wide, resource default, system
 * default, then the call's), their cache and cost, their audit events and their CLI commands, on
 * DynamoDB Local; the precedence also on the in-memory backend.
 */

import assert from "node:assert/strict";
import { QueryCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, ValidationError } from "../mod.ts";
import { parseAuditItem } from "../src/audit_record.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const rpm = (n: number) => Limit.perMinute("rpm", n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The capacity of `rpm` an acquire of one token resolves to for `entityId` on `resource`. */
async function resolved(limiter: RateLimiter, entityId: string, resource: string) {
  const lease = await limiter.acquire({ entityId, resource, consume: { rpm: 1 } });
  await lease.rollback();
  return lease.statuses.map((s) => `${s.entityId}:${s.limit.capacity}`).join(" ");
}

/**
 * Every level stored, then removed one at a time: each removal reveals the next level. Run on
 * both backends.
 */
async function precedence(limiter: RateLimiter): Promise<void> {
  const r = "gpt-4";
  await limiter.createEntity({ entityId: "key-1" });
  await limiter.setSystemDefaults({ limits: [rpm(10)] });
  await limiter.setResourceDefaults({ resource: r, limits: [rpm(20)] });
  await limiter.setLimits({ entityId: "key-1", limits: [rpm(30)] });
  await limiter.setLimits({ entityId: "key-1", resource: r, limits: [rpm(40)] });
  assert.equal(await resolved(limiter, "key-1", r), "key-1:40");
  // available and timeUntilAvailable resolve the same way, without limits
  assert.deepEqual(await limiter.available({ entityId: "key-1", resource: r }), { rpm: 40 });
  assert.equal(
    await limiter.timeUntilAvailable({ entityId: "key-1", resource: r, needed: { rpm: 40 } }),
    0,
  );
  // the call's limits win without useStoredLimits, lose with it
  const code = { entityId: "key-1", resource: r, consume: { rpm: 1 }, limits: [rpm(5)] };
  assert.equal((await limiter.acquire(code)).statuses[0].limit.capacity, 5);
  const stored = await limiter.acquire({ ...code, useStoredLimits: true });
  assert.equal(stored.statuses[0].limit.capacity, 40);
  await limiter.deleteLimits({ entityId: "key-1", resource: r });
  assert.equal(await resolved(limiter, "key-1", r), "key-1:30");
  await limiter.deleteLimits({ entityId: "key-1" });
  assert.equal(await resolved(limiter, "key-1", r), "key-1:20");
  // another resource, and an entity that was never created, get the system defaults
  assert.equal(await resolved(limiter, "key-1", "claude"), "key-1:10");
  assert.equal(await resolved(limiter, "stranger", r), "stranger:20");
  await limiter.deleteResourceDefaults({ resource: r });
  assert.equal(await resolved(limiter, "key-1", r), "key-1:10");
  await limiter.deleteSystemDefaults();
  // nothing stored: the call's limits, else a ValidationError naming limits
  const last = await limiter.acquire({ ...code, useStoredLimits: true });
  assert.equal(last.statuses[0].limit.capacity, 5);
  const err = await resolved(limiter, "key-1", r).catch((e) => e);
  assert.ok(err instanceof ValidationError, String(err));
  assert.equal(err.field, "limits");
  assert.match(
    err.message,
    /no stored limits exist for entity "key-1" and resource "gpt-4" .*none were passed/,
  );
  await assert.rejects(limiter.available({ entityId: "key-1", resource: r }), ValidationError);
}

Deno.test("four levels of stored limits on the in-memory backend", async () => {
  const backend = new InMemoryBackend();
  const limiter = new RateLimiter({ tableName: "mem", backend, clock: () => T0 });
  await precedence(limiter);
  assert.deepEqual(backend.auditLog.map((e) => e.action).filter((a) => a.startsWith("defaults")), [
    "defaults.system.set",
    "defaults.resource.set",
    "defaults.resource.delete",
    "defaults.system.delete",
  ]);
  await limiter.close();
});

Deno.test({
  name: "four levels of stored limits on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const meteredClient = localClient(ddb.endpoint);
    const otherClient = localClient(ddb.endpoint);
    const meter = new Meter(meteredClient);
    /** The keys of each BatchGetItem the metered client sends, as `PK/SK`. */
    const batchKeys: string[][] = [];
    meteredClient.middlewareStack.add(
      (next, context) => (args) => {
        if (context.commandName === "BatchGetItemCommand") {
          const input = args.input as {
            RequestItems: Record<string, { Keys: Record<string, { S?: string }>[] }>;
          };
          batchKeys.push(
            Object.values(input.RequestItems)[0].Keys.map((k) => `${k.PK.S}/${k.SK.S}`).sort(),
          );
        }
        return next(args);
      },
      { step: "initialize", name: "batchKeys" },
    );
    const tableName = uniqueTableName("defaults");
    const limiter = new RateLimiter({ tableName, client, createTable: true, clock: () => T0 });
    try {
      await t.step("each level, removed in turn, reveals the next", async () => {
        await precedence(limiter);
      });

      await t.step("a parent resolves its own limits through the four levels", async () => {
        await limiter.createEntity({ entityId: "proj-1" });
        await limiter.createEntity({ entityId: "key-a", parentId: "proj-1", cascade: true });
        await limiter.setResourceDefaults({ resource: "chat", limits: [rpm(20)] });
        await limiter.setLimits({ entityId: "key-a", resource: "chat", limits: [rpm(40)] });
        // the key has its own; the project falls to the resource's default
        assert.equal(await resolved(limiter, "key-a", "chat"), "key-a:40 proj-1:20");
        await limiter.setLimits({ entityId: "proj-1", limits: [rpm(30)] });
        assert.equal(await resolved(limiter, "key-a", "chat"), "key-a:40 proj-1:30");
        await limiter.setSystemDefaults({ limits: [rpm(10)] });
        await limiter.deleteLimits({ entityId: "key-a", resource: "chat" });
        await limiter.deleteResourceDefaults({ resource: "chat" });
        assert.equal(await resolved(limiter, "key-a", "chat"), "key-a:10 proj-1:30");
        await limiter.deleteSystemDefaults();
        await limiter.deleteLimits({ entityId: "proj-1" });
      });

      await t.step("nothing resolves: ValidationError, and nothing written", async () => {
        const cold = new RateLimiter({ tableName, client: meteredClient, clock: () => T0 });
        await cold.createEntity({ entityId: "lonely" });
        await cold.setLimits({ entityId: "key-b", resource: "x", limits: [rpm(5)] }); // no entity
        await cold.createEntity({ entityId: "proj-2" });
        await cold.createEntity({ entityId: "key-c", parentId: "proj-2", cascade: true });
        await cold.setLimits({ entityId: "key-c", resource: "x", limits: [rpm(5)] });
        meter.reset();
        const err = await cold.acquire({ entityId: "lonely", resource: "x", consume: { rpm: 1 } })
          .catch((e) => e);
        assert.ok(err instanceof ValidationError, String(err));
        assert.match(err.message, /^Invalid limits: undefined \(no stored limits exist for entity/);
        // the parent of a cascading key, with nothing at any level, is named too
        const parent = await cold.acquire({ entityId: "key-c", resource: "x", consume: { rpm: 1 } })
          .catch((e) => e);
        assert.ok(parent instanceof ValidationError, String(parent));
        assert.match(parent.message, /entity "proj-2" \(parent of "key-c", which cascades\)/);
        assert.deepEqual(
          meter.calls.filter((c) => c.command !== "BatchGetItemCommand").map((c) => c.command),
          [],
        );
        // useStoredLimits: false with no limits can resolve nothing: refused before any call
        meter.reset();
        const refused = await cold.acquire({
          entityId: "key-b",
          resource: "x",
          consume: { rpm: 1 },
          useStoredLimits: false,
        }).catch((e) => e);
        assert.ok(refused instanceof ValidationError);
        assert.match(refused.message, /must be given when useStoredLimits is false/);
        assert.deepEqual(meter.calls, []);
        for (const entityId of ["lonely", "key-c", "proj-2"]) {
          const items = await client.send(
            new QueryCommand({
              TableName: tableName,
              KeyConditionExpression: "PK = :pk AND begins_with(SK, :b)",
              ExpressionAttributeValues: {
                ":pk": { S: `ENTITY#${entityId}` },
                ":b": { S: "#BUCKET#" },
              },
            }),
          );
          assert.equal(items.Count, 0, `${entityId} has a bucket`);
        }
        await cold.close();
      });

      await t.step("cold: one read and one write; warm: one write", async () => {
        await limiter.setResourceDefaults({ resource: "meter", limits: [rpm(100)] });
        const cold = new RateLimiter({ tableName, client: meteredClient, clock: () => T0 });
        meter.reset();
        batchKeys.length = 0;
        const call = { entityId: "metered", resource: "meter", consume: { rpm: 1 } };
        await (await cold.acquire(call)).commit();
        assert.deepEqual(meter.calls.map((c) => c.command), [
          "BatchGetItemCommand",
          "UpdateItemCommand",
        ]);
        meter.reset();
        const lease = await cold.acquire(call);
        await lease.commit();
        assert.deepEqual(meter.calls.map((c) => [c.command, c.tableWcu, c.indexWcu]), [
          ["UpdateItemCommand", 1, 0],
        ]);
        assert.equal(lease.statuses[0].available, 98);
        // another entity on the same resource reads only its own items: the defaults are cached
        // once per resource
        meter.reset();
        await (await cold.acquire({ ...call, entityId: "metered-2" })).commit();
        assert.deepEqual(meter.calls.map((c) => c.command), [
          "BatchGetItemCommand",
          "UpdateItemCommand",
        ]);
        // the first read held the entity's items and the resource's part of SYSTEM; the second
        // only the entity's
        assert.deepEqual(batchKeys, [
          [
            "ENTITY#metered/#LIMIT#*",
            "ENTITY#metered/#LIMIT#meter",
            "ENTITY#metered/#META",
            "SYSTEM/#CONTROL#meter",
            "SYSTEM/#LIMIT#*",
            "SYSTEM/#LIMIT#meter",
          ],
          ["ENTITY#metered-2/#LIMIT#*", "ENTITY#metered-2/#LIMIT#meter", "ENTITY#metered-2/#META"],
        ]);
        await cold.close();
      });

      await t.step("a change reaches another limiter within twice its cache time", async () => {
        const TTL = 500;
        const other = new RateLimiter({
          tableName,
          client: otherClient,
          clock: () => T0,
          limitsCacheTtlMs: TTL,
        });
        await limiter.setResourceDefaults({ resource: "moving", limits: [rpm(20)] });
        const readAt = Date.now();
        assert.equal(await resolved(other, "k", "moving"), "k:20");
        // The entry is aged from its read's start, somewhere between these two instants: from
        // `readDone + 2 × TTL` on it is surely past twice its TTL, so it is read again inline.
        const readDone = Date.now();
        await limiter.setResourceDefaults({ resource: "moving", limits: [rpm(50)] });
        const cached = await resolved(other, "k", "moving");
        if (Date.now() - readAt < TTL) assert.equal(cached, "k:20"); // still fresh: cached
        await sleep(readDone + 2 * TTL + 5 - Date.now());
        assert.equal(await resolved(other, "k", "moving"), "k:50");
        // the system defaults, the same way
        await limiter.setSystemDefaults({ limits: [rpm(7)] });
        assert.equal(await resolved(other, "k", "elsewhere"), "k:7");
        const since = Date.now(); // (the read started before: see above)
        await limiter.setSystemDefaults({ limits: [rpm(8)] });
        await sleep(since + 2 * TTL + 5 - Date.now());
        assert.equal(await resolved(other, "k", "elsewhere"), "k:8");
        await limiter.deleteSystemDefaults();
        // a change through the limiter itself applies at once
        await other.setResourceDefaults({ resource: "moving", limits: [rpm(60)] });
        assert.equal(await resolved(other, "k", "moving"), "k:60");
        await other.close();
      });

      await t.step("get, list, listStoredLimits and validation", async () => {
        assert.deepEqual(await limiter.getResourceDefaults({ resource: "nothing" }), []);
        await limiter.setResourceDefaults({
          resource: "b-model",
          limits: [rpm(1), Limit.perHour("rph", 10)],
        });
        const got = await limiter.getResourceDefaults({ resource: "b-model" });
        assert.deepEqual(got.map((l) => l.toJSON()), [
          rpm(1).toJSON(),
          Limit.perHour("rph", 10).toJSON(),
        ]);
        assert.deepEqual(await limiter.listResources(), ["b-model", "meter", "moving"]);
        assert.deepEqual(await limiter.getSystemDefaults(), []);
        await limiter.createEntity({ entityId: "listed" });
        await limiter.setLimits({ entityId: "listed", resource: "z", limits: [rpm(3)] });
        await limiter.setLimits({ entityId: "listed", limits: [rpm(2)] });
        await limiter.setLimits({ entityId: "listed", resource: "a", limits: [rpm(4)] });
        const listed = await limiter.listStoredLimits({ entityId: "listed" });
        assert.deepEqual(
          listed.map((e) => [e.resource, e.limits[0].capacity]),
          [[undefined, 2], ["a", 4], ["z", 3]],
        );
        const bad = await limiter.setResourceDefaults({ resource: "a#b", limits: [rpm(1)] })
          .catch((e) => e);
        assert.ok(bad instanceof ValidationError);
        assert.equal(bad.field, "resource");
        const dup = await limiter.setSystemDefaults({ limits: [rpm(1), rpm(2)] }).catch((e) => e);
        assert.ok(dup instanceof ValidationError);
        assert.equal(dup.field, "limits[1].name");
        await assert.rejects(limiter.setSystemDefaults({ limits: [] }), /at least one Limit/);
        assert.deepEqual(await limiter.getSystemDefaults(), []);
      });

      await t.step("every defaults change is one audit event, in its transaction", async () => {
        const out = await client.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: "PK = :a",
            ExpressionAttributeValues: { ":a": { S: "AUDIT" } },
            ConsistentRead: true,
          }),
        );
        const events = (out.Items ?? []).map(parseAuditItem)
          .filter((e) => e.action.startsWith("defaults."));
        const first = events.slice(0, 4);
        assert.deepEqual(first.map((e) => [e.action, e.scope]), [
          ["defaults.system.set", { kind: "system" }],
          ["defaults.resource.set", { kind: "resource", resource: "gpt-4" }],
          ["defaults.resource.delete", { kind: "resource", resource: "gpt-4" }],
          ["defaults.system.delete", { kind: "system" }],
        ]);
        assert.deepEqual(first[1].before, undefined);
        assert.deepEqual(first[1].after, [rpm(20).toJSON()]);
        assert.deepEqual(first[2].before, [rpm(20).toJSON()]);
        assert.equal(first[2].after, undefined);
        assert.equal(first[0].principal, "local");
        // one event per change made so far (the refused ones wrote none)
        const count = (action: string) => events.filter((e) => e.action === action).length;
        assert.equal(count("defaults.system.set"), 4);
        assert.equal(count("defaults.system.delete"), 3);
        assert.equal(count("defaults.resource.set"), 7);
        assert.equal(count("defaults.resource.delete"), 2);
        const byScope = await client.send(
          new QueryCommand({
            TableName: tableName,
            IndexName: "GSI1",
            KeyConditionExpression: "GSI1PK = :s",
            ExpressionAttributeValues: { ":s": { S: "AUDIT#RESOURCE#moving" } },
          }),
        );
        assert.equal(byScope.Count, 3);
      });

      await t.step("CLI: resource and system defaults", async () => {
        const env = { AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint, ZAE_LIMITER_TABLE: tableName };
        const set = await cli(
          [
            "resource",
            "set-defaults",
            "cli-model",
            "--limit",
            "tpm:10000/min:15000",
            "--limit",
            "rpm:100/min",
          ],
          env,
        );
        assert.deepEqual(set, {
          code: 0,
          out: "Stored defaults tpm:10000/min:15000, rpm:100/min for resource cli-model.\n",
          err: "",
        });
        assert.deepEqual(
          (await limiter.getResourceDefaults({ resource: "cli-model" })).map((l) => l.capacity),
          [15_000, 100],
        );
        assert.deepEqual(await cli(["resource", "get-defaults", "cli-model"], env), {
          code: 0,
          out: "tpm:10000/min:15000\nrpm:100/min\n",
          err: "",
        });
        const json = await cli(["resource", "get-defaults", "cli-model", "--json"], env);
        assert.equal(JSON.parse(json.out).limits[1].capacity, 100);
        const list = await cli(["resource", "list", "--json"], env);
        assert.deepEqual(JSON.parse(list.out), {
          resources: ["b-model", "cli-model", "meter", "moving"],
        });
        assert.equal((await cli(["resource", "delete-defaults", "cli-model"], env)).code, 0);
        assert.deepEqual(await cli(["resource", "get-defaults", "cli-model"], env), {
          code: 0,
          out: "No default limits stored for resource cli-model.\n",
          err: "",
        });
        const bad = await cli(["resource", "set-defaults", "bad#name", "--limit", "rpm:1"], env);
        assert.equal(bad.code, 2);
        assert.match(bad.err, /resource/);

        assert.deepEqual(await cli(["system", "set-defaults", "--limit", "rpm:60/min"], env), {
          code: 0,
          out: "Stored system defaults rpm:60/min.\n",
          err: "",
        });
        assert.deepEqual((await limiter.getSystemDefaults()).map((l) => l.capacity), [60]);
        assert.equal((await cli(["system", "get-defaults"], env)).out, "rpm:60/min\n");
        // available --stored resolves the system defaults for any entity
        const avail = await cli(
          ["available", "--entity", "anyone", "--resource", "any", "--stored"],
          env,
        );
        assert.deepEqual(avail, { code: 0, out: "rpm: 60\n", err: "" });
        assert.equal((await cli(["system", "delete-defaults"], env)).code, 0);
        assert.deepEqual(JSON.parse((await cli(["system", "get-defaults", "--json"], env)).out), {
          limits: [],
        });
        const usage = await cli(["system", "set-defaults"], env);
        assert.equal(usage.code, 2);
      });
    } finally {
      await limiter.close();
      client.destroy();
      meteredClient.destroy();
      otherClient.destroy();
      await ddb.stop();
    }
  },
});
