/**
 * A lease never gives back more than its acquire took: the sum of a limit's adjustments is clamped
 * at minus the acquire's amount, in the key's bucket and in the parent's through cascade, and for a
 * failed-open lease recorded later. On DynamoDB Local (cascade, raw counters, an outage) and with
 * the in-memory test limiter (the cases of pure lease logic).
 */
import assert from "node:assert/strict";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { FailureMode, Limit, RateLimiter } from "../mod.ts";
import { createTestLimiter } from "../src/testing/mod.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const resource = "gpt-4";

dynamoTest("lease clamp: one tenant cannot give back another's usage", async (t, { client }) => {
  let refuse = false;
  client.middlewareStack.add(
    (next) => (args) => {
      if (refuse) {
        throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1"), { code: "ECONNREFUSED" });
      }
      return next(args);
    },
    { step: "initialize", name: "outage" },
  );
  const tableName = uniqueTableName("lease_clamp");
  const make = () =>
    new RateLimiter({
      tableName,
      client,
      clock: () => T0,
      timeoutMs: 2_000,
      failureMode: FailureMode.FAIL_OPEN,
    });
  const limits = [Limit.perHour("tph", 10_000)];
  /** Thousandths of `tph` written to the bucket item's usage counter (what usage is made from). */
  const usage = async (entityId: string) => {
    const { Item } = await client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: `#BUCKET#${resource}` } },
        ConsistentRead: true,
      }),
    );
    return Number(Item?.u_tph?.N ?? 0) / 1000;
  };
  const limiter = make();
  await limiter.createTable();
  /** A project with two keys; key B has taken 9,000 of the project's 10,000. */
  const project = async (id: string) => {
    await limiter.createEntity({ entityId: id });
    for (const key of ["a", "b"]) {
      await limiter.createEntity({ entityId: `${id}-${key}`, parentId: id, cascade: true });
    }
    await limiter.acquire(
      { entityId: `${id}-b`, resource, limits, consume: { tph: 9_000 } },
      () => Promise.resolve(),
    );
  };
  const available = async (entityId: string) =>
    (await limiter.available({ entityId, resource, limits })).tph;

  try {
    await t.step("the issue's case: adjust(-1e12) gives back the 1 token taken", async () => {
      await project("p1");
      const lease = await limiter.acquire({
        entityId: "p1-a",
        resource,
        limits,
        consume: { tph: 1 },
      });
      await lease.adjust({ tph: -1e12 });
      assert.equal(lease.consumed.tph, 0);
      await lease.commit();
      assert.equal(await available("p1"), 1_000); // key B's 9,000 are still taken
      assert.equal(await available("p1-a"), 10_000);
      assert.equal(await available("p1-b"), 1_000);
      // The usage counters never record a negative lease.
      assert.deepEqual([await usage("p1"), await usage("p1-a")], [9_000, 0]);
    });

    await t.step("a smaller give-back is written as is, on both buckets", async () => {
      await project("p2");
      const lease = await limiter.acquire({
        entityId: "p2-a",
        resource,
        limits,
        consume: { tph: 500 },
      });
      await lease.adjust({ tph: -200 });
      await lease.commit();
      assert.equal(await available("p2"), 700);
      assert.equal(await available("p2-a"), 9_700);
      assert.deepEqual([await usage("p2"), await usage("p2-a")], [9_300, 300]);
    });

    await t.step("rollback after adjustments gives back exactly the acquire", async () => {
      await project("p3");
      const lease = await limiter.acquire({
        entityId: "p3-a",
        resource,
        limits,
        consume: { tph: 400 },
      });
      await lease.adjust({ tph: -1e9 });
      await lease.rollback();
      assert.equal(await available("p3"), 1_000);
      assert.equal(await available("p3-a"), 10_000);
      assert.deepEqual([await usage("p3"), await usage("p3-a")], [9_000, 0]);
    });

    await t.step("a failed-open lease recorded later is clamped the same way", async () => {
      await project("p4");
      const open = make(); // a fresh process: nothing cached, the outage hits everything
      refuse = true;
      const lease = await open.acquire({
        entityId: "p4-a",
        resource,
        limits,
        consume: { tph: 100 },
      });
      assert.equal(lease.failedOpen, true);
      await lease.adjust({ tph: -1e12 });
      await lease.commit();
      assert.equal(open.pendingWrites, 2); // the acquire and the commit wait for DynamoDB
      refuse = false;
      await open.flush(10_000);
      assert.equal(open.pendingWrites, 0);
      assert.equal(await available("p4"), 1_000);
      assert.equal(await available("p4-a"), 10_000);
      assert.deepEqual([await usage("p4"), await usage("p4-a")], [9_000, 0]);
    });
  } finally {
    refuse = false;
  }
});

