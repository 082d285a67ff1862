/**
 * Receipts do not pile up on a hot bucket. Every write leaves a receipt (`r_{opId}`) and removes a
 * few that no copy can need any more. Writes of one process in flight at the same time on one
 * bucket used to be handed the same few to remove, so under 16 in flight most receipts stayed:
 * the item grew by about 12 attributes per 16 writes (952 after a few seconds of the bench's hot
 * key), and every write read and wrote the whole item (on DynamoDB, 1 WCU per KB of it). Now each
 * write claims its own, and one that does not land gives them back. Checked on DynamoDB Local.
 */

import assert from "node:assert/strict";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter } from "../mod.ts";
import { SLOTS_PER_BUCKET } from "../src/engine/slots.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const limits = [Limit.perMinute("rpm", 10_000_000), Limit.perMinute("tpm", 10_000_000_000)];
const KEY = { PK: { S: "ENTITY#hot" }, SK: { S: "#BUCKET#api" } };

dynamoTest("receipts stay few on a bucket written 16 at a time", async (t, { client }) => {
  const tableName = uniqueTableName("sweep");
  const a = new RateLimiter({ tableName, client, createTable: true });
  const b = new RateLimiter({ tableName, client });
  const receipts = async () => {
    const item = (await client.send(
      new GetItemCommand({ TableName: tableName, Key: KEY, ConsistentRead: true }),
    )).Item!;
    return {
      receipts: Object.keys(item).filter((name) => name.startsWith("r_")).length,
      requests: Number(item.rq.N),
    };
  };
  const burst = async (limiter: RateLimiter, n: number) => {
    await Promise.all(Array.from({ length: n }, async () => {
      const lease = await limiter.acquire({
        entityId: "hot",
        resource: "api",
        limits,
        consume: { rpm: 1, tpm: 10 },
      });
      await lease.commit();
    }));
  };
  try {
    await t.step("one process, 16 in flight, 40 bursts", async () => {
      for (let i = 0; i < 40; i++) await burst(a, 16);
      const got = await receipts();
      assert.equal(got.requests, 640);
      // At most the writes in flight, plus a few waiting for the next writes to remove them.
      assert.ok(got.receipts <= 2 * SLOTS_PER_BUCKET, `${got.receipts} receipts on the item`);
    });

    await t.step("two processes on the same bucket, 16 in flight each", async () => {
      for (let i = 0; i < 20; i++) await Promise.all([burst(a, 16), burst(b, 16)]);
      const got = await receipts();
      assert.equal(got.requests, 640 + 640);
      // Each process removes its own receipts, and those of others once their bound has passed.
      assert.ok(got.receipts <= 4 * SLOTS_PER_BUCKET, `${got.receipts} receipts on the item`);
    });
  } finally {
    await a.close();
    await b.close();
  }
});
