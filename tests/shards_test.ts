/**
 * Shards on DynamoDB Local: never an over-admission across processes, `available()` adds the
 * shards up, a change of the shard count starts the new items empty (never admits early, refuses
 * early for at most one refill of the capacity), throttling doubles the stored count, bad counts
 * are refused before any call, and the CLI's `--shards`.
 */

import assert from "node:assert/strict";
import { type DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, RateLimitExceeded, ValidationError } from "../mod.ts";
import { createTestLimiter, startWriteCeiling } from "../src/testing/mod.ts";
import { shardLimits } from "../src/engine/shards.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const HOUR = 3_600_000;
const RPM = [Limit.perMinute("rpm", 100)];

/** Requests counted on one item (`rq`). */
async function requestsOn(client: DynamoDBClient, tableName: string, entityId: string, sk: string) {
  const { Item } = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: sk } },
      ConsistentRead: true,
    }),
  );
  return Number(Item?.rq?.N ?? 0);
}

/** Acquires 1 of the first limit until `tries` calls are made; returns how many were admitted. */
async function drain(
  limiter: RateLimiter,
  entityId: string,
  tries: number,
  inflight = 8,
  limits = RPM,
) {
  let admitted = 0, left = tries;
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (left-- > 0) {
      try {
        await limiter.acquire({
          entityId,
          resource: "api",
          limits,
          consume: { [limits[0].name]: 1 },
          useStoredLimits: true,
        });
        admitted++;
      } catch (err) {
        if (!(err instanceof RateLimitExceeded)) throw err;
      }
    }
  }));
  return admitted;
}

Deno.test("shard counts are checked before any call", async () => {
  const limiter = createTestLimiter({ clock: () => T0 });
  await limiter.createEntity({ entityId: "k" });
  for (const bad of [0, 65, 1.5, -2, NaN, "2" as unknown as number]) {
    await assert.rejects(
      limiter.setLimits({ entityId: "k", limits: RPM, shards: bad }),
      (err) => err instanceof ValidationError && err.field === "shards",
    );
  }
  // 100 a minute in 128 shards is not allowed (> 64); in 64 it is under 1 token a shard.
  await assert.rejects(
    limiter.setLimits({ entityId: "k", limits: [Limit.perMinute("rpm", 50)], shards: 64 }),
    (err) =>
      err instanceof ValidationError && err.field === "shards" &&
      /largest single request that passes is C\/N = 0\.781/.test(err.message) &&
      /at most 50 shards/.test(err.message),
  );
  await limiter.setLimits({ entityId: "k", limits: RPM, shards: 64 });
  assert.equal((await limiter.getShards({ entityId: "k" })).shards, 64);
  // New limits that the stored count would split below one token are refused too.
  await assert.rejects(
    limiter.setLimits({ entityId: "k", limits: [Limit.perMinute("rpm", 10)] }),
    (err) => err instanceof ValidationError && err.field === "shards" && err.value === "64",
  );
  assert.deepEqual((await limiter.getLimits({ entityId: "k" }))[0].capacity, 100);
  // Floors: never more in all than the bucket.
  const [s] = shardLimits([Limit.perMinute("tpm", 1000.5)], 8);
  assert.equal(s.capacityMilli, 125_062n);
  assert.ok(s.capacityMilli * 8n <= 1_000_500n);
  await limiter.close();
});

