/**
 * Schema versions on DynamoDB Local: a fresh table is version 2; a version-1 table (created as the
 * library before version 2 did, with its item shapes) is served and warned about once, refuses
 * what needs version 2, and is upgraded in place, idempotently; a newer table is refused on
 * every call, in both failure modes.
 */

import assert from "node:assert/strict";
import {
  type AttributeValue,
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
} from "@aws-sdk/client-dynamodb";
import {
  ConfigurationError,
  FailureMode,
  Limit,
  RateLimiter,
  upgradeTable,
  ValidationError,
} from "../mod.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const rpm = Limit.perMinute("rpm", 100);

/** The table as the library created it before schema version 2 (no GSI3, no version item). */
async function createVersion1Table(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: "PAY_PER_REQUEST",
      AttributeDefinitions: ["PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"].map((n) => ({
        AttributeName: n,
        AttributeType: "S",
      })),
      KeySchema: [
        { AttributeName: "PK", KeyType: "HASH" },
        { AttributeName: "SK", KeyType: "RANGE" },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: "GSI1",
          KeySchema: [
            { AttributeName: "GSI1PK", KeyType: "HASH" },
            { AttributeName: "GSI1SK", KeyType: "RANGE" },
          ],
          Projection: { ProjectionType: "ALL" },
        },
        {
          IndexName: "GSI2",
          KeySchema: [
            { AttributeName: "GSI2PK", KeyType: "HASH" },
            { AttributeName: "GSI2SK", KeyType: "RANGE" },
          ],
          Projection: { ProjectionType: "KEYS_ONLY" },
        },
      ],
      StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_AND_OLD_IMAGES" },
    }),
  );
}

type Attrs = Record<string, AttributeValue>;

/** A metadata item as the version-1 library wrote it. */
function v1Meta(id: string, parentId?: string): Attrs {
  const item: Attrs = {
    PK: { S: `ENTITY#${id}` },
    SK: { S: "#META" },
    entityId: { S: id },
    cascade: { BOOL: parentId !== undefined },
    metadata: { M: { team: { S: "core" } } },
    createdAt: { S: "2026-01-02T03:04:05.000Z" },
    name: { S: `Entity ${id}` },
  };
  if (parentId) {
    item.parentId = { S: parentId };
    item.GSI1PK = { S: `PARENT#${parentId}` };
    item.GSI1SK = { S: `CHILD#${id}` };
  }
  return item;
}

/** A stored-limits item as the version-1 library wrote it. */
function v1Limits(id: string, resource = "*"): Attrs {
  return {
    PK: { S: `ENTITY#${id}` },
    SK: { S: `#LIMIT#${resource}` },
    limits: {
      L: [{
        M: {
          name: { S: "rpm" },
          capacity: { N: "100" },
          refillAmount: { N: "100" },
          refillPeriodSeconds: { N: "60" },
        },
      }],
    },
  };
}

async function scanAll(client: DynamoDBClient, tableName: string): Promise<Attrs[]> {
  const out: Attrs[] = [];
  let start: Attrs | undefined;
  do {
    const page = await client.send(
      new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey: start }),
    );
    out.push(...(page.Items ?? []));
    start = page.LastEvaluatedKey;
  } while (start);
  return out.sort((a, b) => `${a.PK.S}|${a.SK.S}` < `${b.PK.S}|${b.SK.S}` ? -1 : 1);
}

async function gsi3(client: DynamoDBClient, tableName: string): Promise<string[]> {
  const out = await client.send(
    new QueryCommand({
      TableName: tableName,
      IndexName: "GSI3",
      KeyConditionExpression: "GSI3PK = :p",
      ExpressionAttributeValues: { ":p": { S: "ENTITIES" } },
    }),
  );
  return (out.Items ?? []).map((i) => i.GSI3SK.S!);
}

async function versionItem(client: DynamoDBClient, tableName: string) {
  const out = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: "SYSTEM" }, SK: { S: "#VERSION" } },
      ConsistentRead: true,
    }),
  );
  return out.Item;
}

