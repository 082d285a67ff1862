import assert from "node:assert/strict";
import { QueryCommand } from "@aws-sdk/client-dynamodb";
import {
  EntityDisabledError,
  EntityNotFoundError,
  FailureMode,
  getUsageSnapshots,
  Limit,
  RateLimiter,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { parseAuditItem } from "../src/audit_record.ts";
import { withRateLimit } from "../src/http/mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const rpm = (n: number) => Limit.perMinute("rpm", n);

Deno.test({
  name: "entity and resource controls on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const meter = new Meter(client);
    const tableName = uniqueTableName("controls");
    const now = T0;
    const limiter = new RateLimiter({ tableName, client, createTable: true, clock: () => now });
    const limits = [rpm(10)];
    const call = (entityId: string, resource = "api", consume = 1) =>
      limiter.acquire({ entityId, resource, limits, consume: { rpm: consume } });
    const refusal = async (p: Promise<unknown>) => {
      const err = await p.then(() => undefined, (e) => e);
      assert.ok(err instanceof EntityDisabledError, `expected EntityDisabledError, got ${err}`);
      assert.ok(!(err instanceof RateLimitExceeded));
      return err;
    };
    const writes = () =>
      meter.calls.filter((c) =>
        ["UpdateItemCommand", "TransactWriteItemsCommand", "PutItemCommand"].includes(c.command)
      );
    try {
      await limiter.createEntity({ entityId: "proj-1" });
      await limiter.createEntity({ entityId: "proj-2" });
      await limiter.createEntity({ entityId: "key-a", parentId: "proj-1", cascade: true });
      await limiter.createEntity({ entityId: "key-b", parentId: "proj-1" });
      await limiter.createEntity({ entityId: "solo" });

      await t.step("a warm acquire costs one write with the controls cached", async () => {
        await (await call("solo")).commit(); // reads metadata and resource controls once
        meter.reset();
        await (await call("solo")).commit();
        assert.deepEqual(meter.calls.map((c) => c.command), ["UpdateItemCommand"]);
        meter.reset();
        await (await call("key-a")).commit(); // cold: the key, then its parent
        assert.deepEqual(meter.calls.map((c) => c.command), [
          "BatchGetItemCommand",
          "BatchGetItemCommand",
          "TransactWriteItemsCommand",
        ]);
        meter.reset();
        await (await call("key-a")).commit();
        assert.deepEqual(meter.calls.map((c) => c.command), ["TransactWriteItemsCommand"]);
      });

      await t.step("disable and enable an entity", async () => {
        const before = await limiter.available({ entityId: "solo", resource: "api", limits });
        const off = await limiter.disableEntity("solo");
        assert.equal(off.disabled, true);
        assert.equal((await limiter.getEntity("solo"))?.disabled, true);
        meter.reset();
        const err = await refusal(call("solo"));
        assert.equal(err.entityId, "solo");
        assert.equal(err.resource, "api");
        assert.equal(err.disabled, "entity");
        assert.equal(err.disabledId, "solo");
        assert.deepEqual(writes(), [], "refused before any bucket write");
        await refusal(limiter.available({ entityId: "solo", resource: "api", limits }));
        await refusal(
          limiter.timeUntilAvailable({ entityId: "solo", resource: "api", limits, needed: {} }),
        );
        // FAIL_OPEN does not let a disabled entity through.
        const open = new RateLimiter({
          tableName,
          client,
          clock: () => now,
          failureMode: FailureMode.FAIL_OPEN,
        });
        await refusal(
          open.acquire({ entityId: "solo", resource: "api", limits, consume: { rpm: 1 } }),
        );
        await open.close();
        const on = await limiter.enableEntity("solo");
        assert.equal(on.disabled, undefined);
        await (await call("solo")).commit();
        const after = await limiter.available({ entityId: "solo", resource: "api", limits });
        assert.equal(after.rpm, before.rpm - 1);
        await assert.rejects(limiter.disableEntity("nobody"), EntityNotFoundError);
      });

      await t.step("a disabled parent refuses its children, cascading or not", async () => {
        await limiter.disableEntity("proj-1");
        for (const id of ["key-a", "key-b"]) {
          const err = await refusal(call(id));
          assert.equal(err.disabled, "parent");
          assert.equal(err.disabledId, "proj-1");
          assert.match(err.message, /parent "proj-1" of entity/);
        }
        await (await call("solo")).commit();
        await limiter.enableEntity("proj-1");
        await (await call("key-b")).commit();
      });

      await t.step("disable and enable a resource", async () => {
        await limiter.disableResource("gpt-4");
        assert.deepEqual(await limiter.getResourceControls("gpt-4"), { disabled: true });
        for (const id of ["solo", "never-created"]) {
          const err = await refusal(call(id, "gpt-4"));
          assert.equal(err.disabled, "resource");
          assert.equal(err.disabledId, "gpt-4");
        }
        await (await call("solo", "api")).commit(); // other resources unaffected
        await limiter.enableResource("gpt-4");
        assert.deepEqual(await limiter.getResourceControls("gpt-4"), {});
        await (await call("solo", "gpt-4")).commit();
      });

      await t.step("bypass admits without consuming and counts the request", async () => {
        const base = { entityId: "solo", resource: "bypassed", limits };
        await (await limiter.acquire({ ...base, consume: { rpm: 3 } })).commit();
        await limiter.setBypass({ entityId: "solo", bypass: true });
        assert.equal((await limiter.acquire({ ...base, consume: { rpm: 1 } })).bypassed, true);
        meter.reset();
        for (let i = 0; i < 3; i++) {
          const lease = await limiter.acquire({ ...base, consume: { rpm: 50 } }); // > capacity
          assert.equal(lease.bypassed, true);
          assert.deepEqual(lease.statuses, []);
          await lease.adjust({ rpm: 5 });
          if (i === 2) await lease.rollback();
          else await lease.commit();
        }
        // One UpdateItem per bypassed request (the count), nothing else.
        assert.deepEqual(meter.calls.map((c) => c.command), [
          "UpdateItemCommand",
          "UpdateItemCommand",
          "UpdateItemCommand",
        ]);
        assert.ok(meter.calls.every((c) => c.tableWcu === 1 && c.indexWcu === 0));
        assert.equal((await limiter.available(base)).rpm, 7, "the bucket is untouched");
        const hours = await getUsageSnapshots(client, tableName, {
          entityId: "solo",
          resource: "bypassed",
          window: "hourly",
        });
        assert.equal(hours.length, 1);
        assert.equal(hours[0].bypassed, 4);
        assert.deepEqual(hours[0].consumed, {});
        // Bypass on a parent covers its children; disabled wins over bypass.
        await limiter.setBypass({ entityId: "proj-1", bypass: true });
        assert.equal((await call("key-a", "api", 50)).bypassed, true);
        await limiter.disableEntity("key-a");
        await refusal(call("key-a"));
        await limiter.enableEntity("key-a");
        await limiter.setBypass({ entityId: "proj-1", bypass: false });
        await limiter.setBypass({ entityId: "solo", bypass: false });
        await assert.rejects(call("solo", "bypassed", 50), RateLimitExceeded);
        await assert.rejects(
          limiter.setBypass({ entityId: "solo", bypass: "yes" as unknown as boolean }),
          /Invalid bypass: "yes" \(must be a boolean\)/,
        );
      });

      await t.step("set-parent and set-cascade", async () => {
        // Move key-b from proj-1 to proj-2, with cascade: the new parent's bucket is debited.
        await limiter.setParent({ entityId: "key-b", parentId: "proj-2" });
        assert.deepEqual((await limiter.listChildren("proj-1")).map((e) => e.entityId), ["key-a"]);
        assert.deepEqual((await limiter.listChildren("proj-2")).map((e) => e.entityId), ["key-b"]);
        const e = await limiter.setCascade({ entityId: "key-b", cascade: true });
        assert.equal(e.cascade, true);
        assert.equal(e.parentId, "proj-2");
        const base = { resource: "moved", limits };
        await (await limiter.acquire({ entityId: "key-b", ...base, consume: { rpm: 2 } })).commit();
        assert.equal((await limiter.available({ entityId: "proj-2", ...base })).rpm, 8);
        assert.equal((await limiter.available({ entityId: "proj-1", ...base })).rpm, 10);
        // Detach.
        const alone = await limiter.setParent({ entityId: "key-b" });
        assert.equal(alone.parentId, undefined);
        assert.deepEqual(await limiter.listChildren("proj-2"), []);
        await (await limiter.acquire({ entityId: "key-b", ...base, consume: { rpm: 1 } })).commit();
        assert.equal((await limiter.available({ entityId: "proj-2", ...base })).rpm, 8);
        // The rules.
        await assert.rejects(
          limiter.setParent({ entityId: "key-b", parentId: "missing" }),
          (err) => err instanceof EntityNotFoundError && err.entityId === "missing",
        );
        await assert.rejects(
          limiter.setParent({ entityId: "key-b", parentId: "key-a" }),
          (err) => err instanceof ValidationError && /top-level.*proj-1/.test(err.message),
        );
        await assert.rejects(
          limiter.setParent({ entityId: "proj-1", parentId: "proj-2" }),
          (err) => err instanceof ValidationError && /has 1 children \(key-a\)/.test(err.message),
        );
        await assert.rejects(
          limiter.setParent({ entityId: "key-b", parentId: "key-b" }),
          /must differ from entityId/,
        );
        await assert.rejects(
          limiter.setParent({ entityId: "nobody", parentId: "proj-2" }),
          (err) => err instanceof EntityNotFoundError && err.entityId === "nobody",
        );
        await assert.rejects(
          limiter.setCascade({ entityId: "nobody", cascade: true }),
          EntityNotFoundError,
        );
        assert.equal((await limiter.getEntity("key-b"))?.parentId, undefined);
      });

      await t.step("every control writes its audit event", async () => {
        const out = await client.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: "PK = :p",
            ExpressionAttributeValues: { ":p": { S: "AUDIT" } },
          }),
        );
        const events = (out.Items ?? []).map(parseAuditItem);
        const actions = new Set(events.map((e) => e.action));
        for (
          const action of [
            "entity.disable",
            "entity.enable",
            "entity.bypass",
            "entity.set-parent",
            "entity.set-cascade",
            "resource.disable",
            "resource.enable",
          ]
        ) assert.ok(actions.has(action), `no ${action} event`);
        const moved = events.find((e) =>
          e.action === "entity.set-parent" && (e.after as { parentId: unknown }).parentId === null
        );
        assert.deepEqual(moved?.before, { parentId: "proj-2" });
        assert.deepEqual(moved?.scope, { kind: "entity", entityId: "key-b" });
        const res = events.find((e) => e.action === "resource.disable");
        assert.deepEqual([res?.scope, res?.before, res?.after], [
          { kind: "resource", resource: "gpt-4" },
          { disabled: false },
          { disabled: true },
        ]);
        // A refused change writes no event.
        const refused = events.filter((e) =>
          e.action === "entity.set-parent" &&
          (e.after as { parentId: unknown }).parentId === "missing"
        );
        assert.deepEqual(refused, []);
      });

      await t.step("a second limiter sees a change within its cache time", async () => {
        const ttl = 400;
        const other = new RateLimiter({
          tableName,
          client,
          clock: () => now,
          limitsCacheTtlMs: ttl,
        });
        const go = () =>
          other.acquire({ entityId: "solo", resource: "api", limits, consume: { rpm: 0 } });
        await (await go()).commit(); // cached: enabled
        await limiter.disableEntity("solo");
        await new Promise((r) => setTimeout(r, 2 * ttl + 100));
        await refusal(go()); // past twice the TTL the entry is read again
        await limiter.enableEntity("solo");
        await limiter.disableResource("api");
        await new Promise((r) => setTimeout(r, 2 * ttl + 100));
        await refusal(go());
        await limiter.enableResource("api");
        await new Promise((r) => setTimeout(r, 2 * ttl + 100));
        await (await go()).commit();
        await other.close();
      });

      await t.step("the HTTP helpers answer 403, never 429", async () => {
        await limiter.disableEntity("solo");
        const handler = withRateLimit(() => new Response("ok"), {
          limiter,
          key: (req) => ({
            entityId: req.headers.get("x-key") ?? "anonymous",
            resource: "api",
            limits,
            consume: { rpm: 1 },
          }),
        });
        const res = await handler(new Request("http://x/", { headers: { "x-key": "solo" } }));
        assert.equal(res.status, 403);
        assert.equal(res.headers.get("Retry-After"), null);
        assert.deepEqual(await res.json(), {
          error: "entity_disabled",
          message: 'Refused: entity "solo" is disabled',
          entity_id: "solo",
          resource: "api",
          disabled: "entity",
          disabled_id: "solo",
        });
        const ok = await handler(new Request("http://x/", { headers: { "x-key": "other" } }));
        assert.equal(ok.status, 200);
        await ok.text();
        await limiter.enableEntity("solo");
      });

      await t.step("the CLI", async () => {
        const conn = ["--table-name", tableName, "--endpoint-url", ddb.endpoint];
        const env = { AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "x", AWS_REGION: "us-east-1" };
        const run = (...args: string[]) => cli([...args, ...conn], env);
        let r = await run("entity", "disable", "solo");
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^solo: disabled, parent \(none\), cascade false/);
        await refusal(call("solo"));
        r = await run("entity", "enable", "solo");
        assert.equal(r.code, 0, r.err);
        r = await run("entity", "bypass", "solo", "maybe");
        assert.equal(r.code, 2);
        assert.match(r.err, /bypass: "maybe" \(must be on or off\)/);
        r = await run("entity", "bypass", "solo", "on", "--json");
        assert.equal(r.code, 0, r.err);
        assert.equal(JSON.parse(r.out).bypass, true);
        r = await run("entity", "bypass", "solo", "off");
        assert.equal(r.code, 0, r.err);
        r = await run("entity", "set-parent", "key-b", "--parent", "proj-1");
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /parent proj-1/);
        r = await run("entity", "set-parent", "key-b");
        assert.equal(r.code, 2);
        r = await run("entity", "set-cascade", "key-b", "on");
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /cascade true/);
        r = await run("entity", "set-parent", "key-b", "--none");
        assert.equal(r.code, 0, r.err);
        r = await run("entity", "disable", "nobody", "--json");
        assert.equal(r.code, 1);
        assert.equal(JSON.parse(r.out).error.type, "EntityNotFoundError");
        r = await run("resource", "disable", "cli-res");
        assert.equal(r.code, 0, r.err);
        assert.equal(r.out, "cli-res: disabled\n");
        r = await run("resource", "controls", "cli-res", "--json");
        assert.deepEqual(JSON.parse(r.out), { resource: "cli-res", disabled: true });
        await refusal(call("solo", "cli-res"));
        r = await run("resource", "enable", "cli-res");
        assert.equal(r.code, 0, r.err);
        // This limiter has the resource cached as disabled; a new one reads it enabled.
        const fresh = new RateLimiter({ tableName, client, clock: () => now });
        await (await fresh.acquire({
          entityId: "solo",
          resource: "cli-res",
          limits,
          consume: { rpm: 1 },
        })).commit();
        await fresh.close();
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});

