// Quotas: a window's allowance, back in one lump at the reset (calendar or after first use). The
// same cases run on DynamoDB Local and on the in-memory backend, with an injected clock.
import assert from "node:assert/strict";
import {
  Limit,
  RateLimiter,
  type RateLimiterOptions,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { formatLimit, parseLimitSpec } from "../cli/limits.ts";
import { Meter } from "../scripts/meter.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

type Make = (clock: () => number, options?: Partial<RateLimiterOptions>) => Promise<RateLimiter>;

const HOUR = 3_600_000;

async function refusal(p: Promise<unknown>): Promise<RateLimitExceeded> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RateLimitExceeded) return e;
    throw e;
  }
  throw new Error("not refused");
}

async function cases(t: Deno.TestContext, make: Make) {
  const clock = { now: 0 };
  const limiter = await make(() => clock.now);
  const take = (entityId: string, limits: Limit[], consume: Record<string, number>) =>
    limiter.acquire({ entityId, resource: "llm", limits, consume });
  const left = async (entityId: string, limits: Limit[]) =>
    await limiter.available({ entityId, resource: "llm", limits });

  for (const zone of ["Europe/Berlin", "America/New_York"]) {
    await t.step(`a monthly quota across a month boundary in ${zone}`, async () => {
      const q = Limit.quota("tok", 1000, { reset: `month@${zone}` });
      const offset = zone === "Europe/Berlin" ? -HOUR : 5 * HOUR; // 1 March 00:00 local, in UTC
      const boundary = Date.UTC(2026, 2, 1) + offset;
      clock.now = boundary - 10 * 60_000;
      const id = `m-${zone.replace("/", "-")}`;
      await take(id, [q], { tok: 600 });
      await take(id, [q], { tok: 400 });
      assert.deepEqual(await left(id, [q]), { tok: 0 });
      clock.now = boundary - 1500;
      const e = await refusal(take(id, [q], { tok: 1 }));
      assert.equal(e.retryAfterSeconds, 1.5, "to the reset exactly");
      assert.equal(e.statuses[0].available, 0);
      clock.now = boundary;
      const a = await take(id, [q], { tok: 700 });
      assert.equal(a.statuses[0].available, 300, "the whole capacity back at once");
      await assert.rejects(take(id, [q], { tok: 301 }), RateLimitExceeded);
      assert.deepEqual(await left(id, [q]), { tok: 300 });
    });
  }

  await t.step("a daily reset across a DST change", async () => {
    // Berlin moves from CET to CEST on 29 March 2026: that day is 23 hours long.
    const q = Limit.quota("req", 2, { reset: "day@Europe/Berlin" });
    const start29 = Date.UTC(2026, 2, 28, 23); // 29 March 00:00 CET
    const start30 = Date.UTC(2026, 2, 29, 22); // 30 March 00:00 CEST
    clock.now = start29 + HOUR;
    await take("dst", [q], { req: 2 });
    clock.now = start30 - 1000;
    assert.equal((await refusal(take("dst", [q], { req: 1 }))).retryAfterSeconds, 1);
    clock.now = start30;
    await take("dst", [q], { req: 2 });
    assert.deepEqual(await left("dst", [q]), { req: 0 });
  });

  await t.step("resetAfter: the window starts at first use and restarts after idling", async () => {
    const q = Limit.quota("calls", 3, { resetAfter: "1h" });
    clock.now = 1_000_000;
    await take("after", [q], { calls: 3 });
    clock.now += 30 * 60_000;
    const e = await refusal(take("after", [q], { calls: 1 }));
    assert.equal(e.retryAfterSeconds, 1800);
    clock.now += 5 * HOUR; // idle long past the end
    await take("after", [q], { calls: 2 });
    clock.now += HOUR - 1; // the new window started at that use
    await take("after", [q], { calls: 1 });
    assert.equal((await refusal(take("after", [q], { calls: 1 }))).retryAfterSeconds, 0.001);
  });

  await t.step("a soft quota goes into debt and never refuses", async () => {
    const q = Limit.quota("tok", 100, { reset: "day@UTC", soft: true });
    clock.now = Date.UTC(2026, 5, 1, 12);
    await take("soft", [q], { tok: 80 });
    const b = await take("soft", [q], { tok: 50 });
    assert.equal(b.statuses[0].available, -30);
    assert.equal(b.statuses[0].exceeded, false);
    await take("soft", [q], { tok: 500 });
    assert.deepEqual(await left("soft", [q]), { tok: -530 });
    clock.now = Date.UTC(2026, 5, 2);
    assert.deepEqual(await left("soft", [q]), { tok: 100 });
  });

  await t.step("a quota and a per-minute limit on one acquire: all or nothing", async () => {
    const q = Limit.quota("tok", 1000, { reset: "month@UTC" });
    const rpm = Limit.perMinute("rpm", 2);
    clock.now = Date.UTC(2026, 6, 10);
    await take("both", [q, rpm], { tok: 100, rpm: 1 });
    await take("both", [q, rpm], { tok: 100, rpm: 1 });
    const e = await refusal(take("both", [q, rpm], { tok: 100, rpm: 1 }));
    assert.deepEqual(e.statuses.filter((s) => s.exceeded).map((s) => s.limitName), ["rpm"]);
    assert.deepEqual(await left("both", [q, rpm]), { tok: 800, rpm: 0 });
    clock.now += 60_000;
    const f = await refusal(take("both", [q, rpm], { tok: 900, rpm: 1 }));
    assert.deepEqual(f.statuses.filter((s) => s.exceeded).map((s) => s.limitName), ["tok"]);
    assert.deepEqual(await left("both", [q, rpm]), { tok: 800, rpm: 2 }, "nothing taken");
  });

  await t.step(
    "rollback within the window gives back; across the reset it is dropped",
    async () => {
      const q = Limit.quota("tok", 100, { reset: "day@UTC" });
      clock.now = Date.UTC(2026, 7, 1, 23, 59);
      const a = await take("rb", [q], { tok: 60 });
      await a.rollback();
      assert.deepEqual(await left("rb", [q]), { tok: 100 });
      const b = await take("rb", [q], { tok: 60 });
      await take("rb", [q], { tok: 40 });
      clock.now = Date.UTC(2026, 7, 2, 0, 1);
      await take("rb", [q], { tok: 30 });
      await b.rollback(); // taken from yesterday's window: today's is not topped up
      assert.deepEqual(await left("rb", [q]), { tok: 70 });
      const c = await take("rb", [q], { tok: 10 });
      await c.adjust({ tok: -50 }); // never more than it took back
      await c.commit();
      assert.deepEqual(await left("rb", [q]), { tok: 70 });
    },
  );

  await t.step("a request larger than the quota is impossible", async () => {
    const q = Limit.quota("tok", 10, { reset: "week:mon@UTC" });
    clock.now = Date.UTC(2026, 8, 2);
    const e = await refusal(take("big", [q], { tok: 11 }));
    assert.equal(e.retryAfterSeconds, Infinity);
    assert.equal(
      await limiter.timeUntilAvailable({
        entityId: "big",
        resource: "llm",
        limits: [q],
        needed: { tok: 11 },
      }),
      Infinity,
    );
  });

  await t.step("two limiters never over-admit a quota", async () => {
    const q = Limit.quota("req", 25, { reset: "month@UTC" });
    clock.now = Date.UTC(2026, 9, 5);
    const other = await make(() => clock.now);
    const one = (l: RateLimiter) =>
      l.acquire({ entityId: "race", resource: "llm", limits: [q], consume: { req: 1 } })
        .then(() => 1, (e) => {
          if (e instanceof RateLimitExceeded) return 0;
          throw e;
        });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => one(i % 2 ? limiter : other)),
    );
    assert.equal(results.reduce((a, b) => a + b, 0), 25);
    assert.deepEqual(await left("race", [q]), { req: 0 });
    await other.close();
  });

  await t.step("a reset of the bucket makes the quota full; a top-up is refused", async () => {
    const q = Limit.quota("tok", 100, { reset: "month@UTC" });
    clock.now = Date.UTC(2026, 10, 5);
    await limiter.setLimits({ entityId: "admin", limits: [q] });
    await limiter.acquire({ entityId: "admin", resource: "llm", consume: { tok: 90 } });
    await assert.rejects(
      limiter.topUp({
        entityId: "admin",
        resource: "llm",
        limit: "tok",
        amount: 10,
        idempotencyKey: "t1",
      }),
      (e) => e instanceof ValidationError && e.field === "limit",
    );
    await limiter.resetBucket({ entityId: "admin", resource: "llm" });
    const a = await limiter.acquire({ entityId: "admin", resource: "llm", consume: { tok: 90 } });
    assert.equal(a.statuses[0].available, 10);
    await assert.rejects(
      limiter.setLimits({ entityId: "admin", limits: [q], shards: 2 }),
      (e) => e instanceof ValidationError && e.field === "shards",
    );
    await assert.rejects(
      limiter.acquire({ entityId: "admin", resource: "llm", consume: { tok: 1 }, batch: true }),
      (e) => e instanceof ValidationError && e.field === "batch",
    );
  });
  await limiter.close();
}