Deno.test("lease clamp: the sum of adjustments, per limit and per bucket", async (t) => {
  const rpm = Limit.perMinute("rpm", 100);
  const tpm = Limit.perMinute("tpm", 10_000);
  const limits = [rpm, tpm];
  const fresh = () => createTestLimiter({ clock: () => T0 });
  /** A limiter where another lease of the same key already took 1 request and 3,000 tokens. */
  const busy = async () => {
    const limiter = fresh();
    await limiter.acquire(
      { entityId: "k", resource, limits, consume: { rpm: 1, tpm: 3_000 } },
      () => Promise.resolve(),
    );
    return limiter;
  };
  const left = (limiter: RateLimiter) => limiter.available({ entityId: "k", resource, limits });

  await t.step("a limit the acquire took nothing of can only go up", async () => {
    const limiter = await busy();
    const lease = await limiter.acquire({ entityId: "k", resource, limits, consume: { rpm: 1 } });
    await lease.adjust({ tpm: -2_000 });
    assert.deepEqual(lease.consumed, { rpm: 1, tpm: 0 });
    await lease.commit();
    assert.deepEqual(await left(limiter), { rpm: 98, tpm: 7_000 });
  });

  await t.step("calls that sum below zero give back the acquire, in any order", async () => {
    for (const calls of [[300, -1_000], [-1_000, 300], [-1e12, 1e6]]) {
      const limiter = await busy();
      const lease = await limiter.acquire({
        entityId: "k",
        resource,
        limits,
        consume: { rpm: 1, tpm: 500 },
      });
      for (const d of calls) await lease.adjust({ tpm: d });
      assert.equal(lease.consumed.tpm, 0, `calls ${calls}`);
      await lease.commit();
      assert.deepEqual(await left(limiter), { rpm: 98, tpm: 7_000 }, `calls ${calls}`);
    }
  });

  await t.step("the sum is clamped, not each call", async () => {
    const limiter = await busy();
    const lease = await limiter.acquire({
      entityId: "k",
      resource,
      limits,
      consume: { rpm: 1, tpm: 500 },
    });
    await lease.adjust({ tpm: -1_000 }); // alone, below the floor
    await lease.adjust({ tpm: 800 }); // sum -200: net 300
    await lease.commit();
    assert.equal(lease.consumed.tpm, 300);
    assert.deepEqual(await left(limiter), { rpm: 98, tpm: 6_700 });
  });

  await t.step("positive adjustments still go into debt", async () => {
    const limiter = await busy();
    const lease = await limiter.acquire({
      entityId: "k",
      resource,
      limits,
      consume: { rpm: 1, tpm: 500 },
    });
    await lease.adjust({ tpm: 8_000 });
    await lease.commit();
    assert.deepEqual(await left(limiter), { rpm: 98, tpm: -1_500 });
  });

  await t.step("rollback after adjustments returns only what the acquire took", async () => {
    const limiter = await busy();
    const lease = await limiter.acquire({
      entityId: "k",
      resource,
      limits,
      consume: { rpm: 1, tpm: 500 },
    });
    await lease.adjust({ tpm: -5_000, rpm: -3 });
    await lease.adjust({ tpm: 100 });
    await lease.rollback();
    assert.deepEqual(lease.consumed, { rpm: 0, tpm: 0 });
    assert.deepEqual(await left(limiter), { rpm: 99, tpm: 7_000 });
  });

  await t.step("cascade with other limits per level: each bucket keeps its floor", async () => {
    const limiter = fresh();
    await limiter.createEntity({ entityId: "proj" });
    for (const key of ["key-a", "key-b"]) {
      await limiter.createEntity({ entityId: key, parentId: "proj", cascade: true });
      await limiter.setLimits({ entityId: key, resource, limits: [rpm, tpm] }); // rpm: key only
    }
    const tph = Limit.perHour("tph", 20_000); // project only
    await limiter.setLimits({
      entityId: "proj",
      resource,
      limits: [Limit.perMinute("tpm", 50_000), tph],
    });
    const stored = (entityId: string) =>
      limiter.available({ entityId, resource, limits: [], useStoredLimits: true });
    const take = (entityId: string, consume: Record<string, number>) =>
      limiter.acquire({ entityId, resource, limits: [], consume, useStoredLimits: true });
    await (await take("key-b", { rpm: 1, tpm: 4_000, tph: 4_000 })).commit();

    const lease = await take("key-a", { rpm: 1, tpm: 500, tph: 600 });
    assert.deepEqual(lease.consumed, { rpm: 1, tpm: 500, tph: 600 });
    await lease.adjust({ rpm: -5, tpm: -1e9, tph: -1e9 });
    assert.deepEqual(lease.consumed, { rpm: 0, tpm: 0, tph: 0 });
    await lease.commit();
    assert.deepEqual(await stored("key-a"), { rpm: 100, tpm: 10_000 });
    assert.deepEqual(await stored("key-b"), { rpm: 99, tpm: 6_000 });
    assert.deepEqual(await stored("proj"), { tpm: 46_000, tph: 16_000 });

    const partial = await take("key-a", { rpm: 1, tpm: 500, tph: 600 });
    await partial.adjust({ tph: -200, tpm: -100 });
    await partial.commit();
    assert.deepEqual(partial.consumed, { rpm: 1, tpm: 400, tph: 400 });
    assert.deepEqual(await stored("proj"), { tpm: 45_600, tph: 15_600 });
  });
});