Deno.test("controls on the in-memory backend", async () => {
  const backend = new InMemoryBackend();
  const limiter = new RateLimiter({ tableName: "in-memory", backend, clock: () => T0 });
  const limits = [rpm(5)];
  const go = (entityId: string, resource = "api", n = 1) =>
    limiter.acquire({ entityId, resource, limits, consume: { rpm: n } });
  await limiter.createEntity({ entityId: "proj" });
  await limiter.createEntity({ entityId: "key", parentId: "proj" });
  await limiter.disableEntity("proj");
  const err = await go("key").catch((e) => e);
  assert.ok(err instanceof EntityDisabledError && err.disabled === "parent");
  await limiter.enableEntity("proj");
  await limiter.disableResource("api");
  assert.ok((await go("key").catch((e) => e)) instanceof EntityDisabledError);
  await limiter.enableResource("api");
  await limiter.setBypass({ entityId: "key", bypass: true });
  assert.equal((await go("key", "api", 50)).bypassed, true);
  assert.equal(backend.bypassed("key", "api"), 1);
  await limiter.setParent({ entityId: "key" });
  assert.deepEqual(await limiter.listChildren("proj"), []);
  await assert.rejects(
    limiter.setParent({ entityId: "proj", parentId: "nobody" }),
    EntityNotFoundError,
  );
  await limiter.setParent({ entityId: "key", parentId: "proj" });
  await limiter.createEntity({ entityId: "other" });
  await assert.rejects(
    limiter.setParent({ entityId: "other", parentId: "key" }),
    /must be a top-level entity/,
  );
  const actions = backend.auditLog.map((e) => e.action);
  for (
    const a of [
      "entity.disable",
      "entity.enable",
      "resource.disable",
      "resource.enable",
      "entity.bypass",
      "entity.set-parent",
    ]
  ) assert.ok(actions.includes(a), a);
  await limiter.close();
});
