/**
 * `listEntities` and `zae-limiter entity list`: the same answers on DynamoDB Local (GSI3) and on
 * the in-memory backend; paging with the cursor, `withCustomLimits`, deletes, bad input; GSI3 keys
 * on entity items only (never on buckets).
 */

import assert from "node:assert/strict";
import { type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { type Entity, Limit, RateLimiter, ValidationError } from "../mod.ts";
import { createTestLimiter } from "../src/testing/mod.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const rpm = Limit.perMinute("rpm", 10);

async function all(
  limiter: RateLimiter,
  options: { withCustomLimits?: boolean; limit?: number } = {},
): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await limiter.listEntities({ ...options, ...(cursor ? { cursor } : {}) });
    pages++;
    assert.ok(page.entities.length <= (options.limit ?? 100));
    ids.push(...page.entities.map((e: Entity) => e.entityId));
    cursor = page.cursor;
  } while (cursor);
  return { ids, pages };
}

/** The same checks on any limiter. */
async function checks(t: Deno.TestContext, limiter: RateLimiter): Promise<void> {
  // Ids chosen so that one is a prefix of others (`a` < `a#LIMIT#…` < `a-b`, `a.c`, `a1`).
  const ids = ["a", "a-b", "a.c", "a1", "b", "b:x", "c@d", "p", "p-child", "z"];
  await t.step("an empty table lists nothing", async () => {
    assert.deepEqual(await limiter.listEntities(), { entities: [] });
  });
  for (const id of ids) {
    await limiter.createEntity(
      id === "p-child"
        ? { entityId: id, parentId: "p", cascade: true, name: "Child" }
        : { entityId: id },
    );
  }
  await limiter.setLimits({ entityId: "a", resource: "gpt-4", limits: [rpm] });
  await limiter.setLimits({ entityId: "a", limits: [rpm] });
  await limiter.setLimits({ entityId: "a1", resource: "x/y", limits: [rpm] });
  await limiter.setLimits({ entityId: "p-child", limits: [rpm] });
  await limiter.acquire({ entityId: "b", resource: "api", limits: [rpm], consume: { rpm: 1 } });

  await t.step("every entity, sorted, on one page and in pages of every size", async () => {
    assert.deepEqual((await all(limiter)).ids, ids);
    for (const limit of [1, 2, 3, 9, 10, 11]) {
      const r = await all(limiter, { limit });
      assert.deepEqual(r.ids, ids, `limit ${limit}`);
      assert.ok(r.pages >= Math.ceil(ids.length / limit), `limit ${limit}: ${r.pages} pages`);
    }
  });
  await t.step("an entity as stored", async () => {
    const page = await limiter.listEntities({
      limit: 1,
      cursor: (await limiter.listEntities({ limit: 8 })).cursor,
    });
    assert.equal(page.entities[0].entityId, "p-child");
    assert.equal(page.entities[0].parentId, "p");
    assert.equal(page.entities[0].cascade, true);
    assert.equal(page.entities[0].name, "Child");
  });
  await t.step("withCustomLimits: only entities with stored limits, in pages too", async () => {
    assert.deepEqual((await all(limiter, { withCustomLimits: true })).ids, ["a", "a1", "p-child"]);
    assert.deepEqual(
      (await all(limiter, { withCustomLimits: true, limit: 1 })).ids,
      ["a", "a1", "p-child"],
    );
  });
  await t.step("deleted limits and entities leave the list", async () => {
    await limiter.deleteLimits({ entityId: "a1", resource: "x/y" });
    await limiter.deleteEntity("z");
    assert.deepEqual((await all(limiter, { withCustomLimits: true })).ids, ["a", "p-child"]);
    assert.deepEqual((await all(limiter)).ids, ids.filter((id) => id !== "z"));
  });
  await t.step("bad input is refused with the field, the value and the rule", async () => {
    for (
      const [options, field] of [
        [{ limit: 0 }, "limit"],
        [{ limit: 1001 }, "limit"],
        [{ limit: 1.5 }, "limit"],
        [{ cursor: "not a cursor!" }, "cursor"],
        [{ cursor: btoa("e1:ENTITY#x").replace(/=+$/, "") }, "cursor"],
        [{ withCustomLimits: "yes" }, "withCustomLimits"],
      ] as const
    ) {
      await assert.rejects(
        limiter.listEntities(options as never),
        (e: unknown) => e instanceof ValidationError && e.message.includes(field),
        JSON.stringify(options),
      );
    }
  });
}

Deno.test({
  name: "listEntities on DynamoDB Local (GSI3) and the CLI's entity list",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("entities");
    const limiter = new RateLimiter({ tableName, client, createTable: true });
    try {
      await checks(t, limiter);
      await t.step("GSI3 keys on metadata and stored limits, never on buckets", async () => {
        const items = await scan(client, tableName);
        const buckets = items.filter((i) => i.SK.startsWith("#BUCKET#"));
        assert.ok(buckets.length > 0);
        for (const b of buckets) assert.equal(b.GSI3PK, undefined);
        const a = items.filter((i) => i.PK === "ENTITY#a").map((i) => [i.SK, i.GSI3SK]);
        assert.deepEqual(a.sort(), [
          ["#LIMIT#*", "a#LIMIT#*"],
          ["#LIMIT#gpt-4", "a#LIMIT#gpt-4"],
          ["#META", "a"],
        ]);
      });
      await t.step("zae-limiter entity list, text and --json, all pages", async () => {
        const env = { AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local" };
        const args = [
          "--table-name",
          tableName,
          "--endpoint-url",
          ddb.endpoint,
          "--region",
          "us-east-1",
        ];
        const text = await cli(["entity", "list", ...args], env);
        assert.equal(text.code, 0, text.err);
        assert.deepEqual(
          text.out.trim().split("\n").map((l) => l.split("  ")[0]),
          ["a", "a-b", "a.c", "a1", "b", "b:x", "c@d", "p", "p-child"],
        );
        assert.match(text.out, /^p-child {2}Child {2}parent p {2}cascade$/m);
        const json = await cli(["entity", "list", "--with-custom-limits", "--json", ...args], env);
        assert.equal(json.code, 0, json.err);
        assert.deepEqual(JSON.parse(json.out).map((e: Entity) => e.entityId), ["a", "p-child"]);
        // More than one page of the library's (1000) is still every entity.
        for (let i = 0; i < 1005; i++) {
          await limiter.createEntity({ entityId: `bulk-${String(i).padStart(4, "0")}` });
        }
        const many = await cli(["entity", "list", "--json", ...args], env);
        assert.equal(many.code, 0, many.err);
        assert.equal(JSON.parse(many.out).length, 9 + 1005);
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});

Deno.test("listEntities on the in-memory backend answers as DynamoDB does", async (t) => {
  const limiter = createTestLimiter({ clock: () => 0 });
  await checks(t, limiter);
  await limiter.close();
});

async function scan(client: DynamoDBClient, tableName: string) {
  const out = await client.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }));
  return (out.Items ?? []).map((i) => ({
    PK: i.PK.S!,
    SK: i.SK.S!,
    GSI3PK: i.GSI3PK?.S,
    GSI3SK: i.GSI3SK?.S,
  }));
}
