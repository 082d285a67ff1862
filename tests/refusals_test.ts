/**
 * Refusal counts (`RateLimiterOptions.refusalCounts`, src/refusals.ts): each refused acquire is
 * counted in memory per (entity that asked, resource, hour) and written to the hourly usage
 * snapshot (`refused`) in one `UpdateItem` per key per flush — never a call per refusal. On
 * DynamoDB Local: deny-cache and DynamoDB-confirmed refusals, exact counts, the calls made, the
 * timer, cascades, namespaces, the aggregator leaving the counts alone, an outage (DynamoDB Local
 * stopped and restarted on the same data), `close()`, and `refusalCounts: false`. The in-memory
 * backend, and the counter's own rules, beside them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Limit, RateLimiter, RateLimiterUnavailable, RateLimitExceeded } from "../mod.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import { EntityDisabledError, ValidationError } from "../src/errors.ts";
import { KeySpace } from "../src/keyspace.ts";
import type { LogFields, Logger } from "../src/logger.ts";
import { type RefusalCount, RefusalCounter, type RefusalLoss } from "../src/refusals.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { getUsageSnapshots, getUsageSummary } from "../src/usage.ts";
import { Meter } from "../scripts/meter.ts";
import { cli } from "./_cli.ts";
import { dynamoTest, localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const HOUR = 3_600_000;
/** 2026-11-30T10:00:00Z: the tests' hours start here. */
const T0 = Date.UTC(2026, 10, 30, 10);
const rpm = (n: number, soft = false) => Limit.perMinute("rpm", n, soft ? { soft } : {});

/** A logger that records each call. */
class RecordingLogger implements Logger {
  lines: { level: string; message: string; fields: LogFields }[] = [];
  warn(message: string, fields: LogFields) {
    this.lines.push({ level: "warn", message, fields });
  }
  error(message: string, fields: LogFields) {
    this.lines.push({ level: "error", message, fields });
  }
  of(event: string) {
    return this.lines.filter((l) => l.fields.event === event);
  }
}

/** `n` acquires of `rpm` tokens (more than 2: refused however full) that must be refused. */
async function refuse(limiter: RateLimiter, entityId: string, resource = "api", n = 1, rpm1 = 1) {
  for (let i = 0; i < n; i++) {
    await assert.rejects(
      limiter.acquire({ entityId, resource, limits: [rpm(2)], consume: { rpm: rpm1 } }),
      RateLimitExceeded,
    );
  }
}

/** Empties the key's rpm(2) bucket (and learns it is empty). */
async function exhaust(limiter: RateLimiter, entityId: string, resource = "api") {
  await (await limiter.acquire({ entityId, resource, limits: [rpm(2)], consume: { rpm: 2 } }))
    .commit();
}