Deno.test({
  name: "shards on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("shards");
    let now = T0;
    const clock = () => now;
    const make = (extra = {}) =>
      new RateLimiter({ tableName, client, clock, limitsCacheTtlMs: 3_600_000, ...extra });
    try {
      await new RateLimiter({ tableName, client }).createTable();
      // Changes of N take over SWITCH after they are stored: twice its 500 ms TTL, no clock
      // tolerance, and 10 s for the write.
      const admin = make({ limitsCacheTtlMs: 500, clockToleranceMs: 0 });
      const SWITCH = 11_000;
      const setAt = async (
        at: number,
        entityId: string,
        shards: number,
        limits = RPM,
      ) => {
        now = at;
        await admin.setLimits({ entityId, resource: "api", limits, shards });
        now = T0;
      };

      await t.step("4 processes on 8 shards never over-admit (frozen clock)", async () => {
        await admin.createEntity({ entityId: "k8" });
        await setAt(T0 - HOUR, "k8", 8); // a layout an hour old: its shards are full
        const limiters = Array.from({ length: 4 }, () => make());
        const admitted = (await Promise.all(limiters.map((l) => drain(l, "k8", 120))))
          .reduce((a, b) => a + b, 0);
        // Each shard holds 12.5: requests of 1 take 12 of each, 96 in all (never over 100).
        assert.ok(admitted <= 96, `admitted ${admitted}`);
        // Refused with tokens left on other shards: at most (N − 1) × the largest request each
        // time; with 480 tries of 3 shards each, every shard is found empty in the end.
        assert.ok(admitted >= 96 - 7, `admitted ${admitted}`);
        let counted = 0;
        for (let i = 0; i < 8; i++) {
          counted += await requestsOn(client, tableName, "k8", `#BUCKET#api#${i}/8`);
        }
        assert.equal(counted, admitted);
        assert.equal(await requestsOn(client, tableName, "k8", "#BUCKET#api"), 0);
        const avail = await admin.available({
          entityId: "k8",
          resource: "api",
          limits: RPM,
          useStoredLimits: true,
        });
        // The halves the shards keep add up: what 1-token requests could not use.
        assert.equal(avail.rpm, 100 - admitted);
        await Promise.all(limiters.map((l) => l.close()));
      });

      await t.step("available() adds the shards up", async () => {
        await admin.createEntity({ entityId: "ka" });
        await setAt(T0 - HOUR, "ka", 4);
        const l = make();
        assert.equal(
          (await l.available({
            entityId: "ka",
            resource: "api",
            limits: RPM,
            useStoredLimits: true,
          }))
            .rpm,
          100,
        );
        assert.equal(await drain(l, "ka", 7, 1), 7);
        assert.equal(
          (await l.available({
            entityId: "ka",
            resource: "api",
            limits: RPM,
            useStoredLimits: true,
          }))
            .rpm,
          93,
        );
        await l.close();
      });

      await t.step(
        "4 → 8 shards mid-run (frozen clock): the old layout serves until the switch",
        async () => {
          await admin.createEntity({ entityId: "km" });
          await setAt(T0 - HOUR, "km", 4);
          const fresh = make();
          const stale = make(); // keeps the 4-shard layout cached (an hour's TTL)
          let admitted = await drain(fresh, "km", 30, 2);
          admitted += await drain(stale, "km", 30, 2);
          assert.equal(admitted, 60);
          // The change, at T0: the 8 new items take over at T0 + SWITCH, empty then.
          await admin.setLimits({ entityId: "km", resource: "api", limits: RPM, shards: 8 });
          assert.deepEqual(await admin.getShards({ entityId: "km", resource: "api" }), {
            shards: 8,
            shardsSince: new Date(T0 + SWITCH).toISOString(),
            previousShards: 4,
          });
          const after = make();
          admitted += await drain(after, "km", 100); // still the 4 old items: 40 left
          admitted += await drain(stale, "km", 100);
          assert.equal(admitted, 100);
          for (let i = 0; i < 8; i++) {
            assert.equal(await requestsOn(client, tableName, "km", `#BUCKET#api#${i}/8`), 0);
          }
          const avail = () =>
            after.available({
              entityId: "km",
              resource: "api",
              limits: RPM,
              useStoredLimits: true,
            });
          assert.equal((await avail()).rpm, 0);
          // Before the switch the old items refill (SWITCH of a minute's 100 is 18.3)…
          now = T0 + SWITCH - 1;
          assert.equal((await avail()).rpm, 18);
          // …and from it the new items, empty at the switch.
          now = T0 + SWITCH;
          assert.equal((await avail()).rpm, 0);
          now = T0 + SWITCH + 30_000;
          assert.equal((await avail()).rpm, 50);
          now = T0 + SWITCH + 60_000;
          assert.equal((await avail()).rpm, 100);
          assert.equal(await drain(after, "km", 200), 96);
          now = T0;
          await Promise.all([fresh, stale, after].map((l) => l.close()));
        },
      );

      await t.step("a change of N during a pending change is refused", async () => {
        await admin.createEntity({ entityId: "kp" });
        await setAt(T0, "kp", 2);
        await assert.rejects(
          setAt(T0 + SWITCH - 1, "kp", 4),
          (err) =>
            err instanceof ValidationError && err.field === "shards" && /pending/.test(err.message),
        );
        await setAt(T0 + SWITCH, "kp", 4);
        assert.equal((await admin.getShards({ entityId: "kp", resource: "api" })).shards, 4);
      });

      await t.step("an old item under a reused key counts as empty at the switch", async () => {
        await admin.createEntity({ entityId: "kr" });
        await setAt(T0 - 3 * HOUR, "kr", 4);
        now = T0 - 2 * HOUR;
        const early = make();
        assert.equal(await drain(early, "kr", 8, 1), 8); // writes items i/4 two hours ago
        await early.close();
        await setAt(T0 - HOUR, "kr", 8);
        await setAt(T0, "kr", 4); // back to 4 at T0 + SWITCH: the items i/4 refilled long since
        now = T0 + SWITCH;
        const l = make();
        assert.equal(
          (await l.available({
            entityId: "kr",
            resource: "api",
            limits: RPM,
            useStoredLimits: true,
          }))
            .rpm,
          0,
        );
        assert.equal(await drain(l, "kr", 20), 0);
        now = T0 + SWITCH + 15_000; // a quarter of a minute: 6.25 on each shard of 25, 6 usable
        assert.equal(await drain(l, "kr", 60), 24);
        now = T0;
        await l.close();
      });

      await t.step(
        "2 → 4 shards with a moving clock: a process on the old N never makes refill count twice",
        async () => {
          // 20 a second: 2 shards of 10 (10/s), then 4 of 5 (5/s); all exact in thousandths.
          const RPS = [Limit.perSecond("rps", 20)];
          await admin.createEntity({ entityId: "kw" });
          await setAt(T0 - HOUR, "kw", 2, RPS); // full at T0
          const STEP = 250, CHANGE = T0 + 100, END = CHANGE + SWITCH + 2_000;
          now = T0;
          let stale = make(); // caches N = 2 (an hour's TTL) with no schedule
          let admitted = await drain(stale, "kw", 30, 2, RPS);
          now = CHANGE;
          await admin.setLimits({ entityId: "kw", resource: "api", limits: RPS, shards: 4 });
          const fresh = make(); // knows the schedule
          const switchAt = CHANGE + SWITCH;
          const oldRq = async () =>
            (await requestsOn(client, tableName, "kw", "#BUCKET#api#0/2")) +
            (await requestsOn(client, tableName, "kw", "#BUCKET#api#1/2"));
          let staleAfterChange = -(await oldRq());
          for (now = CHANGE + STEP; now <= END; now += STEP) {
            if (now >= switchAt && stale) {
              // By the switch every process has read the change (its cache is at most 2 TTLs
              // old): here, a new process in its place.
              staleAfterChange += await oldRq();
              await stale.close();
              stale = make();
            }
            admitted += await drain(stale, "kw", 12, 2, RPS);
            admitted += await drain(fresh, "kw", 12, 2, RPS);
          }
          now -= STEP; // the last step's time
          assert.ok(staleAfterChange > 0, "the stale process wrote the old items after the change");
          let newRq = 0;
          for (let i = 0; i < 4; i++) {
            newRq += await requestsOn(client, tableName, "kw", `#BUCKET#api#${i}/4`);
          }
          assert.ok(newRq > 0, "the new items served after the switch");
          // Full at T0, refilling 20 a second until the last step.
          const most = 20 + (20 * (now - T0)) / 1000;
          assert.ok(admitted <= most, `admitted ${admitted} > ${most}`);
          // Under-admission: what the old items held at the switch (≤ one step's refill, 5, when
          // drained every step) and less than 1 token per shard left at the end.
          assert.ok(admitted >= most - 5 - 4, `admitted ${admitted} < ${most} - 9`);
          now = T0;
          await Promise.all([stale, fresh].map((l) => l.close()));
        },
      );

      await t.step("throttling doubles the stored shard count", async () => {
        await using ceiling = await startWriteCeiling({ upstream: ddb.endpoint, wcuPerSecond: 50 });
        const big = [Limit.perSecond("rps", 100_000)];
        await admin.createEntity({ entityId: "hot" });
        await admin.setLimits({ entityId: "hot", resource: "api", limits: big });
        assert.equal((await admin.getShards({ entityId: "hot", resource: "api" })).shards, 1);
        const limiters = Array.from({ length: 2 }, () =>
          new RateLimiter({
            tableName,
            endpoint: ceiling.endpoint,
            limitsCacheTtlMs: 200,
            timeoutMs: 5_000,
          }));
        const end = Date.now() + 4_000;
        let shards = 1;
        await Promise.all(
          limiters.flatMap((l) =>
            Array.from({ length: 12 }, async () => {
              while (Date.now() < end && shards < 4) {
                try {
                  await l.acquire({
                    entityId: "hot",
                    resource: "api",
                    limits: big,
                    consume: { rps: 1 },
                    useStoredLimits: true,
                  });
                } catch (err) {
                  if (!(err instanceof RateLimitExceeded)) throw err;
                }
              }
            })
          ).concat((async () => {
            while (Date.now() < end && shards < 4) {
              await new Promise((r) => setTimeout(r, 100));
              shards = (await admin.getShards({ entityId: "hot", resource: "api" })).shards;
            }
          })()),
        );
        assert.ok(ceiling.stats().throttled > 0, "the ceiling throttled the hot key");
        assert.ok(shards >= 2, `stored shards ${shards}`);
        await Promise.all(limiters.map((l) => l.close()));
      });

      await t.step("CLI: limits set --shards, limits get, entity get", async () => {
        const env = { AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint, ZAE_LIMITER_TABLE: tableName };
        await admin.createEntity({ entityId: "kc" });
        const set = await cli(
          ["limits", "set", "kc", "--resource", "api", "--limit", "rpm:100/min", "--shards", "4"],
          env,
        );
        assert.equal(set.code, 0, set.err);
        assert.equal(set.out, "Stored rpm:100/min for kc on api in 4 shards.\n");
        assert.equal((await admin.getShards({ entityId: "kc", resource: "api" })).shards, 4);
        const got = await cli(["limits", "get", "kc", "--resource", "api", "--json"], env);
        assert.equal(got.code, 0, got.err);
        assert.equal(JSON.parse(got.out).shards, 4);
        const text = await cli(["limits", "get", "kc", "--resource", "api"], env);
        assert.match(text.out, /^rpm:100\/min\nshards: 4 \(since .+\)\n$/);
        const ent = await cli(["entity", "get", "kc", "--resource", "api"], env);
        assert.match(ent.out, /\nshards: {4}4 \(api\)\n$/);
        const bad = await cli(
          ["limits", "set", "kc", "--resource", "api", "--limit", "rpm:10/min", "--shards", "16"],
          env,
        );
        assert.equal(bad.code, 2, bad.out + bad.err);
        assert.match(bad.err, /shards.*largest single request that passes is C\/N = 0\.625/);
        assert.equal((await admin.getShards({ entityId: "kc", resource: "api" })).shards, 4);
      });
      await admin.close();
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
