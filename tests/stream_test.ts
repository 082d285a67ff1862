/**
 * Tokens during a stream: `lease.consume` (a conditional write mid-lease, refused when the budget
 * runs out) and `lease.release` (a give-back written at once), on DynamoDB Local with a frozen
 * clock and on the in-memory backend; lost answers, both failure modes in an outage, cascade,
 * token batches, shards, and two processes streaming on one bucket.
 */

import assert from "node:assert/strict";
import { type DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import {
  FailureMode,
  LeaseClosedError,
  Limit,
  RateLimiter,
  RateLimiterUnavailable,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import type { Lease } from "../src/lease.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const TPM = [Limit.perMinute("tpm", 1_000)];

type Fault = "none" | "refuse" | "lose-answer" | "lose-one-answer";

/** Consumes `chunk` until refused; returns the chunks admitted. */
async function streamUntilRefused(lease: Lease, chunk: number, max = 1_000): Promise<number> {
  for (let i = 0; i < max; i++) {
    try {
      await lease.consume({ tpm: chunk });
    } catch (err) {
      if (err instanceof RateLimitExceeded) return i;
      throw err;
    }
  }
  throw new Error("never refused");
}

/** The scenarios that hold on any backend (`make` gives a limiter of one process). */
async function common(t: Deno.TestContext, make: () => RateLimiter) {
  await t.step("a stream consumes chunk by chunk until refused mid-stream", async () => {
    const limiter = make();
    const base = { entityId: "cut", resource: "gpt-4", limits: TPM };
    const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
    // 100 + 6 × 150 = 1,000: the seventh chunk finds nothing left.
    assert.equal(await streamUntilRefused(lease, 150), 6);
    assert.equal(lease.state, "open");
    assert.equal(lease.consumed.tpm, 1_000);
    assert.equal(lease.statuses[0].available, 0);
    await lease.commit();
    assert.deepEqual(await limiter.available(base), { tpm: 0 });
  });

  await t.step("release then commit: the exact balance", async () => {
    const limiter = make();
    const base = { entityId: "rel", resource: "gpt-4", limits: [Limit.perMinute("tpm", 10_000)] };
    const lease = await limiter.acquire({ ...base, consume: { tpm: 4_000 } });
    await lease.consume({ tpm: 500 });
    await lease.release({ tpm: 3_000 });
    // Written at once: another process sees it before the commit.
    assert.deepEqual(await make().available(base), { tpm: 8_500 });
    await assert.rejects(
      lease.release({ tpm: 1_501 }),
      (e) => e instanceof ValidationError && e.field === "release.tpm" && e.value === "1501",
    );
    await lease.adjust({ tpm: 200 });
    await lease.commit();
    assert.equal(lease.consumed.tpm, 1_700);
    assert.deepEqual(await limiter.available(base), { tpm: 8_300 });
  });

  await t.step("rollback after consumes gives back all it took, no more", async () => {
    const limiter = make();
    const base = { entityId: "back", resource: "gpt-4", limits: TPM };
    const other = await limiter.acquire({ ...base, consume: { tpm: 300 } });
    const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
    await lease.consume({ tpm: 200 });
    await lease.consume({ tpm: 200 });
    await lease.release({ tpm: 50 });
    await lease.adjust({ tpm: -10_000 }); // dropped by the rollback
    await lease.rollback();
    assert.equal(lease.consumed.tpm, 0);
    await other.commit();
    assert.deepEqual(await limiter.available(base), { tpm: 700 }); // the other lease's 300 stay
    await assert.rejects(lease.consume({ tpm: 1 }), LeaseClosedError);
    await assert.rejects(lease.release({ tpm: 1 }), /rolled back; it cannot be released/);
    await assert.rejects(other.consume({ tpm: 1 }), /committed; it cannot be consumed from/);
  });

  await t.step("bad amounts are ValidationErrors, and nothing is written", async () => {
    const limiter = make();
    const base = { entityId: "bad", resource: "gpt-4", limits: TPM };
    const lease = await limiter.acquire({ ...base, consume: { tpm: 10 } });
    const bad: [Record<string, number>, string][] = [
      [{ tpm: -1 }, "tpm"],
      [{ tpm: NaN }, "tpm"],
      [{ tpm: Infinity }, "tpm"],
      [{ rpm: 1 }, "rpm"],
    ];
    for (const [amounts, name] of bad) {
      await assert.rejects(
        lease.consume(amounts),
        (e) => e instanceof ValidationError && e.field === `consume.${name}`,
      );
      await assert.rejects(
        lease.release(amounts),
        (e) => e instanceof ValidationError && e.field === `release.${name}`,
      );
    }
    await lease.consume({ tpm: 0 }); // nothing to take: no write
    assert.equal(lease.consumed.tpm, 10);
    await lease.commit();
    assert.deepEqual(await limiter.available(base), { tpm: 990 });
  });

  await t.step("two processes streaming on one bucket never over-admit", async () => {
    const a = make(), b = make();
    const base = { entityId: "two", resource: "gpt-4", limits: TPM };
    const run = async (limiter: RateLimiter) => {
      const lease = await limiter.acquire({ ...base, consume: { tpm: 10 } });
      await streamUntilRefused(lease, 10);
      await lease.commit();
      return lease.consumed.tpm;
    };
    const [x, y] = await Promise.all([run(a), run(b)]);
    assert.equal(x + y, 1_000); // chunks of 10 fill the 1,000 exactly, never more
    assert.deepEqual(await make().available(base), { tpm: 0 });
  });
}

Deno.test({
  name: "streams on the in-memory backend",
  async fn(t) {
    // One table, a limiter per "process".
    const backend = new InMemoryBackend();
    await common(t, () => new RateLimiter({ tableName: "in-memory", backend, clock: () => T0 }));
  },
});

async function counters(client: DynamoDBClient, tableName: string, entityId: string, sk: string) {
  const { Item } = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: sk } },
      ConsistentRead: true,
    }),
  );
  return { rq: Number(Item?.rq?.N ?? 0), tpm: Number(Item?.u_tpm?.N ?? 0) / 1000 };
}

