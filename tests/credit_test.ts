// Credit past capacity (top-up) on DynamoDB Local: exact admitted counts, the order bucket then
// credit, a cold process, concurrent limiters, rollback, and the warm request without credit.
import assert from "node:assert/strict";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { dynamoTest, localClient, uniqueTableName } from "./_dynamo.ts";

const rpm = Limit.perMinute("rpm", 10);
const tpm = Limit.perMinute("tpm", 1000);

async function take(
  l: RateLimiter,
  entityId: string,
  consume: Record<string, number>,
  limits = [rpm, tpm],
): Promise<boolean> {
  try {
    await (await l.acquire({ entityId, resource: "api", limits, consume })).commit();
    return true;
  } catch (err) {
    if (err instanceof RateLimitExceeded) return false;
    throw err;
  }
}

async function drain(l: RateLimiter, entityId: string, consume: Record<string, number>) {
  let n = 0;
  while (await take(l, entityId, consume)) n++;
  return n;
}

/** The normalised body of the last UpdateItem a client sent. */
function capture(client: ReturnType<typeof localClient>) {
  const bodies: string[] = [];
  client.middlewareStack.add((next) => (args) => {
    const raw = (args.request as { body?: unknown }).body;
    const body = raw instanceof Uint8Array ? new TextDecoder().decode(raw) : String(raw);
    if (body.includes("UpdateExpression")) bodies.push(body);
    return next(args);
  }, { step: "finalizeRequest", name: "captureBody" });
  return {
    count: () => bodies.length,
    last() {
      const b = JSON.parse(bodies.at(-1)!);
      const ids = (s: string) => s.replace(/r_[a-z0-9]{12}/g, "r_ID");
      return {
        update: ids(b.UpdateExpression),
        condition: ids(b.ConditionExpression),
        names: b.ExpressionAttributeNames,
        values: Object.keys(b.ExpressionAttributeValues).sort(),
        bytes: bodies.at(-1)!.length,
      };
    },
  };
}