Deno.test("quotas: Limit, its JSON and bad input", () => {
  const q = Limit.quota("tok", 1_000_000, { reset: { every: "month", timeZone: "Europe/Berlin" } });
  assert.deepEqual(q.toJSON(), { name: "tok", capacity: 1_000_000, reset: "month@Europe/Berlin" });
  assert.ok(Limit.custom(JSON.parse(JSON.stringify(q))).equals(q));
  const a = Limit.quota("req", 500, { resetAfter: 30 * 86_400, soft: true });
  assert.deepEqual(a.toJSON(), { name: "req", capacity: 500, resetAfter: "30d", soft: true });
  assert.ok(Limit.custom(a.toJSON()).equals(a));
  assert.ok(!q.equals(Limit.perDay("tok", 1_000_000)));
  const bad: [() => unknown, string][] = [
    [() => Limit.quota("tok", 10, { reset: "day@UTC", resetAfter: "1d" }), "limit tok.resetAfter"],
    [() => Limit.quota("tok", 10, {}), "limit tok.reset"],
    [() => Limit.quota("tok", 0, { reset: "day@UTC" }), "limit tok: amount"],
    [() => Limit.quota("1x", 10, { reset: "day@UTC" }), "limit.name"],
    [() => Limit.quota("tok", 10, { reset: "day@Mars/Base" }), "limit tok.reset.timeZone"],
    [() => Limit.quota("tok", 10, { resetAfter: "400d" }), "limit tok.resetAfter"],
    [() => Limit.quota("tok", 10, { reset: "after:1d" }), "limit tok.reset"],
    // deno-lint-ignore no-explicit-any
    [() => Limit.quota("tok", 10, { reset: "day@UTC", every: "day" } as any), "limit tok: every"],
  ];
  for (const [f, field] of bad) {
    assert.throws(f, (e) => e instanceof ValidationError && e.field === field, field);
  }
});

