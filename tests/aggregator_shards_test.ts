/**
 * The aggregator on a sharded bucket (DynamoDB Local): the shards' items count under the bucket's
 * resource in the usage snapshots and the resource index, each item with its own sequence, so a
 * replayed stream adds nothing.
 */

import assert from "node:assert/strict";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter } from "../mod.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import { getUsageSnapshots } from "../src/usage.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = Date.parse("2026-11-28T13:05:00Z");
const LIMITS = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 100_000)];

Deno.test({
  name: "aggregator: two shards of one bucket count under its resource",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("aggshards");
    let now = T0 - 3_600_000;
    const limiter = new RateLimiter({
      tableName,
      client,
      createTable: true,
      clock: () => now,
      limitsCacheTtlMs: 500,
      clockToleranceMs: 0,
      timeoutMs: 10_000,
    });
    const item = async (sk: string) =>
      (await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { PK: { S: "ENTITY#hot" }, SK: { S: sk } },
          ConsistentRead: true,
        }),
      )).Item;
    try {
      await limiter.createEntity({ entityId: "hot" });
      await limiter.setLimits({ entityId: "hot", resource: "api", limits: LIMITS, shards: 2 });
      now = T0; // long past the switch to 2 shards
      // Until both shards took requests (each request picks one at random).
      let requests = 0;
      while (
        requests < 4 ||
        (await item("#BUCKET#api#0/2")) === undefined ||
        (await item("#BUCKET#api#1/2")) === undefined
      ) {
        await limiter.acquire({
          entityId: "hot",
          resource: "api",
          limits: LIMITS,
          consume: { rpm: 1, tpm: 10 },
          useStoredLimits: true,
        });
        requests++;
        assert.ok(requests < 40, "both shards were used");
      }
      const out = await aggregateLocal({ tableName, client });
      assert.equal(out.consumptions, requests);
      assert.equal(out.indexed, 2);
      const usage = await getUsageSnapshots(client, tableName, {
        entityId: "hot",
        resource: "api",
        window: "hourly",
      });
      assert.deepEqual(
        usage.map((s) => [s.windowStart, s.resource, s.consumed, s.requests]),
        [["2026-11-28T13:00:00Z", "api", { rpm: requests, tpm: 10 * requests }, requests]],
      );
      // Each shard's item keeps its own sequence in the snapshot.
      const snap = await item("#USAGE#api#hourly#2026-11-28T13:00:00Z");
      assert.ok(snap?.seq_0_2?.S && snap?.seq_1_2?.S, JSON.stringify(snap));
      // Both items are indexed under the bucket's resource.
      for (const sk of ["#BUCKET#api#0/2", "#BUCKET#api#1/2"]) {
        assert.equal((await item(sk))?.GSI2PK?.S, "RESOURCE#api");
      }
      // A replay of the whole stream adds nothing.
      const again = await aggregateLocal({ tableName, client });
      assert.equal(again.snapshotWrites, 0);
      const after = await getUsageSnapshots(client, tableName, {
        entityId: "hot",
        resource: "api",
        window: "daily",
      });
      assert.deepEqual(after.map((s) => [s.consumed, s.requests]), [[
        { rpm: requests, tpm: 10 * requests },
        requests,
      ]]);
      await limiter.close();
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