Deno.test({
  name: "streams on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    let fault: Fault = "none";
    let writes = 0;
    client.middlewareStack.add(
      (next) => async (args) => {
        // Faults hit bucket writes only: config reads are answered.
        const input = args.input as Record<string, unknown>;
        if (!("UpdateExpression" in input) && !("TransactItems" in input)) return next(args);
        writes++;
        if (fault === "refuse") {
          throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1"), {
            code: "ECONNREFUSED",
          });
        }
        const lose = fault === "lose-answer" || fault === "lose-one-answer";
        if (fault === "lose-one-answer") fault = "none";
        try {
          const out = await next(args);
          if (!lose) return out;
        } catch (err) {
          if (!lose) throw err;
        }
        throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
      },
      { step: "initialize", name: "faults" },
    );
    const tableName = uniqueTableName("stream");
    const clock = () => T0;
    const make = (extra = {}) =>
      new RateLimiter({ tableName, client, clock, timeoutMs: 1_000, ...extra });
    const api = (entityId: string) => counters(client, tableName, entityId, "#BUCKET#gpt-4");
    try {
      await new RateLimiter({ tableName, client }).createTable();
      await common(t, () => make());

      await t.step("one write per consume and per release, none more at commit", async () => {
        const limiter = make();
        const base = { entityId: "cost", resource: "gpt-4", limits: TPM };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        const before = writes;
        await lease.consume({ tpm: 100 });
        assert.equal(writes - before, 1);
        await lease.release({ tpm: 50 });
        assert.equal(writes - before, 2);
        await lease.commit();
        assert.equal(writes - before, 2);
        assert.deepEqual(await api("cost"), { rq: 1, tpm: 150 });
      });

      await t.step("cascade: consume and release write the parent too", async () => {
        const limiter = make();
        await limiter.createEntity({ entityId: "org" });
        await limiter.createEntity({ entityId: "kid", parentId: "org", cascade: true });
        const base = { entityId: "kid", resource: "gpt-4", limits: TPM, cascade: true };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        await lease.consume({ tpm: 400 });
        assert.deepEqual(await api("kid"), { rq: 1, tpm: 500 });
        assert.deepEqual(await api("org"), { rq: 1, tpm: 500 });
        // The parent refuses: nothing is taken from either.
        const sibling = await limiter.acquire({
          entityId: "org",
          resource: "gpt-4",
          limits: TPM,
          consume: { tpm: 400 },
        });
        await assert.rejects(lease.consume({ tpm: 200 }), RateLimitExceeded);
        assert.deepEqual(await api("kid"), { rq: 1, tpm: 500 });
        await lease.release({ tpm: 250 });
        await lease.rollback();
        await sibling.commit();
        assert.deepEqual(await api("kid"), { rq: 0, tpm: 0 });
        assert.deepEqual(await api("org"), { rq: 1, tpm: 400 });
      });

      await t.step("a lost answer on a consume is resent and counted once", async () => {
        const limiter = make({ failureMode: FailureMode.FAIL_CLOSED });
        const base = { entityId: "lost", resource: "gpt-4", limits: TPM };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        fault = "lose-one-answer";
        await lease.consume({ tpm: 300 });
        assert.equal(fault, "none"); // the fault did hit the consume
        await lease.commit();
        assert.deepEqual(await api("lost"), { rq: 1, tpm: 400 });
      });

      await t.step("FAIL_CLOSED: a consume in an outage throws and takes nothing", async () => {
        const limiter = make({ failureMode: FailureMode.FAIL_CLOSED });
        const base = { entityId: "closed", resource: "gpt-4", limits: TPM };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        fault = "refuse";
        await assert.rejects(lease.consume({ tpm: 300 }), RateLimiterUnavailable);
        // Applied by DynamoDB, answer lost: the caller is told "no", so the outbox cancels it.
        fault = "lose-answer";
        await assert.rejects(lease.consume({ tpm: 200 }), RateLimiterUnavailable);
        assert.equal(limiter.pendingWrites, 1); // the cancel of the consume that landed
        assert.deepEqual(await api("closed"), { rq: 1, tpm: 300 });
        assert.equal(lease.state, "open");
        assert.equal(lease.consumed.tpm, 100);
        fault = "none";
        await limiter.flush(5_000);
        assert.equal(limiter.pendingWrites, 0);
        assert.equal(limiter.unresolvedWrites.length, 0);
        await lease.commit();
        assert.deepEqual(await api("closed"), { rq: 1, tpm: 100 });
      });

      await t.step("FAIL_OPEN: a consume in an outage goes on, written once later", async () => {
        const limiter = make({ failureMode: FailureMode.FAIL_OPEN });
        const base = { entityId: "open", resource: "gpt-4", limits: TPM };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        fault = "refuse";
        await lease.consume({ tpm: 300 });
        fault = "lose-answer"; // landed unseen: recorded under the same id, counted once
        await lease.consume({ tpm: 200 });
        assert.equal(lease.consumed.tpm, 600);
        assert.equal(limiter.pendingWrites, 2);
        fault = "refuse";
        await lease.release({ tpm: 50 }); // queued behind them
        assert.equal(limiter.pendingWrites, 3);
        fault = "none";
        await limiter.flush(5_000);
        assert.equal(limiter.pendingWrites, 0);
        assert.deepEqual(await api("open"), { rq: 1, tpm: 550 });
        await lease.rollback(); // gives back all of it
        assert.deepEqual(await api("open"), { rq: 0, tpm: 0 });
      });

      await t.step("FAIL_OPEN with recordFailedOpen off: the lease holds none of it", async () => {
        const limiter = make({ failureMode: FailureMode.FAIL_OPEN, recordFailedOpen: false });
        const base = { entityId: "norec", resource: "gpt-4", limits: TPM };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        fault = "lose-answer"; // landed unseen: cancelled, since it is not recorded
        await lease.consume({ tpm: 300 });
        fault = "none";
        await limiter.flush(5_000);
        assert.deepEqual(await api("norec"), { rq: 1, tpm: 100 });
        await lease.rollback(); // gives back the 100, not the 300 never counted
        assert.deepEqual(await api("norec"), { rq: 0, tpm: 0 });
      });

      await t.step("a lease that failed open takes without asking, written later", async () => {
        const limiter = make({ failureMode: FailureMode.FAIL_OPEN });
        const base = { entityId: "fo", resource: "gpt-4", limits: TPM };
        fault = "refuse";
        const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        assert.equal(lease.failedOpen, true);
        await lease.consume({ tpm: 2_000 }); // more than the capacity: not refused
        await lease.release({ tpm: 1_500 });
        await assert.rejects(lease.release({ tpm: 601 }), ValidationError);
        await lease.commit();
        fault = "none";
        await limiter.flush(5_000);
        assert.equal(limiter.pendingWrites, 0);
        assert.deepEqual(await api("fo"), { rq: 1, tpm: 600 });
      });

      await t.step("a batched lease draws its consume from the batch", async () => {
        const limiter = make({ batches: {} });
        const base = { entityId: "batch", resource: "gpt-4", limits: TPM };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 10 } });
        const before = writes;
        await lease.consume({ tpm: 10 }); // the batch holds it: no write
        assert.equal(writes, before);
        assert.equal(await streamUntilRefused(lease, 10), 98);
        await lease.release({ tpm: 30 });
        await lease.commit();
        await limiter.close(); // returns the batch
        assert.deepEqual(await api("batch"), { rq: 1, tpm: 970 });
      });

      await t.step("a sharded bucket: consume takes from the lease's shard only", async () => {
        const admin = make();
        await admin.createEntity({ entityId: "hot" });
        await admin.setLimits({
          entityId: "hot",
          resource: "api",
          limits: [Limit.perMinute("tpm", 10_000)],
          shards: 2,
        });
        // A layout stored an hour ago: both shards full (5,000 each).
        const limiter = new RateLimiter({
          tableName,
          client,
          clock: () => T0 + 3_600_000,
          limitsCacheTtlMs: 0,
        });
        const lease = await limiter.acquire({
          entityId: "hot",
          resource: "api",
          limits: [],
          useStoredLimits: true,
          consume: { tpm: 100 },
        });
        // 100 + 4 × 1,000 on its shard; the fifth is refused though the other shard is full.
        assert.equal(await streamUntilRefused(lease, 1_000), 4);
        await lease.commit();
        const shards = await Promise.all(
          [0, 1].map((i) => counters(client, tableName, "hot", `#BUCKET#api#${i}/2`)),
        );
        assert.deepEqual(shards.map((s) => s.tpm).sort((x, y) => x - y), [0, 4_100]);
      });
    } finally {
      await ddb.stop();
    }
  },
});
