// Reset and top-up on DynamoDB Local (and the in-memory backend): exact token counts, shards,
// idempotency, bad input, audit events, and no over-admission against a model.
import assert from "node:assert/strict";
import { GetItemCommand, QueryCommand } from "@aws-sdk/client-dynamodb";
import fc from "fast-check";
import { Limit, RateLimiter, RateLimitExceeded, ValidationError } from "../mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const rpm = Limit.perMinute("rpm", 10);
const tpm = Limit.perMinute("tpm", 1000);

/** Takes tokens until refused; returns how many acquires of `each` passed. */
async function drain(
  limiter: RateLimiter,
  entityId: string,
  limits: Limit[],
  consume: Record<string, number>,
  extra: Record<string, unknown> = {},
): Promise<number> {
  let n = 0;
  for (;;) {
    try {
      await (await limiter.acquire({ entityId, resource: "api", limits, consume, ...extra }))
        .commit();
      n++;
    } catch (err) {
      if (err instanceof RateLimitExceeded) return n;
      throw err;
    }
  }
}

dynamoTest("reset and top-up on DynamoDB Local", async (t, { client }) => {
  const tableName = uniqueTableName("bucketops");
  let now = 1_700_000_000_000;
  const admin = new RateLimiter({ tableName, client, createTable: true, clock: () => now });
  await admin.getEntity("none"); // creates the table
  const other = new RateLimiter({ tableName, client, clock: () => now, denyCache: false });
  const auditEvents = async (entityId: string) => {
    const out = await client.send(
      new QueryCommand({
        TableName: tableName,
        IndexName: "GSI1",
        KeyConditionExpression: "GSI1PK = :p",
        ExpressionAttributeValues: { ":p": { S: `AUDIT#ENTITY#${entityId}` } },
      }),
    );
    return (out.Items ?? []).map((i) => ({
      action: i.action.S,
      before: JSON.parse(i.before?.S ?? "null"),
      after: JSON.parse(i.after?.S ?? "null"),
    }));
  };
  const item = (entityId: string, sk: string) =>
    client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: sk } },
        ConsistentRead: true,
      }),
    ).then((o) => o.Item);

  await t.step("reset refills every limit; usage counters stay; wc goes up", async () => {
    assert.equal(await drain(other, "k1", [rpm, tpm], { rpm: 1, tpm: 100 }), 10);
    const before = await item("k1", "#BUCKET#api");
    const r = await admin.resetBucket({ entityId: "k1", resource: "api" });
    assert.deepEqual(r, {
      applied: true,
      before: { rpm: 0, tpm: 0 },
      after: { rpm: 10, tpm: 1000 },
    });
    const after = await item("k1", "#BUCKET#api");
    assert.equal(after?.u_rpm?.N, "10000");
    assert.equal(after?.rq?.N, "10");
    assert.equal(after?.t_rpm, undefined);
    assert.equal(BigInt(after!.wc.N!), BigInt(before!.wc.N!) + 1n);
    assert.equal(
      (await admin.available({ entityId: "k1", resource: "api", limits: [rpm, tpm] })).rpm,
      10,
    );
    // Another process (no deny cache) gets exactly the capacity again.
    assert.equal(await drain(other, "k1", [rpm, tpm], { rpm: 1, tpm: 100 }), 10);
    const events = await auditEvents("k1");
    assert.deepEqual(events.map((e) => e.action), ["bucket.reset"]);
    assert.deepEqual(events[0].before, { available: { rpm: 0, tpm: 0 } });
  });

  await t.step("reset of one named limit leaves the others", async () => {
    await admin.resetBucket({ entityId: "k1", resource: "api", limits: ["tpm"] });
    const a = await admin.available({ entityId: "k1", resource: "api", limits: [rpm, tpm] });
    assert.deepEqual([a.rpm, a.tpm], [0, 1000]);
  });

  await t.step("the resetting process's deny cache is cleared at once", async () => {
    now += 60_000;
    assert.equal(await drain(admin, "k2", [rpm], { rpm: 1 }), 10);
    await assert.rejects(
      admin.acquire({ entityId: "k2", resource: "api", limits: [rpm], consume: { rpm: 1 } }),
      RateLimitExceeded,
    );
    await admin.resetBucket({ entityId: "k2", resource: "api" });
    assert.equal(await drain(admin, "k2", [rpm], { rpm: 1 }), 10);
  });

  await t.step("a sharded bucket resets on every shard item", async () => {
    const rps = Limit.perMinute("rps", 40);
    await admin.setLimits({ entityId: "hot", resource: "api", limits: [rps], shards: 4 });
    now += 3_600_000; // past the switch to 4 shards and a full refill from it
    // A sharded acquire tries a few shards (picked at random): a drain stops when those tried are
    // empty, so how many it gets varies (34 to 40 seen); the reset's before/after are exact.
    const n = await drain(other, "hot", [rps], { rps: 1 }, { useStoredLimits: true });
    assert.ok(n > 0 && n <= 40, `drained ${n}`);
    const r = await admin.resetBucket({ entityId: "hot", resource: "api" });
    assert.deepEqual(r.before, { rps: 40 - n });
    assert.deepEqual(r.after, { rps: 40 });
    for (let i = 0; i < 4; i++) {
      assert.equal((await item("hot", `#BUCKET#api#${i}/4`))?.t_rps, undefined, `shard ${i}`);
    }
    const again = await drain(other, "hot", [rps], { rps: 1 }, { useStoredLimits: true });
    assert.ok(again > 0 && again <= 40, `drained ${again} after the reset`);
  });

  await t.step("top-up adds exactly N, split over shards", async () => {
    now += 3_600_000;
    assert.equal(await drain(other, "k3", [tpm], { tpm: 100 }), 10);
    const r = await admin.topUp({
      entityId: "k3",
      resource: "api",
      limit: "tpm",
      amount: 300,
      idempotencyKey: "inc-1",
    });
    assert.deepEqual(r, { applied: true, before: { tpm: 0 }, after: { tpm: 300 } });
    assert.equal(await drain(other, "k3", [tpm], { tpm: 100 }), 3);
    const events = await auditEvents("k3");
    assert.deepEqual(events.map((e) => e.action), ["bucket.top-up"]);
    assert.equal(events[0].after.idempotencyKey, "inc-1");
    // Shards: 7 split 2, 2, 2, 1 over the 4 items (each far from full after a drain).
    const rps = Limit.perMinute("rps", 40);
    await drain(other, "hot", [rps], { rps: 1 }, { useStoredLimits: true });
    const s = await admin.topUp({
      entityId: "hot",
      resource: "api",
      limit: "rps",
      amount: 7,
      idempotencyKey: "inc-2",
    });
    // The drain tries random shards, so it may leave a few tokens (up to 6 seen): not full.
    assert.ok(s.before.rps < 40, JSON.stringify(s));
    assert.equal(s.after.rps - s.before.rps, 7);
  });

  await t.step("a repeated key adds once; two concurrent ones add once", async () => {
    const again = await admin.topUp({
      entityId: "k3",
      resource: "api",
      limit: "tpm",
      amount: 300,
      idempotencyKey: "inc-1",
    });
    assert.equal(again.applied, false);
    assert.equal(await drain(other, "k3", [tpm], { tpm: 100 }), 0);
    const results = await Promise.all(
      [admin, other].map((l) =>
        l.topUp({ entityId: "k3", resource: "api", limit: "tpm", amount: 200, idempotencyKey: "c" })
      ),
    );
    assert.deepEqual(results.map((r) => r.applied).sort(), [false, true]);
    assert.equal(await drain(other, "k3", [tpm], { tpm: 100 }), 2);
    const topUps = (await auditEvents("k3")).filter((e) => e.action === "bucket.top-up");
    assert.equal(topUps.length, 2); // inc-1 and c, each once
  });

  await t.step("top-up past capacity fills the bucket, the rest is credit", async () => {
    now += 3_600_000;
    assert.equal(await drain(other, "k4", [tpm], { tpm: 100 }), 10);
    const r = await admin.topUp({
      entityId: "k4",
      resource: "api",
      limit: "tpm",
      amount: 5000,
      idempotencyKey: "big",
    });
    assert.deepEqual(r.after, { tpm: 5000 });
    assert.equal((await item("k4", "#BUCKET#api"))?.c_tpm?.N, "4000000");
    assert.equal(await drain(other, "k4", [tpm], { tpm: 100 }), 50);
  });

  await t.step("bad input is refused naming the field, nothing written", async () => {
    const base = { entityId: "k3", resource: "api", limit: "tpm", amount: 1, idempotencyKey: "x" };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, amount: 0 }, "amount"],
      [{ ...base, amount: -5 }, "amount"],
      [{ ...base, amount: 0.0001 }, "amount"],
      [{ ...base, limit: "nope" }, "limit"],
      [{ ...base, idempotencyKey: undefined }, "idempotencyKey"],
      [{ ...base, idempotencyKey: "a#b" }, "idempotencyKey"],
    ];
    const events = (await auditEvents("k3")).length;
    const bucket = await item("k3", "#BUCKET#api");
    for (const [opts, field] of cases) {
      await assert.rejects(
        admin.topUp(opts as never),
        (e) => e instanceof ValidationError && e.field === field,
        JSON.stringify(opts),
      );
    }
    await assert.rejects(
      admin.resetBucket({ entityId: "k3", resource: "api", limits: ["nope"] }),
      (e) => e instanceof ValidationError && e.field === "limits",
    );
    assert.equal((await auditEvents("k3")).length, events);
    assert.deepEqual(await item("k3", "#BUCKET#api"), bucket);
    assert.equal(await item("k3", "#TOPUP#api#x"), undefined);
  });

  await admin.close();
  await other.close();
});

