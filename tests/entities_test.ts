import assert from "node:assert/strict";
import {
  type AttributeValue,
  BatchWriteItemCommand,
  QueryCommand,
  type QueryCommandOutput,
} from "@aws-sdk/client-dynamodb";
import {
  EntityExistsError,
  EntityNotFoundError,
  Limit,
  RateLimiter,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { Meter } from "../scripts/meter.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const rpm = (n: number) => Limit.perMinute("rpm", n);
const tpm = (n: number) => Limit.perMinute("tpm", n);

Deno.test({
  name: "entities, cascade and stored limits on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const meter = new Meter(client);
    const tableName = uniqueTableName("entities");
    let now = T0;
    const limiter = new RateLimiter({ tableName, client, createTable: true, clock: () => now });
    const other = () => new RateLimiter({ tableName, client, clock: () => now });
    try {
      await limiter.createEntity({
        entityId: "proj-1",
        name: "Production",
        metadata: { tier: "gold" },
      });
      await limiter.createEntity({ entityId: "key-a", parentId: "proj-1", cascade: true });
      await limiter.createEntity({ entityId: "key-b", parentId: "proj-1" });

      await t.step("entity lifecycle and its errors", async () => {
        const proj = await limiter.getEntity("proj-1");
        assert.equal(proj?.name, "Production");
        assert.deepEqual(proj?.metadata, { tier: "gold" });
        assert.equal(proj?.cascade, false);
        assert.match(proj!.createdAt, /^2027-01-15T/);
        const key = await limiter.getEntity("key-a");
        assert.equal(key?.parentId, "proj-1");
        assert.equal(key?.cascade, true);
        assert.equal(await limiter.getEntity("nobody"), undefined);
        await assert.rejects(limiter.createEntity({ entityId: "proj-1" }), EntityExistsError);
        await assert.rejects(
          limiter.createEntity({ entityId: "key-x", parentId: "missing" }),
          EntityNotFoundError,
        );
        const e = await limiter.createEntity({ entityId: "key-y", parentId: "key-a" }).catch((e) =>
          e
        );
        assert.ok(e instanceof ValidationError);
        assert.match(e.message, /parentId.*"key-a".*top-level/);
        assert.equal(await limiter.getEntity("key-y"), undefined);
        await assert.rejects(limiter.createEntity({ entityId: "bad#id" }), /entityId/);
        assert.deepEqual((await limiter.listChildren("proj-1")).map((c) => c.entityId), [
          "key-a",
          "key-b",
        ]);
        const refused = await limiter.deleteEntity("proj-1").catch((e) => e);
        assert.ok(refused instanceof ValidationError);
        assert.match(refused.message, /has 2 children \(key-a, key-b\); delete them first/);
      });

      await t.step("cascade debits the key and the project in one transaction", async () => {
        const base = { entityId: "key-a", resource: "gpt-4", limits: [rpm(100), tpm(10_000)] };
        await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } }); // warms metadata cache
        meter.reset();
        await (await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } })).commit();
        assert.deepEqual(meter.calls.map((c) => [c.command, c.tableWcu, c.indexWcu]), [
          ["TransactWriteItemsCommand", 4, 0],
        ]);
        const probe = { resource: "gpt-4", limits: [rpm(100), tpm(10_000)] };
        assert.deepEqual(await limiter.available({ entityId: "key-a", ...probe }), {
          rpm: 98,
          tpm: 9_000,
        });
        assert.deepEqual(await limiter.available({ entityId: "proj-1", ...probe }), {
          rpm: 98,
          tpm: 9_000,
        });
        // key-b has no cascade flag: its acquires stay its own unless asked
        await limiter.acquire({ entityId: "key-b", ...probe, consume: { rpm: 1 } });
        assert.deepEqual(await limiter.available({ entityId: "proj-1", ...probe }), {
          rpm: 98,
          tpm: 9_000,
        });
        await limiter.acquire({ entityId: "key-b", ...probe, consume: { rpm: 1 }, cascade: true });
        assert.deepEqual(await limiter.available({ entityId: "proj-1", ...probe }), {
          rpm: 97,
          tpm: 9_000,
        });
        // cascade: false wins over the stored flag
        await limiter.acquire({ entityId: "key-a", ...probe, consume: { rpm: 1 }, cascade: false });
        assert.deepEqual(await limiter.available({ entityId: "proj-1", ...probe }), {
          rpm: 97,
          tpm: 9_000,
        });
      });

      await t.step("adjust, commit and rollback of a cascaded lease apply to both", async () => {
        const probe = { resource: "chat", limits: [tpm(10_000)] };
        const lease = await limiter.acquire({
          entityId: "key-a",
          ...probe,
          consume: { tpm: 1_000 },
        });
        await lease.adjust({ tpm: 250 });
        await lease.commit();
        assert.deepEqual(await limiter.available({ entityId: "key-a", ...probe }), { tpm: 8_750 });
        assert.deepEqual(await limiter.available({ entityId: "proj-1", ...probe }), { tpm: 8_750 });
        const l2 = await limiter.acquire({ entityId: "key-a", ...probe, consume: { tpm: 3_000 } });
        await l2.rollback();
        assert.deepEqual(await limiter.available({ entityId: "key-a", ...probe }), { tpm: 8_750 });
        assert.deepEqual(await limiter.available({ entityId: "proj-1", ...probe }), { tpm: 8_750 });
      });

      await t.step(
        "an exhausted parent blocks every child; the child keeps its tokens",
        async () => {
          await limiter.createEntity({ entityId: "proj-2" });
          await limiter.createEntity({ entityId: "k2-a", parentId: "proj-2", cascade: true });
          await limiter.createEntity({ entityId: "k2-b", parentId: "proj-2", cascade: true });
          await limiter.setLimits({ entityId: "proj-2", limits: [rpm(3)] });
          const base = { resource: "gpt-4", limits: [rpm(10)], useStoredLimits: true };
          await limiter.acquire({ entityId: "k2-a", ...base, consume: { rpm: 2 } });
          await limiter.acquire({ entityId: "k2-b", ...base, consume: { rpm: 1 } });
          const e = await limiter.acquire({ entityId: "k2-a", ...base, consume: { rpm: 1 } }).catch(
            (e) => e,
          );
          assert.ok(e instanceof RateLimitExceeded);
          assert.deepEqual(
            e.statuses.map((s) => [s.entityId, s.limitName, s.available, s.exceeded]),
            [
              ["k2-a", "rpm", 8, false],
              ["proj-2", "rpm", 0, true],
            ],
          );
          assert.equal(e.primaryViolation.entityId, "proj-2");
          assert.equal(e.retryAfterSeconds, 20);
          assert.deepEqual(
            await limiter.available({ entityId: "k2-a", resource: "gpt-4", limits: [rpm(10)] }),
            {
              rpm: 8,
            },
          );
        },
      );

      await t.step("the parent never over-admits under concurrency across children", async () => {
        await limiter.createEntity({ entityId: "proj-3" });
        const children = ["c1", "c2", "c3", "c4"];
        for (const c of children) await limiter.createEntity({ entityId: c, parentId: "proj-3" });
        await limiter.setLimits({ entityId: "proj-3", resource: "gpt-4", limits: [rpm(20)] });
        const limiters = children.map(() =>
          new RateLimiter({ tableName, client, clock: () => now, timeoutMs: 60_000 })
        );
        const results = await Promise.allSettled(
          limiters.flatMap((l, i) =>
            Array.from({ length: 15 }, () =>
              l.acquire({
                entityId: children[i],
                resource: "gpt-4",
                limits: [rpm(100)],
                consume: { rpm: 1 },
                cascade: true,
                useStoredLimits: true,
              }))
          ),
        );
        const admitted = results.filter((r) => r.status === "fulfilled").length;
        const errors = results.filter((r) =>
          r.status === "rejected" && !(r.reason instanceof RateLimitExceeded)
        );
        assert.deepEqual(errors.map((r) => String((r as PromiseRejectedResult).reason)), []);
        assert.equal(admitted, 20);
        assert.deepEqual(
          await limiter.available({ entityId: "proj-3", resource: "gpt-4", limits: [rpm(20)] }),
          { rpm: 0 },
        );
        let childTotal = 0;
        for (const c of children) {
          childTotal += 100 -
            (await limiter.available({ entityId: c, resource: "gpt-4", limits: [rpm(100)] })).rpm;
        }
        assert.equal(childTotal, 20);
      });

      await t.step(
        "stored limits: resource, then entity-wide, then the call's; parent resolves its own",
        async () => {
          await limiter.createEntity({ entityId: "proj-4" });
          await limiter.createEntity({ entityId: "k4", parentId: "proj-4" });
          await limiter.setLimits({ entityId: "k4", limits: [rpm(7)] });
          await limiter.setLimits({ entityId: "k4", resource: "gpt-4", limits: [rpm(5)] });
          await limiter.setLimits({ entityId: "proj-4", resource: "gpt-4", limits: [rpm(50)] });
          assert.deepEqual(
            (await limiter.getLimits({ entityId: "k4", resource: "gpt-4" })).map((l) => l.capacity),
            [5],
          );
          assert.deepEqual((await limiter.getLimits({ entityId: "k4" })).map((l) => l.capacity), [
            7,
          ]);
          assert.deepEqual(await limiter.getLimits({ entityId: "k4", resource: "none" }), []);
          const call = {
            limits: [rpm(100)],
            consume: { rpm: 1 },
            useStoredLimits: true,
            cascade: true,
          };
          const statuses = async (resource: string) => {
            // consume everything, then look at the rejection
            const e = await limiter.acquire({
              entityId: "k4",
              resource,
              ...call,
              consume: { rpm: 1_000 },
            })
              .catch((e) => e);
            assert.ok(e instanceof RateLimitExceeded);
            return e.statuses.map((s) => [s.entityId, s.limit.capacity]);
          };
          assert.deepEqual(await statuses("gpt-4"), [["k4", 5], ["proj-4", 50]]);
          assert.deepEqual(await statuses("claude"), [["k4", 7], ["proj-4", 100]]);
          // without useStoredLimits both use the call's
          const e = await limiter.acquire({
            entityId: "k4",
            resource: "gpt-4",
            limits: [rpm(100)],
            consume: { rpm: 101 },
            cascade: true,
          })
            .catch((e) => e);
          assert.deepEqual(e.statuses.map((s: { limit: Limit }) => s.limit.capacity), [100, 100]);
        },
      );

      await t.step(
        "stored limits are cached; setLimits/deleteLimits invalidate at once",
        async () => {
          await limiter.setLimits({ entityId: "cached", limits: [rpm(2)] });
          const base = {
            entityId: "cached",
            resource: "api",
            limits: [rpm(100)],
            useStoredLimits: true,
            cascade: false,
          };
          await limiter.acquire({ ...base, consume: { rpm: 1 } });
          meter.reset();
          await limiter.acquire({ ...base, consume: { rpm: 1 } });
          assert.deepEqual(meter.calls.map((c) => c.command), ["UpdateItemCommand"]); // warm: one call
          await assert.rejects(
            limiter.acquire({ ...base, consume: { rpm: 1 } }),
            RateLimitExceeded,
          );
          await limiter.setLimits({ entityId: "cached", limits: [rpm(10)] }); // raised: balance kept
          now += 6_000; // 0.2 tokens refilled at the old 2/min; converted on this next use
          const e = await limiter.acquire({ ...base, consume: { rpm: 1 } }).catch((e) => e);
          assert.ok(e instanceof RateLimitExceeded);
          assert.equal(e.statuses[0].limit.capacity, 10);
          assert.equal(e.retryAfterSeconds, 4.8); // the missing 0.8 at the new 10/min
          now += 4_800;
          await limiter.acquire({ ...base, consume: { rpm: 1 } });
          await limiter.deleteLimits({ entityId: "cached" }); // back to the call's 100, balance kept
          now += 6_000; // one token at the 10/min the bucket was last written under
          await limiter.acquire({ ...base, consume: { rpm: 1 } });
          now += 600;
          // another process caches for limitsCacheTtlMs: an entry past 2 × TTL is read anew (a
          // busy process refreshes it in the background after the TTL: config_refresh_test.ts)
          const cachedElsewhere = new RateLimiter({
            tableName,
            client,
            clock: () => now,
            limitsCacheTtlMs: 50,
          });
          await cachedElsewhere.acquire({ ...base, consume: { rpm: 1 } });
          await limiter.setLimits({ entityId: "cached", resource: "api", limits: [rpm(1)] });
          await new Promise((r) => setTimeout(r, 110));
          const seen = await cachedElsewhere.acquire({ ...base, consume: { rpm: 1 } }).catch((e) =>
            e
          );
          assert.ok(seen instanceof RateLimitExceeded);
          assert.equal(seen.statuses[0].limit.capacity, 1);
        },
      );

      await t.step("a warm acquire writes no index; a bucket never enters GSI1", async () => {
        const base = { entityId: "key-a", resource: "idx", limits: [rpm(100), tpm(1_000)] };
        await limiter.acquire({ ...base, consume: { rpm: 1 } });
        meter.reset();
        for (let i = 0; i < 5; i++) {
          await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 10 } });
        }
        assert.equal(meter.indexWcu, 0);
        assert.equal(meter.wcu, 5 * 4); // cascaded: 2 items, transactional
        const single = { ...base, entityId: "solo", cascade: false };
        meter.reset();
        await limiter.acquire({ ...single, consume: { rpm: 1 } }); // first use: reads controls
        await limiter.acquire({ ...single, consume: { rpm: 1 } });
        assert.deepEqual([meter.count, meter.wcu, meter.indexWcu], [3, 2, 0]);
      });

      await t.step("deleting an entity removes every item, over many pages", async () => {
        await limiter.createEntity({ entityId: "big", parentId: "proj-1" });
        await limiter.setLimits({ entityId: "big", limits: [rpm(10)] });
        for (const r of ["gpt-4", "claude", "mistral"]) {
          await limiter.acquire({
            entityId: "big",
            resource: r,
            limits: [tpm(1e6)],
            consume: { tpm: 1 },
            cascade: false,
          });
        }
        // usage snapshots pile up per entity: 1,100 of them make the deletion span several pages
        for (let i = 0; i < 1_100; i += 25) {
          await client.send(
            new BatchWriteItemCommand({
              RequestItems: {
                [tableName]: Array.from({ length: 25 }, (_, j) => ({
                  PutRequest: {
                    Item: {
                      PK: { S: "ENTITY#big" },
                      SK: { S: `#USAGE#gpt-4#hourly#${String(i + j).padStart(6, "0")}` },
                      rq: { N: "1" },
                    },
                  },
                })),
              },
            }),
          );
        }
        const count = async () => {
          let n = 0;
          let start: Record<string, AttributeValue> | undefined;
          do {
            const page: QueryCommandOutput = await client.send(
              new QueryCommand({
                TableName: tableName,
                KeyConditionExpression: "PK = :pk",
                ExpressionAttributeValues: { ":pk": { S: "ENTITY#big" } },
                Select: "COUNT",
                ExclusiveStartKey: start,
              }),
            );
            n += page.Count ?? 0;
            start = page.LastEvaluatedKey;
          } while (start);
          return n;
        };
        assert.equal(await count(), 1_105);
        await limiter.deleteEntity("big");
        assert.equal(await count(), 0);
        assert.equal(await limiter.getEntity("big"), undefined);
        assert.deepEqual((await limiter.listChildren("proj-1")).map((c) => c.entityId), [
          "key-a",
          "key-b",
        ]);
      });
      void other;
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