/** Command names a client sends, as they go. */
function record(client: DynamoDBClient): { names: string[]; keys: string[] } {
  const seen = { names: [] as string[], keys: [] as string[] };
  client.middlewareStack.add(
    (next, context) => (args) => {
      seen.names.push(context.commandName ?? "?");
      const key = (args.input as { Key?: Attrs }).Key;
      if (key) seen.keys.push(`${key.PK?.S}/${key.SK?.S}`);
      return next(args);
    },
    { step: "initialize", name: "recordSchemaTest" },
  );
  return seen;
}

function captureWarnings(): { messages: string[]; restore: () => void } {
  const messages: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => void messages.push(args.join(" "));
  return { messages, restore: () => void (console.warn = original) };
}

Deno.test({
  name: "schema versions: fresh tables, version-1 tables and their upgrade, newer tables",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const env = { AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local" };
    try {
      await t.step(
        "createTable makes a version-2 table with GSI3; upgrade finds nothing",
        async () => {
          const tableName = uniqueTableName("fresh");
          const limiter = new RateLimiter({ tableName, client, createTable: true });
          await limiter.createEntity({ entityId: "a" });
          await limiter.close();
          assert.equal((await versionItem(client, tableName))?.version?.N, "2");
          const d = await client.send(new DescribeTableCommand({ TableName: tableName }));
          const index = d.Table?.GlobalSecondaryIndexes?.find((i) => i.IndexName === "GSI3");
          assert.equal(index?.Projection?.ProjectionType, "ALL");
          const r = await upgradeTable({ client, tableName });
          assert.deepEqual(r, {
            fromVersion: 2,
            toVersion: 2,
            changed: false,
            addedIndex: false,
            backfilled: 0,
          });
        },
      );

      const v1 = uniqueTableName("v1");
      await createVersion1Table(client, v1);
      const metas = [v1Meta("proj-1"), v1Meta("key-1", "proj-1"), v1Meta("key-2", "proj-1")];
      const solo = Array.from(
        { length: 30 },
        (_, i) => v1Meta(`solo-${String(i).padStart(2, "0")}`),
      );
      const limits = [v1Limits("proj-1"), v1Limits("key-1", "gpt-4"), v1Limits("solo-07")];
      const others: Attrs[] = [
        // A bucket and a usage snapshot: never indexed.
        { PK: { S: "ENTITY#key-1" }, SK: { S: "#BUCKET#gpt-4" }, wc: { N: "1" } },
        { PK: { S: "ENTITY#key-1" }, SK: { S: "#USAGE#gpt-4#hourly#0" }, n: { N: "1" } },
        // Stored limits of an entity with no metadata item: indexed, but not an entity.
        v1Limits("ghost", "gpt-4"),
      ];
      for (const Item of [...metas, ...solo, ...limits, ...others]) {
        await client.send(new PutItemCommand({ TableName: v1, Item }));
      }
      const ids = [...metas, ...solo].map((m) => m.entityId.S!).sort();

      await t.step(
        "a version-1 table: served, warned about once, entity list refused",
        async () => {
          const warnings = captureWarnings();
          const hotClient = localClient(ddb.endpoint);
          const seen = record(hotClient);
          const limiter = new RateLimiter({ tableName: v1, client: hotClient });
          try {
            const lease = await limiter.acquire({
              entityId: "key-1",
              resource: "gpt-4",
              limits: [rpm],
              consume: { rpm: 1 },
            });
            await lease.commit();
            // The first call's one probe read the version: no other round trip.
            // (key-1 cascades to proj-1: its config read, its parent's metadata (a disabled
            // parent switches its keys off), then one transaction.)
            assert.deepEqual(seen.names, [
              "GetItemCommand",
              "BatchGetItemCommand",
              "BatchGetItemCommand",
              "TransactWriteItemsCommand",
            ]);
            assert.equal(seen.keys[0], "SYSTEM/#VERSION");
            await limiter.acquire({
              entityId: "key-2",
              resource: "gpt-4",
              limits: [rpm],
              consume: { rpm: 1 },
            });
            assert.ok(!seen.names.slice(4).includes("GetItemCommand"), seen.names.join());
            const schemaWarnings = warnings.messages.filter((m) => m.includes("schema version"));
            assert.equal(schemaWarnings.length, 1, warnings.messages.join("\n"));
            assert.match(
              schemaWarnings[0],
              new RegExp(
                `table ${v1} is schema version 1, this library writes version 2; run \`zae-limiter upgrade`,
              ),
            );
            const err = await limiter.listEntities().then(() => undefined, (e) => e);
            assert.ok(err instanceof ConfigurationError, String(err));
            assert.equal(err.kind, "schema-outdated");
            assert.match(err.message, /zae-limiter upgrade --table-name/);
            // Admin calls that do not need version 2 still work.
            assert.equal((await limiter.getEntity("key-1"))?.parentId, "proj-1");
          } finally {
            warnings.restore();
            await limiter.close();
            hotClient.destroy();
          }
        },
      );

      await t.step(
        "upgrade adds GSI3, indexes every entity item, then records version 2",
        async () => {
          const before = await scanAll(client, v1);
          const r = await upgradeTable({ client, tableName: v1 });
          assert.deepEqual(r, {
            fromVersion: 1,
            toVersion: 2,
            changed: true,
            addedIndex: true,
            backfilled: metas.length + solo.length + limits.length + 1, // + the ghost's limits
          });
          assert.equal((await versionItem(client, v1))?.version?.N, "2");
          const indexed = await gsi3(client, v1);
          assert.deepEqual(
            indexed.filter((k) => !k.includes("#")).sort(),
            ids,
            "every entity's metadata is in GSI3",
          );
          assert.deepEqual(
            indexed.filter((k) => k.includes("#")).sort(),
            ["ghost#LIMIT#gpt-4", "key-1#LIMIT#gpt-4", "proj-1#LIMIT#*", "solo-07#LIMIT#*"],
          );
          const after = await scanAll(client, v1);
          for (const item of after) {
            const sk = item.SK.S!;
            const entityItem = sk === "#META" || sk.startsWith("#LIMIT#");
            assert.equal(item.GSI3PK !== undefined, entityItem, `${item.PK.S}/${sk}`);
          }
          // Nothing else changed: the same items, with the same attributes besides GSI3.
          const strip = (items: Attrs[]) =>
            items.filter((i) => i.PK.S !== "SYSTEM").map(({ GSI3PK: _p, GSI3SK: _s, ...rest }) =>
              rest
            );
          assert.deepEqual(strip(after), strip(before));

          const limiter = new RateLimiter({ tableName: v1, client });
          try {
            const all = [];
            let cursor: string | undefined;
            do {
              const page = await limiter.listEntities({ limit: 7, ...(cursor ? { cursor } : {}) });
              all.push(...page.entities);
              cursor = page.cursor;
            } while (cursor);
            assert.deepEqual(all.map((e) => e.entityId), ids);
            assert.deepEqual(all.find((e) => e.entityId === "key-1"), {
              entityId: "key-1",
              name: "Entity key-1",
              parentId: "proj-1",
              cascade: true,
              metadata: { team: "core" },
              createdAt: "2026-01-02T03:04:05.000Z",
            });
            const custom = await limiter.listEntities({ withCustomLimits: true });
            assert.deepEqual(custom.entities.map((e) => e.entityId), [
              "key-1",
              "proj-1",
              "solo-07",
            ]);
          } finally {
            await limiter.close();
          }
        },
      );

      await t.step("a second upgrade changes nothing and says so (library and CLI)", async () => {
        const before = await scanAll(client, v1);
        const r = await upgradeTable({ client, tableName: v1 });
        assert.equal(r.changed, false);
        assert.equal(r.backfilled, 0);
        assert.deepEqual(await scanAll(client, v1), before);
        const out = await cli(
          ["upgrade", "--table-name", v1, "--endpoint-url", ddb.endpoint, "--region", "us-east-1"],
          env,
        );
        assert.equal(out.code, 0, out.err);
        assert.match(out.out, /is already schema version 2: nothing to do/);
        assert.deepEqual(await scanAll(client, v1), before);
      });

      await t.step("the CLI upgrades a version-1 table", async () => {
        const tableName = uniqueTableName("cliv1");
        await createVersion1Table(client, tableName);
        await client.send(new PutItemCommand({ TableName: tableName, Item: v1Meta("k") }));
        const args = [
          "--table-name",
          tableName,
          "--endpoint-url",
          ddb.endpoint,
          "--region",
          "us-east-1",
        ];
        const listed = await cli(["entity", "list", ...args], env);
        assert.equal(listed.code !== 0, true);
        assert.match(listed.err + listed.out, /zae-limiter upgrade/);
        const out = await cli(["upgrade", ...args, "--json"], env);
        assert.equal(out.code, 0, out.err);
        const json = JSON.parse(out.out);
        assert.equal(json.changed, true);
        assert.equal(json.backfilled, 1);
        const again = await cli(["entity", "list", ...args], env);
        assert.equal(again.code, 0, again.err);
        assert.equal(again.out.trim(), "k  Entity k");
      });

      await t.step("a newer table is refused on every call, in both failure modes", async () => {
        const tableName = uniqueTableName("v3");
        const setup = new RateLimiter({ tableName, client, createTable: true });
        await setup.createEntity({ entityId: "a" });
        await setup.close();
        await client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: { PK: { S: "SYSTEM" }, SK: { S: "#VERSION" }, version: { N: "3" } },
          }),
        );
        for (const failureMode of [FailureMode.FAIL_CLOSED, FailureMode.FAIL_OPEN]) {
          const own = localClient(ddb.endpoint);
          const limiter = new RateLimiter({ tableName, client: own, failureMode });
          try {
            for (let i = 0; i < 2; i++) {
              const err = await limiter.acquire({
                entityId: "a",
                resource: "api",
                limits: [rpm],
                consume: { rpm: 1 },
              }).then(() => undefined, (e) => e);
              assert.ok(err instanceof ConfigurationError, `${failureMode}: ${err}`);
              assert.equal(err.kind, "schema-newer");
              assert.match(err.message, /schema version 3, newer than this library knows \(2\)/);
            }
            await assert.rejects(limiter.getEntity("a"), { kind: "schema-newer" });
            await assert.rejects(
              limiter.available({ entityId: "a", resource: "api", limits: [rpm] }),
              {
                kind: "schema-newer",
              },
            );
          } finally {
            await limiter.close();
            own.destroy();
          }
        }
        // Nothing was written to the newer table.
        const buckets = (await scanAll(client, tableName)).filter((i) =>
          i.SK.S!.startsWith("#BUCKET#")
        );
        assert.deepEqual(buckets, []);
        await assert.rejects(upgradeTable({ client, tableName }), { kind: "schema-newer" });
      });

      await t.step("an injected clock: the first admin call reads the version", async () => {
        const tableName = uniqueTableName("v3clock");
        const setup = new RateLimiter({ tableName, client, createTable: true });
        await setup.createEntity({ entityId: "a" });
        await setup.close();
        await client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: { PK: { S: "SYSTEM" }, SK: { S: "#VERSION" }, version: { N: "3" } },
          }),
        );
        const own = localClient(ddb.endpoint);
        const seen = record(own);
        const limiter = new RateLimiter({ tableName, client: own, clock: () => Date.now() });
        try {
          await assert.rejects(limiter.getEntity("a"), { kind: "schema-newer" });
          assert.deepEqual(
            seen.keys,
            ["SYSTEM/#VERSION"],
            "one GetItem of the version, nothing else",
          );
          await assert.rejects(
            limiter.acquire({ entityId: "a", resource: "api", limits: [rpm], consume: { rpm: 1 } }),
            { kind: "schema-newer" },
          );
          assert.equal(seen.names.length, 1, "the hot path knows it without a call");
        } finally {
          await limiter.close();
          own.destroy();
        }
      });

      await t.step("bad options are refused before any call", async () => {
        const limiter = new RateLimiter({ tableName: v1, client });
        try {
          await assert.rejects(
            limiter.listEntities({ limit: 0 }),
            (e: unknown) => e instanceof ValidationError && /limit/.test(e.message),
          );
        } finally {
          await limiter.close();
        }
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