Deno.test("no over-admission over acquire / top-up / reset sequences (in memory, model)", async () => {
  const cap = 5;
  const lim = Limit.perMinute("rpm", cap); // refills 1 token per 12 s
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant("acquire" as const), n: fc.integer({ min: 1, max: 3 }) }),
          fc.record({ kind: fc.constant("topUp" as const), n: fc.integer({ min: 1, max: 8 }) }),
          fc.record({ kind: fc.constant("reset" as const) }),
          fc.record({
            kind: fc.constant("wait" as const),
            ms: fc.integer({ min: 0, max: 15_000 }),
          }),
        ),
        { maxLength: 40 },
      ),
      async (steps) => {
        let now = 1_000_000_000;
        const backend = new InMemoryBackend();
        const a = new RateLimiter({ tableName: "model", backend, clock: () => now });
        const b = new RateLimiter({
          tableName: "model",
          backend,
          clock: () => now,
          denyCache: false,
        });
        // Model, exact: available in twelfths of a thousandth (the limit refills one per ms);
        // credit in thousandths. A top-up fills the bucket's whole thousandths of room first.
        const full = cap * 12_000;
        let avail = full;
        let credit = 0;
        // The item exists from the first step on (a top-up needs the limit to be known).
        await (await b.acquire({
          entityId: "e",
          resource: "api",
          limits: [lim],
          consume: { rpm: 1 },
        }))
          .commit();
        avail -= 12_000;
        let keys = 0;
        for (const s of steps) {
          if (s.kind === "wait") {
            now += s.ms;
            avail = Math.min(full, avail + s.ms);
          } else if (s.kind === "acquire") {
            let ok = true;
            try {
              await (await b.acquire({
                entityId: "e",
                resource: "api",
                limits: [lim],
                consume: { rpm: s.n },
              })).commit();
            } catch (err) {
              if (!(err instanceof RateLimitExceeded)) throw err;
              ok = false;
            }
            const byBucket = avail >= s.n * 12_000;
            const byCredit = !byBucket && credit >= s.n * 1000;
            assert.equal(ok, byBucket || byCredit, `acquire ${s.n}: ${avail / 12_000} + ${credit}`);
            if (byBucket) avail -= s.n * 12_000;
            else if (byCredit) credit -= s.n * 1000;
          } else if (s.kind === "topUp") {
            const key = `k${keys++}`;
            const r = await a.topUp({
              entityId: "e",
              resource: "api",
              limit: "rpm",
              amount: s.n,
              idempotencyKey: key,
            }).catch((err) => {
              // A bucket never written has no limit yet (nothing stored names it).
              if (err instanceof ValidationError && avail === full) return undefined;
              throw err;
            });
            if (r) {
              const fill = Math.min(s.n * 1000, Math.floor((full - avail) / 12));
              avail += fill * 12;
              credit += s.n * 1000 - fill;
              const again = await a.topUp({
                entityId: "e",
                resource: "api",
                limit: "rpm",
                amount: s.n,
                idempotencyKey: key,
              });
              assert.equal(again.applied, false);
            }
          } else {
            await a.resetBucket({ entityId: "e", resource: "api" });
            avail = full;
          }
        }
        assert.equal(backend.auditLog.every((e) => e.action.startsWith("bucket.")), true);
        await a.close();
        await b.close();
      },
    ),
    { numRuns: 200 },
  );
});
