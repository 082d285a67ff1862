/**
 * A bucket's TTL is written when it is due: a write to an item the writer knows exists, whose TTL
 * as last seen covers what the write needs (the moment the bucket is full again plus an hour),
 * sends no `ttl`; a write that needs more writes that plus half an hour. Checked on DynamoDB
 * Local, with an injected clock: what each write sends, and after every write of a random run
 * (consumes, refills, debt from adjustments) that the item's TTL covers the moment its stored
 * tats are full again plus the hour, so expiry never forgives debt; and, with two processes whose
 * calls name different limits, that a write whose answer shows a TTL the other lowered raises it.
 */

import assert from "node:assert/strict";
import {
  type AttributeValue,
  DeleteItemCommand,
  GetItemCommand,
  UpdateItemCommand,
  type UpdateItemCommandInput,
} from "@aws-sdk/client-dynamodb";
import fc from "fast-check";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import * as math from "../src/bucket.ts";
import { BUCKET_GRACE_SECONDS } from "../src/engine/types.ts";
import { TTL_SLACK_SECONDS } from "../src/engine/ttl.ts";
import { dynamoTest, recordUpdates, uniqueTableName } from "./_dynamo.ts";

const limits = [Limit.perMinute("rpm", 100), Limit.perHour("tpm", 10_000)];
const KEY = { PK: { S: "ENTITY#k1" }, SK: { S: "#BUCKET#api" } };
const request = { entityId: "k1", resource: "api", limits, consume: { rpm: 1, tpm: 10 } };

/** The latest moment (epoch ms) the item's stored tats are full again. */
function fullAtMs(item: Record<string, AttributeValue>): bigint {
  let at = 0n;
  for (const [name, value] of Object.entries(item)) {
    if (!name.startsWith("t_") || value.N === undefined) continue;
    const spec = math.parseSpecKey(item[`k_${name.slice(2)}`]?.S ?? "");
    if (spec === undefined) continue;
    const ms = math.tatToMs(spec, BigInt(value.N));
    if (ms > at) at = ms;
  }
  return at;
}

dynamoTest("the TTL is written when due, and always covers the debt", async (t, { client }) => {
  const tableName = uniqueTableName("ttl_due");
  const { sent } = recordUpdates(client);
  let now = 1_800_000_000_000;
  const limiter = new RateLimiter({ tableName, client, clock: () => now, createTable: true });
  const stored = async () =>
    (await client.send(
      new GetItemCommand({ TableName: tableName, Key: KEY, ConsistentRead: true }),
    )).Item!;
  const ttlOf = async () => BigInt((await stored()).ttl.N!);
  const writesTtl = (input: UpdateItemCommandInput) => /#ttl = /.test(input.UpdateExpression!);
  try {
    await t.step("the first write sets what it needs plus the slack", async () => {
      await (await limiter.acquire(request)).commit();
      assert.ok(writesTtl(sent.at(-1)!));
      const item = await stored();
      const needed = math.ceilDiv(fullAtMs(item), 1000n) + BUCKET_GRACE_SECONDS;
      // What the write needed is computed from the tats it may leave (now + τ), at least those
      // it left.
      assert.ok(BigInt(item.ttl.N!) >= needed + TTL_SLACK_SECONDS, `${item.ttl.N} vs ${needed}`);
    });

    await t.step("writes the TTL covers send none, and leave it as it is", async () => {
      const before = await ttlOf();
      for (let i = 0; i < 5; i++) {
        now += 60_000;
        sent.length = 0;
        await (await limiter.acquire(request)).commit();
        assert.equal(sent.length, 1);
        assert.ok(!writesTtl(sent[0]), sent[0].UpdateExpression);
        assert.equal(sent[0].ExpressionAttributeNames, undefined, "no name placeholder left");
      }
      assert.equal(await ttlOf(), before);
    });

    await t.step("past the slack, the next write raises it again", async () => {
      const before = await ttlOf();
      now += Number(TTL_SLACK_SECONDS) * 1000;
      sent.length = 0;
      await (await limiter.acquire(request)).commit();
      assert.ok(writesTtl(sent[0]));
      assert.ok((await ttlOf()) > before);
    });

    await t.step("a TTL removed behind its back is mended by the next write", async () => {
      await client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: KEY,
          UpdateExpression: "REMOVE #ttl",
          ExpressionAttributeNames: { "#ttl": "ttl" },
        }),
      );
      // This write still believes the TTL it saw and sends none; its answer (the whole item)
      // shows none, so it raises it at once, with a second call.
      now += 1_000;
      sent.length = 0;
      await (await limiter.acquire(request)).commit();
      assert.equal(sent.length, 2);
      assert.ok(!writesTtl(sent[0]));
      assert.equal(sent[1].UpdateExpression, "SET #ttl = :ttl");
      const item = await stored();
      assert.ok(BigInt(item.ttl.N!) * 1000n >= fullAtMs(item) + BUCKET_GRACE_SECONDS * 1000n);
    });

    await t.step("an item deleted behind its back is made again with a TTL", async () => {
      await client.send(new DeleteItemCommand({ TableName: tableName, Key: KEY }));
      now += 1_000;
      sent.length = 0;
      await (await limiter.acquire(request)).commit();
      // The write that knew the item failed (it asks that the item exists); the next sets a TTL.
      assert.equal(sent.length, 2);
      assert.ok(!writesTtl(sent[0]));
      assert.ok(writesTtl(sent[1]));
      const item = await stored();
      assert.ok(BigInt(item.ttl.N!) * 1000n >= fullAtMs(item) + BUCKET_GRACE_SECONDS * 1000n);
    });

    await t.step("a random run: the TTL always covers the stored tats plus the hour", async () => {
      const step = fc.record({
        advanceMs: fc.integer({ min: 0, max: 3_000_000 }),
        tpm: fc.integer({ min: 0, max: 4_000 }),
        adjust: fc.integer({ min: -2_000, max: 30_000 }),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 25 }), async (steps) => {
          for (const s of steps) {
            now += s.advanceMs;
            try {
              const lease = await limiter.acquire({ ...request, consume: { rpm: 1, tpm: s.tpm } });
              // An adjustment may leave debt (tat past now + τ): the TTL must cover it too.
              if (s.adjust !== 0) await lease.adjust({ tpm: s.adjust });
              await lease.commit();
            } catch (err) {
              if (!(err instanceof RateLimitExceeded)) throw err;
            }
            const item = await stored();
            const ttlMs = BigInt(item.ttl.N!) * 1000n;
            const due = fullAtMs(item) + BUCKET_GRACE_SECONDS * 1000n;
            assert.ok(ttlMs >= due, `ttl ${ttlMs} < full at + 1 h ${due}`);
          }
        }),
        { numRuns: 6 },
      );
    });
  } finally {
    await limiter.close();
  }
});

