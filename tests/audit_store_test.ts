/**
 * The audit event of each admin change is stored in the same transaction as the change, on
 * DynamoDB Local and in memory.
 */
import assert from "node:assert/strict";
import { QueryCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter } from "../mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { parseAuditItem } from "../src/audit_record.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

Deno.test({
  name: "admin changes write their audit events in the same transaction",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName();
    const limiter = new RateLimiter({
      tableName,
      client,
      createTable: true,
      clock: () => 1_800_000_000_000,
      principal: "ops@example.com",
    });
    const events = async () =>
      ((await client.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: "PK = :p",
          ExpressionAttributeValues: { ":p": { S: "AUDIT" } },
        }),
      )).Items ?? []).map(parseAuditItem);
    try {
      await t.step("create, set limits, delete limits, delete entity: one event each", async () => {
        await limiter.createEntity({ entityId: "proj-1" });
        await limiter.createEntity({ entityId: "key-1", parentId: "proj-1" });
        await limiter.setLimits({
          entityId: "key-1",
          resource: "api",
          limits: [Limit.perMinute("rpm", 10)],
        });
        await limiter.setLimits({
          entityId: "key-1",
          resource: "api",
          limits: [Limit.perMinute("rpm", 20)],
        });
        await limiter.deleteLimits({ entityId: "key-1", resource: "api" });
        await limiter.deleteEntity("key-1");
        const got = await events();
        assert.deepEqual(got.map((e) => e.action).sort(), [
          "entity.create",
          "entity.create",
          "entity.delete",
          "limits.delete",
          "limits.set",
          "limits.set",
        ]);
        assert.ok(got.every((e) => e.principal === "ops@example.com"));
        const second = got.filter((e) => e.action === "limits.set").find((e) => e.before);
        assert.equal((second?.before as { limits: { capacity: number }[] }).limits[0].capacity, 10);
        assert.equal((second?.after as { limits: { capacity: number }[] }).limits[0].capacity, 20);
        const del = got.find((e) => e.action === "entity.delete");
        assert.equal((del?.before as { parentId: string }).parentId, "proj-1");
      });
      await t.step("a refused change writes no event", async () => {
        const before = (await events()).length;
        await assert.rejects(limiter.createEntity({ entityId: "proj-1" }), /exists/);
        await assert.rejects(
          limiter.createEntity({ entityId: "key-2", parentId: "nobody" }),
          /nobody/,
        );
        assert.equal((await events()).length, before);
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});

Deno.test("the in-memory backend keeps the same audit events", async () => {
  const backend = new InMemoryBackend();
  const limiter = new RateLimiter({ tableName: "mem", backend, principal: "tester" });
  await limiter.createEntity({ entityId: "proj-1" });
  await assert.rejects(limiter.createEntity({ entityId: "proj-1" }));
  await limiter.setLimits({ entityId: "proj-1", limits: [Limit.perMinute("rpm", 5)] });
  assert.deepEqual(backend.auditLog.map((e) => [e.action, e.resource, e.principal]), [
    ["entity.create", undefined, "tester"],
    ["limits.set", "*", "tester"],
  ]);
  await limiter.close();
});