Deno.test("quotas: the CLI spec round trip", () => {
  for (
    const text of [
      "quota:1000000/month@Europe/Berlin",
      "tok:1000000/month:15 06:00@UTC",
      "req:500/after:30d",
      "req:500/after:30d:soft",
      "day:20/week:fri@Asia/Tokyo",
    ]
  ) {
    assert.equal(formatLimit(parseLimitSpec(text)), text);
  }
  const q = parseLimitSpec("quota:1000000/month@Europe/Berlin");
  assert.equal(q.name, "quota");
  assert.equal(q.capacity, 1_000_000);
  assert.equal(q.resetText, "month@Europe/Berlin");
  for (const bad of ["q:10/month@Nowhere/City", "q:10/after:0d", "q:10/month:32@UTC"]) {
    assert.throws(() => parseLimitSpec(bad));
  }
});

Deno.test("quotas on the in-memory backend", async (t) => {
  const backend = new InMemoryBackend();
  await cases(
    t,
    (clock, options) =>
      Promise.resolve(new RateLimiter({ tableName: "in-memory", backend, clock, ...options })),
  );
});

dynamoTest("quotas on DynamoDB Local", async (t, { client }) => {
  const tableName = uniqueTableName("quota");
  let fault = false;
  client.middlewareStack.add(
    (next) => (args) => {
      const input = args.input as Record<string, unknown>;
      if (fault && "UpdateExpression" in input) {
        throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
      }
      return next(args);
    },
    { step: "initialize", name: "quota-faults" },
  );
  await cases(t, async (clock, options) => {
    const l = new RateLimiter({ tableName, client, clock, ...options });
    await l.createTable();
    return l;
  });

  await t.step("a warm quota acquire is one UpdateItem", async () => {
    let now = Date.UTC(2026, 0, 15);
    const limiter = new RateLimiter({ tableName, client, clock: () => now });
    const meter = new Meter(client);
    const q = Limit.quota("tok", 1000, { reset: "month@Europe/Berlin" });
    const go = () =>
      limiter.acquire({ entityId: "warm", resource: "llm", limits: [q], consume: { tok: 10 } });
    await go();
    now += 1000;
    meter.reset();
    await go();
    await go();
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [
      ["UpdateItemCommand", false],
      ["UpdateItemCommand", false],
    ]);
    await limiter.close();
  });

  await t.step("a reset crossing an outage is applied once", async () => {
    let now = Date.UTC(2026, 1, 27, 23, 59);
    const limiter = new RateLimiter({
      tableName,
      client,
      clock: () => now,
      failureMode: "fail_open",
      timeoutMs: 500,
    });
    const q = Limit.quota("tok", 100, { reset: "day@UTC" });
    const go = (n: number) =>
      limiter.acquire({ entityId: "outage", resource: "llm", limits: [q], consume: { tok: n } });
    await go(60);
    fault = true;
    const open = await go(30); // failed open: recorded for today's window
    assert.equal(open.failedOpen, true);
    now = Date.UTC(2026, 1, 28, 0, 1); // the reset passes during the outage
    fault = false;
    await limiter.flush(); // yesterday's take is dropped: its window is over
    await go(50);
    await go(50);
    await assert.rejects(go(1), RateLimitExceeded); // one reset: 100 in the new window, no more
    assert.deepEqual(
      await limiter.available({ entityId: "outage", resource: "llm", limits: [q] }),
      { tok: 0 },
    );
    await limiter.close();
  });
});