dynamoTest(
  "another process that names other limits lowers the TTL: the next write mends it",
  async (t, { client }) => {
    const tableName = uniqueTableName("ttl_mixed");
    let now = 1_800_000_000_000;
    const a = new RateLimiter({ tableName, client, clock: () => now, createTable: true });
    const b = new RateLimiter({ tableName, client, clock: () => now });
    const stored = async (entityId: string) =>
      (await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#api" } },
          ConsistentRead: true,
        }),
      )).Item!;
    const take = async (l: RateLimiter, entityId: string, limits: Limit[], name: string, n = 1) =>
      await (await l.acquire({ entityId, resource: "api", limits, consume: { [name]: n } }))
        .commit();
    const rpm = [Limit.perMinute("rpm", 100)];
    try {
      await t.step(
        "a daily limit's debt outlives a per-minute write of another process",
        async () => {
          const daily = [Limit.perDay("daily", 100)];
          await take(a, "d", daily, "daily", 50);
          now += 1_000;
          // Process b knows nothing of the daily limit: it writes the TTL its own limit needs.
          await take(b, "d", rpm, "rpm");
          assert.ok(BigInt((await stored("d")).ttl.N!) * 1000n < fullAtMs(await stored("d")));
          now += 1_000;
          // a still believes the TTL it wrote; its answer shows the lower one, and it raises it.
          await take(a, "d", daily, "daily", 40);
          const item = await stored("d");
          const due = fullAtMs(item) + BUCKET_GRACE_SECONDS * 1000n;
          assert.ok(BigInt(item.ttl.N!) * 1000n >= due, `${item.ttl.N} s, due ${due} ms`);
        },
      );

      await t.step("so does a 30-day quota's window", async () => {
        const quota = [Limit.quota("q", 1000, { resetAfter: "30d" })];
        await take(a, "q", quota, "q", 500);
        now += 1_000;
        await take(b, "q", rpm, "rpm");
        now += 1_000;
        await take(a, "q", quota, "q", 400);
        const item = await stored("q");
        const windowEndSec = (BigInt(item.w_q.N!) + 30n * 86_400_000n) / 1000n;
        assert.ok(BigInt(item.ttl.N!) >= windowEndSec, `${item.ttl.N} < ${windowEndSec}`);
      });
    } finally {
      await a.close();
      await b.close();
    }
  },
);