dynamoTest("credit past capacity on DynamoDB Local", async (t, { client, ddb }) => {
  const tableName = uniqueTableName("credit");
  let now = 1_700_000_000_000;
  const admin = new RateLimiter({ tableName, client, createTable: true, clock: () => now });
  await admin.getEntity("none"); // creates the table
  const other = new RateLimiter({ tableName, client, clock: () => now, denyCache: false });
  const item = (entityId: string) =>
    client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#api" } },
        ConsistentRead: true,
      }),
    ).then((o) => o.Item!);
  const topUp = (entityId: string, limit: string, amount: number, key: string) =>
    admin.topUp({ entityId, resource: "api", limit, amount, idempotencyKey: key });

  await t.step(
    "a full bucket topped up by N admits exactly capacity + N (two limits)",
    async () => {
      assert.equal(await take(other, "a", { rpm: 1, tpm: 1 }), true); // the item exists
      now += 60_000; // full again
      const r1 = await topUp("a", "rpm", 5, "a1");
      const r2 = await topUp("a", "tpm", 500, "a2");
      assert.deepEqual([r1.before, r1.after], [{ rpm: 10 }, { rpm: 15 }]);
      assert.deepEqual([r2.before, r2.after], [{ tpm: 1000 }, { tpm: 1500 }]);
      const i = await item("a");
      assert.deepEqual([i.c_rpm.N, i.c_tpm.N], ["5000", "500000"]);
      // 10 from the bucket, then 5 from the credit (rpm's 5, tpm's 5 × 100 = 500).
      assert.equal(await drain(other, "a", { rpm: 1, tpm: 100 }), 15);
      const after = await item("a");
      assert.deepEqual([after.c_rpm.N, after.c_tpm.N], ["0", "0"]);
      assert.deepEqual(
        await admin.available({ entityId: "a", resource: "api", limits: [rpm, tpm] }),
        {
          rpm: 0,
          tpm: 0,
        },
      );
    },
  );

  await t.step(
    "credit pays a limit only when its bucket cannot; one source per limit",
    async () => {
      now += 60_000;
      await topUp("a", "tpm", 300, "b1");
      assert.equal(await take(other, "a", { rpm: 1, tpm: 100 }), true);
      assert.equal((await item("a")).c_tpm.N, "300000"); // the bucket paid
      // rpm has no credit: 9 more from its bucket, then refused though tpm still has credit.
      assert.equal(await drain(other, "a", { rpm: 1, tpm: 100 }), 9);
      assert.equal((await item("a")).c_tpm.N, "300000");
      // tpm alone: its bucket is empty, the credit pays 3 × 100, then refused with exact statuses.
      assert.equal(await drain(other, "a", { rpm: 0, tpm: 100 }), 3);
      const err = await other.acquire({
        entityId: "a",
        resource: "api",
        limits: [rpm, tpm],
        consume: { tpm: 2000 },
      }).catch((e) => e);
      assert.ok(err instanceof RateLimitExceeded, String(err));
      assert.equal(err.impossible, true); // over capacity and over the credit
      // The empty bucket is filled first (1000), the credit gets 2000.
      await topUp("a", "tpm", 3000, "b2");
      // Over capacity, but the credit covers it: passes.
      assert.equal(await take(other, "a", { tpm: 2000 }), true);
      assert.equal((await item("a")).c_tpm.N, "0");
    },
  );

  await t.step("a cold process spends credit after one replan", async () => {
    now += 60_000;
    assert.equal(await take(other, "c", { rpm: 1, tpm: 1 }), true);
    now += 60_000; // full again: the whole top-up is credit
    const r = await topUp("c", "rpm", 2, "c1");
    assert.deepEqual([r.before, r.after], [{ rpm: 10 }, { rpm: 12 }]);
    assert.equal((await item("c")).c_rpm.N, "2000");
    // One request of 10 empties the bucket (it fits: the credit is not touched).
    assert.equal(await take(other, "c", { rpm: 10, tpm: 1 }), true);
    assert.equal((await item("c")).c_rpm.N, "2000");
    const coldClient = localClient(ddb.endpoint);
    const seen = capture(coldClient);
    const cold = new RateLimiter({ tableName, client: coldClient, clock: () => now });
    try {
      assert.equal(await take(cold, "c", { rpm: 1, tpm: 1 }), true);
      assert.equal(seen.count(), 2); // the idle guess, then the credit
      assert.match(seen.last().condition, /c_rpm >= :c0/);
      assert.equal(await take(cold, "c", { rpm: 1, tpm: 1 }), true);
      assert.equal(seen.count(), 3); // warm: one write
      assert.equal(await take(cold, "c", { rpm: 1, tpm: 1 }), false);
      assert.equal(seen.count(), 3); // the deny cache: no call
    } finally {
      await cold.close();
      coldClient.destroy();
    }
  });

  await t.step("two limiters at once never take more than capacity + credit", async () => {
    now += 60_000;
    assert.equal(await take(other, "d", { rpm: 1, tpm: 1 }), true);
    now += 60_000;
    await topUp("d", "rpm", 15, "d1");
    const a = new RateLimiter({ tableName, client, clock: () => now });
    const b = new RateLimiter({ tableName, client, clock: () => now });
    try {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => take(i % 2 ? a : b, "d", { rpm: 1 })),
      );
      const admitted = results.filter(Boolean).length;
      assert.ok(admitted <= 25, `admitted ${admitted}`);
      // Whatever the deny caches refused early is still there: in all exactly 25.
      assert.equal(admitted + await drain(other, "d", { rpm: 1 }), 25);
    } finally {
      await a.close();
      await b.close();
    }
  });

  await t.step("a rollback of a credit-paid lease goes to the bucket, never over", async () => {
    now += 60_000;
    assert.equal(await take(other, "e", { rpm: 1 }), true);
    now += 60_000;
    // Credit 10 on a full bucket, then bucket 9: a request of 10 is paid by the credit.
    await topUp("e", "rpm", 10, "e1");
    assert.equal(await take(other, "e", { rpm: 1 }), true);
    const lease = await other.acquire({
      entityId: "e",
      resource: "api",
      limits: [rpm],
      consume: { rpm: 10 },
    });
    assert.equal((await item("e")).c_rpm.N, "0");
    await lease.rollback();
    // The 10 go back to a bucket that holds 9 of 10: it is full, the credit stays spent. 10 in
    // all afterwards, not the 19 there were before the acquire: early refusals, no over-admission.
    assert.equal(await drain(other, "e", { rpm: 1 }), 10);
  });

  await t.step(
    "the warm request of a bucket without credit is today's, byte for byte",
    async () => {
      now += 60_000;
      const c = localClient(ddb.endpoint);
      const seen = capture(c);
      const l = new RateLimiter({ tableName, client: c, clock: () => now });
      const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10000)];
      const request = { entityId: "w", resource: "api", limits, consume: { rpm: 1, tpm: 10 } };
      try {
        for (let i = 0; i < 3; i++) {
          await (await l.acquire(request)).commit();
          now += 1;
        }
        // Captured on the commit before credit existed (9717505), same scenario: 953 bytes;
        // less `#ttl = :ttl`, which a warm write no longer sends while the TTL it saw covers it
        // (tests/ttl_written_test.ts).
        const today = {
          update: "SET ts = :ts, r_ID = :wb, t_rpm = t_rpm + :v0, t_tpm = t_tpm + :v1 " +
            "ADD wc :one, u_rpm :u0, u_tpm :u1, rq :one REMOVE r_ID",
          condition: "attribute_not_exists(r_ID) AND wc < :wb AND " +
            "(k_rpm = :k0 AND t_rpm BETWEEN :n0 AND :m0) AND (k_tpm = :k1 AND t_tpm BETWEEN :n1 AND :m1)",
          names: undefined,
          values: [":k0", ":k1", ":m0", ":m1", ":n0", ":n1", ":one", ":ts", ":u0", ":u1"]
            .concat([":v0", ":v1", ":wb"]),
        };
        const got = seen.last();
        assert.deepEqual({ ...got, bytes: undefined }, { ...today, bytes: undefined });
      } finally {
        await l.close();
        c.destroy();
      }
    },
  );

  await t.step("credit keeps the item: TTL at least the retention; wc jumps", async () => {
    now += 60_000;
    assert.equal(await take(other, "f", { rpm: 1 }), true);
    const before = await item("f");
    await topUp("f", "rpm", 3, "f1");
    const after = await item("f");
    assert.equal(BigInt(after.wc.N!), BigInt(before.wc.N!) + 32n);
    const keep = Math.ceil(now / 1000) + 90 * 86_400;
    assert.ok(Number(after.ttl.N) >= keep, `${after.ttl.N} < ${keep}`);
    // A write that knows the credit keeps that TTL.
    assert.equal(await take(other, "f", { rpm: 1 }), true);
    assert.ok(Number((await item("f")).ttl.N) >= keep);
  });

  await admin.close();
  await other.close();
});