/** Polls until `check()` holds (or fails after `ms`). */
async function until(check: () => boolean, ms = 5_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

dynamoTest("refusal counts on DynamoDB Local", async (t, { client, ddb }) => {
  const tableName = uniqueTableName("refusals");
  const meter = new Meter(client);
  let now = T0 + 60_000;
  const made: RateLimiter[] = [];
  const limiter = (options: Partial<ConstructorParameters<typeof RateLimiter>[0]> = {}) => {
    const l = new RateLimiter({ tableName, client, clock: () => now, ...options });
    made.push(l);
    return l;
  };
  const a = limiter({ createTable: true });
  const hours = (entityId: string, resource = "api", space?: KeySpace) =>
    getUsageSnapshots(client, tableName, { entityId, resource, window: "hourly" }, space);
  const snapshotWrites = () =>
    meter.calls.filter((c) => c.command === "UpdateItemCommand" && !c.failed);
  try {
    await a.createTable();

    await t.step("deny-cache and DynamoDB-confirmed refusals are counted, exactly", async () => {
      await exhaust(a, "key-1");
      meter.reset();
      await refuse(a, "key-1", "api", 5);
      assert.equal(meter.calls.length, 0, "the deny cache refuses with no call, counting too");
      assert.equal(a.pendingRefusals, 5);
      // Another process that does not know the bucket: each refusal is a failed conditional write.
      const b = limiter({ denyCache: false });
      await refuse(b, "key-1", "api", 3);
      const confirmed = meter.calls.filter((c) => c.command === "UpdateItemCommand");
      assert.equal(confirmed.length, 3);
      assert.ok(confirmed.every((c) => c.failed && c.error === "ConditionalCheckFailedException"));
      assert.equal(b.pendingRefusals, 3);
      assert.deepEqual(await hours("key-1"), [], "nothing written before a flush");
      meter.reset();
      await a.flush();
      await b.flush();
      assert.equal(a.pendingRefusals + b.pendingRefusals, 0);
      assert.deepEqual(meter.calls.map((c) => [c.command, c.tableWcu, c.indexWcu]), [
        ["UpdateItemCommand", 1, 0],
        ["UpdateItemCommand", 1, 0],
      ]);
      const [hour] = await hours("key-1");
      assert.equal(hour.windowStart, "2026-11-30T10:00:00Z");
      assert.equal(hour.refused, 8);
      assert.equal(hour.bypassed, undefined);
      meter.reset();
      await a.flush();
      assert.equal(meter.calls.length, 0, "nothing held: no call");
    });

    await t.step("N refusals: one write per (entity, resource, hour) per flush", async () => {
      const n = limiter({ refusalCounts: { flushMs: 60_000 } });
      now = T0 + HOUR - 20_000; // 10:59:40
      await exhaust(n, "key-n1");
      await exhaust(n, "key-n2");
      meter.reset();
      await refuse(n, "key-n1", "api", 100);
      await refuse(n, "key-n2", "api", 40);
      now += 25_000; // 11:00:05, the next hour (a key of its own); the bucket still lacks a token
      await refuse(n, "key-n1", "api", 7);
      assert.equal(meter.calls.length, 0, "no call per refusal");
      assert.equal(n.pendingRefusals, 147);
      await n.flush();
      assert.equal(snapshotWrites().length, 3);
      assert.equal(meter.calls.length, 3);
      const key1 = await hours("key-n1");
      assert.deepEqual(key1.map((h) => [h.windowStart, h.refused]), [
        ["2026-11-30T10:00:00Z", 100],
        ["2026-11-30T11:00:00Z", 7],
      ]);
      assert.equal((await hours("key-n2"))[0].refused, 40);
      const summary = await getUsageSummary(client, tableName, {
        entityId: "key-n1",
        window: "hourly",
      });
      assert.equal(summary.refused, 107);
    });

    await t.step(
      "the flush is due flushMs of the limiter's clock after the first count",
      async () => {
        const c = limiter({ refusalCounts: { flushMs: 10_000 } });
        await exhaust(c, "key-3");
        meter.reset();
        await refuse(c, "key-3", "api", 4);
        now += 9_999;
        await refuse(c, "key-3");
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(meter.calls.length, 0, "not due yet");
        now += 1;
        await refuse(c, "key-3"); // due: this count starts the flush, in the background
        await until(() => c.pendingRefusals === 0);
        assert.equal(snapshotWrites().length, 1);
        assert.equal((await hours("key-3"))[0].refused, 6);
      },
    );

    await t.step("with the default clock, a timer flushes on its own", async () => {
      const d = new RateLimiter({ tableName, client, refusalCounts: { flushMs: 100 } });
      made.push(d);
      const resource = `timer-${Date.now()}`;
      await exhaust(d, "key-4", resource);
      await refuse(d, "key-4", resource, 3);
      await until(() => d.pendingRefusals === 0);
      assert.equal((await hours("key-4", resource))[0].refused, 3);
    });

    await t.step("a cascade's refusal is counted on the entity that asked", async () => {
      await a.createEntity({ entityId: "proj-1" });
      await a.createEntity({ entityId: "key-c1", parentId: "proj-1", cascade: true });
      await a.createEntity({ entityId: "key-c2", parentId: "proj-1", cascade: true });
      await exhaust(a, "key-c1", "chat"); // the parent's bucket is empty too
      await refuse(a, "key-c2", "chat", 2); // refused by the parent's bucket
      await a.flush();
      assert.equal((await hours("key-c2", "chat"))[0].refused, 2);
      assert.equal((await hours("key-c1", "chat"))[0]?.refused, undefined);
      assert.deepEqual(await hours("proj-1", "chat"), []);
    });

    await t.step("soft limits, shadow mode and disabled entities are not refusals", async () => {
      const base = { entityId: "key-5", resource: "api", consume: { rpm: 5 } };
      await (await a.acquire({ ...base, limits: [rpm(2, true)] })).commit();
      await (await a.acquire({ ...base, limits: [rpm(2)], shadow: true })).commit();
      await a.createEntity({ entityId: "key-6" });
      await a.disableEntity("key-6");
      await assert.rejects(
        a.acquire({ entityId: "key-6", resource: "api", limits: [rpm(2)], consume: { rpm: 1 } }),
        EntityDisabledError,
      );
      assert.equal(a.pendingRefusals, 0);
    });

    await t.step("in a namespace, the counts go to the namespace's snapshots", async () => {
      const tenant = limiter({ namespace: "tenant-a" });
      await exhaust(tenant, "key-1", "ns");
      await refuse(tenant, "key-1", "ns", 2);
      await tenant.flush();
      assert.equal((await hours("key-1", "ns", KeySpace.of("tenant-a")))[0].refused, 2);
      assert.deepEqual(await hours("key-1", "ns"), []);
    });

    await t.step("an aggregator pass after a flush keeps `refused`", async () => {
      const before = await hours("key-n1");
      await aggregateLocal({ tableName, client });
      const after = await hours("key-n1");
      assert.deepEqual(after.map((h) => [h.windowStart, h.refused]), [
        ["2026-11-30T10:00:00Z", 100],
        ["2026-11-30T11:00:00Z", 7],
      ]);
      // The aggregator did write this item: the hour's admitted request is there now.
      assert.equal(before[0].requests, 0);
      assert.equal(after[0].requests, 1);
      assert.equal(after[0].consumed.rpm, 2);
      // Refusals after the aggregator's pass add to its item, and the next pass keeps them.
      now = T0 + HOUR - 1_000;
      await refuse(a, "key-n1", "api", 2, 3); // 3 tokens of rpm(2): refused however full
      await a.flush();
      await aggregateLocal({ tableName, client });
      const again = await hours("key-n1");
      assert.deepEqual([again[0].refused, again[0].requests], [102, 1]);
    });

    await t.step("close() writes what is held", async () => {
      const e = limiter();
      await exhaust(e, "key-7");
      await refuse(e, "key-7", "api", 3);
      await e.close();
      assert.equal((await hours("key-7"))[0].refused, 3);
    });

    await t.step("refusalCounts: false writes nothing", async () => {
      const off = limiter({ refusalCounts: false });
      await exhaust(off, "key-8");
      meter.reset();
      await refuse(off, "key-8", "api", 5);
      assert.equal(off.pendingRefusals, 0);
      await off.flush();
      await off.close();
      assert.equal(meter.calls.length, 0);
      assert.deepEqual(await hours("key-8"), [], "only the aggregator would write this item");
    });

    await t.step("the CLI's usage list and summary show refused", async () => {
      const env = { AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint, ZAE_LIMITER_TABLE: tableName };
      const list = await cli(["usage", "list", "--entity", "key-n2"], env);
      assert.equal(list.code, 0, list.err);
      assert.equal(list.out, "2026-11-30T10:00:00Z  api  requests=1 refused=40  rpm=2\n");
      const summary = await cli(["usage", "summary", "--entity", "key-n2"], env);
      assert.equal(summary.code, 0, summary.err);
      assert.match(summary.out, /^Total: {3}requests=1 refused=40 bypassed=0 rpm=2$/m);
      const json = await cli(["usage", "list", "--entity", "key-n2", "--json"], env);
      assert.equal(JSON.parse(json.out)[0].refused, 40);
    });

    await t.step("bad refusalCounts options are refused, naming the field", () => {
      for (
        const [value, field] of [
          [{ flushMs: 0 }, "refusalCounts.flushMs"],
          [{ flushMs: 1.5 }, "refusalCounts.flushMs"],
          [{ maxKeys: -1 }, "refusalCounts.maxKeys"],
          ["often", "refusalCounts"],
        ] as const
      ) {
        assert.throws(
          () => new RateLimiter({ tableName, client, refusalCounts: value as never }),
          (err) => err instanceof ValidationError && err.field === field,
        );
      }
    });
  } finally {
    for (const l of made) await l.close();
  }
});

Deno.test({
  name: "refusal counts survive an outage (DynamoDB Local stopped, restarted on the same data)",
  ignore: Boolean(Deno.env.get("ZAE_TEST_DYNAMODB_ENDPOINT")), // needs a process of its own
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dataDir = await Deno.makeTempDir({ prefix: "zae-refusals-" });
    let ddb = await startTestDynamo({ dataDir });
    const port = ddb.port;
    const client = localClient(ddb.endpoint);
    const meter = new Meter(client);
    const tableName = uniqueTableName("refusals-outage");
    const logger = new RecordingLogger();
    let now = T0 + HOUR - 10_000; // 10:59:50
    const options = {
      tableName,
      client,
      clock: () => now,
      logger,
      timeoutMs: 500,
      refusalCounts: { flushMs: 60_000 },
    };
    const limiter = new RateLimiter({ ...options, createTable: true });
    const closing = new RateLimiter({ ...options, closeTimeoutMs: 1_000 });
    const hours = (entityId: string) =>
      getUsageSnapshots(client, tableName, { entityId, resource: "api", window: "hourly" });
    try {
      await limiter.createTable();
      await exhaust(limiter, "key-1");
      await exhaust(closing, "key-2");
      await refuse(limiter, "key-1", "api", 4);
      await refuse(closing, "key-2", "api", 2);

      await t.step("DynamoDB down: the flush keeps the counts, and flush() says so", async () => {
        await ddb.stop();
        meter.reset();
        await assert.rejects(
          limiter.flush(),
          (err) =>
            err instanceof RateLimiterUnavailable &&
            /the counts of 4 refusals\) still waiting/.test(String(err.cause)),
        );
        assert.equal(limiter.pendingRefusals, 4);
        assert.ok(meter.calls.length >= 1 && meter.calls.every((c) => c.failed));
        const kept = logger.of("refusals.kept");
        assert.equal(kept.length, 1);
        assert.equal(kept[0].fields.keys, 1);
        assert.equal(kept[0].fields.error, "RateLimiterUnavailable");
        // The deny cache goes on refusing (and counting) with no DynamoDB.
        await refuse(limiter, "key-1", "api", 3);
        now += 20_000; // and a refusal of the next hour (11:00:10): a second key
        await refuse(limiter, "key-1", "api", 1);
        assert.equal(limiter.pendingRefusals, 8);
      });

      await t.step("close() during the outage does not throw, and says what it lost", async () => {
        const started = Date.now();
        await closing.close();
        assert.ok(Date.now() - started < 1_000 + 1_500, "within closeTimeoutMs (and slack)");
        const dropped = logger.of("refusals.dropped");
        assert.equal(dropped.length, 1);
        assert.deepEqual(
          [dropped[0].level, dropped[0].fields.reason, dropped[0].fields.refusals],
          ["error", "closed", 2],
        );
        assert.equal(JSON.stringify(dropped[0].fields).includes("key-2"), false, "no entity id");
      });

      await t.step("DynamoDB back: the counts land once", async () => {
        ddb = await startTestDynamo({ dataDir, port });
        meter.reset();
        await limiter.flush();
        assert.equal(limiter.pendingRefusals, 0);
        // (A socket to the stopped process may fail once and be retried: only answers count.)
        assert.deepEqual(meter.calls.filter((c) => !c.failed).map((c) => c.command), [
          "UpdateItemCommand",
          "UpdateItemCommand",
        ]);
        assert.deepEqual((await hours("key-1")).map((h) => [h.windowStart, h.refused]), [
          ["2026-11-30T10:00:00Z", 7],
          ["2026-11-30T11:00:00Z", 1],
        ]);
        await limiter.flush();
        assert.equal((await hours("key-1"))[0].refused, 7, "not twice");
        assert.deepEqual(await hours("key-2"), [], "what close() could not write is lost");
      });
    } finally {
      await limiter.close();
      await closing.close();
      client.destroy();
      await ddb.stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("the in-memory backend counts refusals the same way", async (t) => {
  let now = T0;
  const backend = new InMemoryBackend();
  const logger = new RecordingLogger();
  const limiter = new RateLimiter({ tableName: "in-memory", backend, clock: () => now, logger });
  await t.step("deny-cache refusals, per hour, written by a flush", async () => {
    await exhaust(limiter, "key-1");
    const writes = backend.writes;
    await refuse(limiter, "key-1", "api", 5);
    assert.equal(backend.writes, writes, "no bucket write for a known refusal");
    assert.equal(backend.refused("key-1", "api"), 0);
    now += HOUR; // past flushMs: the next refusal starts a flush (of itself too)
    await exhaust(limiter, "key-1");
    await refuse(limiter, "key-1", "api", 1);
    await until(() => limiter.pendingRefusals === 0);
    assert.equal(backend.refused("key-1", "api", T0), 5);
    assert.equal(backend.refused("key-1", "api", T0 + HOUR), 1);
    await refuse(limiter, "key-1", "api", 1);
    assert.equal(limiter.pendingRefusals, 1, "not due: held");
    await limiter.flush();
    assert.equal(backend.refused("key-1", "api", T0 + HOUR), 2);
    assert.equal(backend.refused("key-1", "api"), 7);
  });
  await t.step("a full map drops new keys, counts them and logs once", async () => {
    const small = new RateLimiter({
      tableName: "in-memory",
      backend,
      clock: () => now,
      logger,
      refusalCounts: { maxKeys: 2 },
    });
    for (const id of ["a", "b", "c", "d"]) await exhaust(small, id);
    for (const id of ["a", "b", "c", "d", "a"]) await refuse(small, id);
    assert.equal(small.pendingRefusals, 3); // a twice, b; c and d dropped
    const full = logger.of("refusals.dropped");
    assert.equal(full.length, 1, "one line a minute");
    assert.deepEqual([full[0].fields.reason, full[0].fields.refusals], ["full", 1]);
    await small.close();
    assert.deepEqual(["a", "b", "c"].map((id) => backend.refused(id, "api")), [2, 1, 0]);
  });
  await t.step("refusalCounts: false counts nothing", async () => {
    const off = new RateLimiter({
      tableName: "in-memory",
      backend,
      clock: () => now,
      refusalCounts: false,
    });
    await exhaust(off, "key-off");
    await refuse(off, "key-off", "api", 3);
    await off.close();
    assert.equal(backend.refused("key-off", "api"), 0);
  });
  await limiter.close();
});

Deno.test("a limiter's flush() during a healthy refusal flush does not report an outage", async () => {
  let now = T0;
  const backend = new InMemoryBackend();
  let release = () => {};
  let gate = Promise.resolve();
  const count = backend.entities.countRefused.bind(backend.entities);
  backend.entities.countRefused = async (...args) => {
    await gate;
    return await count(...args);
  };
  const limiter = new RateLimiter({ tableName: "in-memory", backend, clock: () => now });
  await exhaust(limiter, "key-1");
  await refuse(limiter, "key-1", "api", 2);
  gate = new Promise<void>((r) => (release = r));
  const flushed = limiter.flush();
  await refuse(limiter, "key-1", "api", 1); // while the first flush's write waits
  release();
  await flushed; // no RateLimiterUnavailable: nothing was kept by an outage
  assert.equal(backend.refused("key-1", "api"), 2);
  await limiter.flush();
  assert.equal(backend.refused("key-1", "api"), 3);
  now += 1;
  await limiter.close();
});

Deno.test("a custom backend without countRefused: counting off, said once", async () => {
  const backend = new InMemoryBackend();
  const entities = backend.entities as unknown as Record<string, unknown>;
  delete entities.countRefused;
  Object.defineProperty(entities, "countRefused", { value: undefined });
  const logger = new RecordingLogger();
  const limiter = new RateLimiter({ tableName: "in-memory", backend, clock: () => T0, logger });
  await exhaust(limiter, "key-1");
  await refuse(limiter, "key-1", "api", 3);
  assert.equal(limiter.pendingRefusals, 0);
  await limiter.flush();
  assert.equal(logger.of("refusals.unsupported").length, 1);
  assert.equal(logger.lines.filter((l) => l.level === "error").length, 0);
  await limiter.close();
});

Deno.test("RefusalCounter: flushes, outages, put-backs and bounds", async (t) => {
  const make = (
    write: (c: RefusalCount) => Promise<void>,
    extra: { maxKeys?: number; clock?: () => number; losses?: RefusalLoss[] } = {},
  ) =>
    new RefusalCounter({
      flushMs: 10_000,
      maxKeys: extra.maxKeys ?? 100,
      timeoutMs: 1_000,
      clock: extra.clock ?? (() => 0),
      write,
      isOutage: (err) => err instanceof RateLimiterUnavailable,
      onLoss: (loss) => void extra.losses?.push(loss),
    });
  const down = () => Promise.reject(new RateLimiterUnavailable("refusal_counts", new Error("x")));

  await t.step(
    "flush() tells the refusals an outage kept from its own batch, not those counted meanwhile",
    async () => {
      let release = () => {};
      const gate = new Promise<void>((r) => (release = r));
      const c = make(() => gate);
      c.count("k", "r", T0);
      const flushed = c.flush();
      c.count("k", "r", T0); // counted while the write is in flight (DynamoDB healthy)
      release();
      assert.equal(await flushed, 0);
      assert.equal(c.pending, 1, "the newer count waits for the next flush");
      const d = make(down);
      d.count("k", "r", T0);
      d.count("k", "r", T0);
      assert.equal(await d.flush(), 2);
      c.stop();
      d.stop();
    },
  );

  await t.step("the hour of a refusal is its key's", async () => {
    const written: RefusalCount[] = [];
    const c = make((x) => Promise.resolve(void written.push(x)));
    c.count("k", "r", T0 + HOUR - 1);
    c.count("k", "r", T0 + HOUR);
    c.count("k", "r", T0 + HOUR + 5);
    await c.flush();
    assert.deepEqual(written.map((w) => [w.hourMs, w.count]), [[T0, 1], [T0 + HOUR, 2]]);
    c.stop();
  });

  await t.step(
    "an outage keeps the counts, merged with newer ones, for the next flush",
    async () => {
      let up = false;
      const written: RefusalCount[] = [];
      const c = make((x) => up ? Promise.resolve(void written.push({ ...x })) : down());
      for (let i = 0; i < 3; i++) c.count("k", "r", T0);
      await c.flush();
      assert.equal(c.pending, 3);
      c.count("k", "r", T0);
      up = true;
      await c.flush();
      assert.deepEqual(written.map((w) => w.count), [4]);
      assert.equal(c.pending, 0);
      c.stop();
    },
  );

  await t.step("after the first outage error, the other keys wait with no call", async () => {
    let calls = 0;
    const c = make(() => (calls++, down()));
    for (let i = 0; i < 50; i++) c.count(`k${i}`, "r", T0);
    await c.flush();
    assert.ok(calls <= 8, `at most one call per parallel writer (${calls})`);
    assert.equal(c.pending, 50);
    c.stop();
  });

  await t.step("an error that is not an outage drops the counts, told once per flush", async () => {
    const losses: RefusalLoss[] = [];
    const c = make(() => Promise.reject(new Error("AccessDenied")), { losses });
    c.count("a", "r", T0);
    c.count("b", "r", T0);
    c.count("b", "r", T0);
    await c.flush();
    assert.equal(c.pending, 0);
    assert.deepEqual(losses.map((l) => [l.reason, l.refusals, l.keys]), [["error", 3, 2]]);
    c.stop();
  });

  await t.step("put back into a full map: the newest keys win, the rest is dropped", async () => {
    const losses: RefusalLoss[] = [];
    let up = false;
    const written: RefusalCount[] = [];
    const c = make((x) => up ? Promise.resolve(void written.push({ ...x })) : down(), {
      maxKeys: 2,
      losses,
    });
    c.count("a", "r", T0);
    c.count("b", "r", T0);
    const failing = c.flush(); // the map is emptied while the writes fail
    c.count("c", "r", T0);
    c.count("d", "r", T0);
    await failing;
    assert.equal(c.pending, 2);
    assert.deepEqual(losses.map((l) => [l.reason, l.refusals]), [["full", 1], ["full", 1]]);
    up = true;
    await c.flush();
    assert.deepEqual(written.map((w) => w.entityId).sort(), ["c", "d"]);
    c.stop();
  });

  await t.step("due by the injected clock: a count starts the flush", async () => {
    let now = T0;
    const written: RefusalCount[] = [];
    const c = make((x) => Promise.resolve(void written.push(x)), { clock: () => now });
    c.count("k", "r", now);
    now += 9_999;
    c.count("k", "r", now);
    await Promise.resolve();
    assert.equal(written.length, 0);
    now += 1;
    c.count("k", "r", now);
    await until(() => c.pending === 0);
    assert.deepEqual(written.map((w) => w.count), [3]);
    c.stop();
  });

  await t.step("after an outage, the timer tries again on its own", async () => {
    let calls = 0;
    const written: RefusalCount[] = [];
    const c = new RefusalCounter({
      flushMs: 10,
      maxKeys: 10,
      timeoutMs: 1_000,
      clock: Date.now,
      write: (x) => ++calls <= 2 ? down() : Promise.resolve(void written.push(x)),
      isOutage: (err) => err instanceof RateLimiterUnavailable,
    });
    c.count("k", "r", Date.now());
    await until(() => c.pending === 0);
    assert.equal(calls, 3, "two flushes met the outage, the third landed");
    assert.deepEqual(written.map((w) => w.count), [1]);
    c.stop();
  });

  await t.step("close() is bounded and never throws", async () => {
    const losses: RefusalLoss[] = [];
    const c = make(() => new Promise(() => {}), { losses }); // a write that never answers
    c.count("k", "r", T0);
    const started = Date.now();
    await c.close(Date.now() + 100);
    assert.ok(Date.now() - started < 1_000);
    assert.deepEqual(losses.map((l) => [l.reason, l.refusals]), [["closed", 1]]);
  });
});
