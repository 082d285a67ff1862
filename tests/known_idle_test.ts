/**
 * The idle write of a bucket the writer has seen (`fromNow` with `known`): it asks for the spec it
 * saw (`k_n = :k AND t_n <= :n`, no absent case) and leaves `k_n` alone. Checked on DynamoDB
 * Local: the expression sent, the item it leaves, and what happens when the guess is wrong because
 * the item went away (TTL, a reset) or another process changed the spec: the failure returns the
 * truth and the next write admits, never over-admitting. The in-memory backend agrees.
 */

import assert from "node:assert/strict";
import { DeleteItemCommand, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import type { BucketWrite } from "../src/bucket_items.ts";
import { writeHolds } from "../src/testing/memory_bucket.ts";
import { dynamoTest, recordUpdates, uniqueTableName } from "./_dynamo.ts";

const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)];
const request = { entityId: "k1", resource: "api", limits, consume: { rpm: 1, tpm: 10 } };
const KEY = { PK: { S: "ENTITY#k1" }, SK: { S: "#BUCKET#api" } };

dynamoTest("a known idle write: shorter, and a wrong guess is corrected", async (t, { client }) => {
  const tableName = uniqueTableName("known_idle");
  const { sent, failed } = recordUpdates(client);
  let now = 1_800_000_000_000;
  const limiter = new RateLimiter({ tableName, client, clock: () => now, createTable: true });
  const stored = async () =>
    (await client.send(
      new GetItemCommand({ TableName: tableName, Key: KEY, ConsistentRead: true }),
    ))
      .Item;
  try {
    await t.step("first write: the general form; later idle writes ask for the spec", async () => {
      await (await limiter.acquire(request)).commit();
      const first = sent.at(-1)!;
      assert.match(first.ConditionExpression!, /attribute_not_exists\(t_rpm\) OR/);
      assert.match(first.UpdateExpression!, /k_rpm = :k0/);
      // A minute later both limits are full again: the idle guess, from what the writer saw.
      now += 60_000;
      sent.length = 0;
      await (await limiter.acquire(request)).commit();
      assert.equal(sent.length, 1);
      const warm = sent[0];
      assert.match(warm.ConditionExpression!, /k_rpm = :k0 AND t_rpm <= :n0/);
      assert.match(warm.ConditionExpression!, /k_tpm = :k1 AND t_tpm <= :n1/);
      assert.doesNotMatch(warm.ConditionExpression!, /attribute_not_exists\(t_/);
      assert.doesNotMatch(warm.UpdateExpression!, /k_rpm = |k_tpm = /);
      assert.ok(
        JSON.stringify(warm).length < JSON.stringify(first).length,
        `${JSON.stringify(warm).length} vs ${JSON.stringify(first).length}`,
      );
      const item = await stored();
      assert.equal(item?.k_rpm?.S, first.ExpressionAttributeValues![":k0"].S, "k_rpm kept");
      assert.equal(item?.rq?.N, "2");
    });

    await t.step("the item went away: the guess fails, the next write admits", async () => {
      await client.send(new DeleteItemCommand({ TableName: tableName, Key: KEY }));
      now += 60_000;
      sent.length = 0;
      failed.length = 0;
      await (await limiter.acquire(request)).commit();
      assert.deepEqual(failed, ["ConditionalCheckFailedException"]);
      assert.equal(sent.length, 2);
      assert.match(sent[1].ConditionExpression!, /attribute_not_exists\(t_rpm\) OR/);
      const item = await stored();
      assert.equal(item?.rq?.N, "1", "one request counted on the new item");
      const level = await limiter.available({ entityId: "k1", resource: "api", limits });
      assert.equal(level.rpm, 99);
    });

    await t.step(
      "another spec meanwhile: no write under the old one, and no over-admission",
      async () => {
        // Another process serves the bucket under 3 per minute, and spends it all.
        const tight = [Limit.perMinute("rpm", 3), Limit.perMinute("tpm", 10_000)];
        const other = new RateLimiter({ tableName, client, clock: () => now + 60_000 });
        const ask = { ...request, limits: tight };
        for (let i = 0; i < 3; i++) await (await other.acquire(ask)).commit();
        await assert.rejects(() => other.acquire(ask), RateLimitExceeded);
        await other.close();
        // This process still believes in 100 per minute and an idle bucket: its known guess fails
        // (k_rpm differs), and planned from the truth, the empty bucket refuses it.
        now += 60_000;
        sent.length = 0;
        failed.length = 0;
        await assert.rejects(() => limiter.acquire(request), RateLimitExceeded);
        assert.deepEqual(failed, ["ConditionalCheckFailedException"]);
        assert.match(sent[0].ConditionExpression!, /k_rpm = :k0 AND t_rpm <= :n0/);
        const item = await stored();
        assert.equal(item?.rq?.N, "4", "the request of step 2 and the other process's 3");
        // The refusal may record the bucket under this process's spec (a spec change is applied
        // by whoever sees it), converted: still empty, nothing admitted under the old belief.
        const level = await limiter.available({ entityId: "k1", resource: "api", limits });
        assert.equal(level.rpm, 0);
      },
    );
  } finally {
    await limiter.close();
  }
});

Deno.test("in memory: a known idle write holds only on the spec it names", () => {
  const w = (known: boolean): BucketWrite => ({
    entityId: "k1",
    resource: "api",
    opId: "op1",
    maxWrites: 32n,
    used: new Map(),
    requests: 1,
    nowMs: 0,
    ops: [{
      kind: "fromNow",
      name: "rpm",
      key: "100/100/60000",
      n: 10n,
      newTat: 20n,
      ...(known ? { known: true as const } : {}),
    }],
  } as unknown as BucketWrite);
  const bucket = (tat: bigint | undefined, key: string) => ({
    limits: new Map(tat === undefined ? [] : [["rpm", { tat, key, used: 0n }]]),
    receipts: new Map(),
    writes: 1n,
    requests: 1n,
    writtenAt: 0n,
  });
  // No item, or an item without the limit: the general form writes, the known one asks again.
  assert.equal(writeHolds(undefined, w(false)), true);
  assert.equal(writeHolds(undefined, w(true)), false);
  assert.equal(writeHolds(bucket(undefined, "") as never, w(true)), false);
  // Under the spec it names and idle: both hold; busy or under another spec: neither.
  assert.equal(writeHolds(bucket(10n, "100/100/60000") as never, w(true)), true);
  assert.equal(writeHolds(bucket(11n, "100/100/60000") as never, w(true)), false);
  assert.equal(writeHolds(bucket(5n, "3/3/60000") as never, w(true)), false);
  assert.equal(writeHolds(bucket(5n, "3/3/60000") as never, w(false)), false);
});
