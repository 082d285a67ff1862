// Soft limits: debited on every admitted request, into debt, never the cause of a refusal. The
// same cases run on DynamoDB Local and on the in-memory backend (they must agree), with an
// injected clock; the cost of a warm acquire is metered on DynamoDB Local.
import assert from "node:assert/strict";
import {
  Limit,
  type LimitStatus,
  RateLimiter,
  type RateLimiterOptions,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { rateLimitHeaders, SOFT_LIMIT_HEADER } from "../src/http/mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import {
  applyLimits,
  exportLimits,
  formatPlan,
  LimitsFileError,
  MemoryLimitsStore,
  parseLimitsFile,
  planLimits,
} from "../src/limits_file/mod.ts";
import { formatLimit, parseLimitSpec, UsageError } from "../cli/limits.ts";
import { Meter } from "../scripts/meter.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

type Make = (clock: () => number, options?: Partial<RateLimiterOptions>) => Promise<RateLimiter>;

const T0 = 1_700_000_040_000;
const rpm = Limit.perMinute("rpm", 3);
const tpm = Limit.perMinute("tpm", 1000, { soft: true });
const limits = [rpm, tpm];

function tpmOf(statuses: readonly LimitStatus[]): LimitStatus {
  const s = statuses.find((s) => s.limitName === "tpm");
  assert.ok(s, "a tpm status");
  return s;
}

async function cases(t: Deno.TestContext, make: Make) {
  let now = T0;
  const limiter = await make(() => now);
  const acquire = (entityId: string, consume: Record<string, number>, l = limits) =>
    limiter.acquire({ entityId, resource: "chat", limits: l, consume });

  await t.step("a soft limit goes into debt, exactly, and never refuses", async () => {
    const a = await acquire("debt", { rpm: 1, tpm: 600 });
    assert.equal(tpmOf(a.statuses).available, 400);
    assert.equal(tpmOf(a.statuses).soft, true);
    const b = await acquire("debt", { rpm: 1, tpm: 600 });
    assert.deepEqual(
      { ...tpmOf(b.statuses) },
      { ...tpmOf(b.statuses), available: -200, exceeded: false, soft: true, retryAfterSeconds: 0 },
    );
    // More than the capacity in one request: a soft limit takes it as debt too.
    await acquire("debt", { tpm: 2500.5 }, [tpm]);
    assert.equal(
      (await limiter.available({ entityId: "debt", resource: "chat", limits })).tpm,
      -2701,
    );
    now += 30_000; // half a minute refills 500 tokens
    assert.equal(
      (await limiter.available({ entityId: "debt", resource: "chat", limits })).tpm,
      -2201,
    );
    now += 1; // a thousandth of a second refills 1/60 of a token: the debt rounds against the caller
    assert.equal(
      (await limiter.available({ entityId: "debt", resource: "chat", limits })).tpm,
      -2201,
    );
  });

  await t.step("a hard limit still refuses while the soft one is in debt", async () => {
    for (let i = 0; i < 3; i++) await acquire("gate", { rpm: 1, tpm: 800 });
    const before = await limiter.available({ entityId: "gate", resource: "chat", limits });
    assert.deepEqual(before, { rpm: 0, tpm: -1400 });
    const err = await acquire("gate", { rpm: 1, tpm: 1 }).then(
      () => assert.fail("admitted past rpm"),
      (e) => e,
    );
    assert.ok(err instanceof RateLimitExceeded);
    assert.equal(err.primaryViolation?.limitName, "rpm");
    const soft = tpmOf(err.statuses);
    assert.equal(soft.exceeded, false);
    assert.equal(soft.soft, true);
    assert.equal(soft.available, -1400);
    assert.deepEqual(
      await limiter.available({ entityId: "gate", resource: "chat", limits }),
      before,
    );
  });

  await t.step("rollback and adjust give a soft debt back exactly", async () => {
    const lease = await acquire("back", { rpm: 1, tpm: 900 });
    await lease.adjust({ tpm: 700 });
    await lease.commit();
    assert.equal(
      (await limiter.available({ entityId: "back", resource: "chat", limits })).tpm,
      -600,
    );
    const second = await acquire("back", { rpm: 1, tpm: 333.333 });
    await second.rollback();
    assert.equal(
      (await limiter.available({ entityId: "back", resource: "chat", limits })).tpm,
      -600,
    );
  });

  await t.step("stored limits keep the flag", async () => {
    await limiter.setLimits({ entityId: "stored", limits: [rpm, tpm] });
    const back = await limiter.getLimits({ entityId: "stored" });
    assert.deepEqual(back.map((l) => [l.name, l.soft]), [["rpm", false], ["tpm", true]]);
    const lease = await limiter.acquire({
      entityId: "stored",
      resource: "chat",
      consume: { tpm: 1500 },
    });
    assert.equal(tpmOf(lease.statuses).available, -500);
  });

  await t.step(
    "timeUntilAvailable: a soft limit never gates, and alone it is refused",
    async () => {
      const q = { entityId: "gate", resource: "chat", limits };
      await assert.rejects(
        limiter.timeUntilAvailable({ ...q, needed: { tpm: 10 } }),
        (e) =>
          e instanceof ValidationError && e.message.includes("needed") && /soft/.test(e.message),
      );
      // rpm is empty: 20 s for one; tpm's debt does not count.
      assert.equal(await limiter.timeUntilAvailable({ ...q, needed: { rpm: 1, tpm: 10 } }), 20);
    },
  );

  await t.step("headers: the soft limit in its own header, with its debt", async () => {
    const lease = await acquire("hdr", { rpm: 1, tpm: 1250 });
    const h = rateLimitHeaders(lease.statuses);
    assert.equal(h.get(SOFT_LIMIT_HEADER), '"tpm";q=1000;r=-250;t=75;u=125');
    assert.equal(h.get("RateLimit-Policy"), '"rpm";q=3;w=60');
    assert.equal(h.get("RateLimit"), '"rpm";r=2;t=20');
    const openai = rateLimitHeaders(lease.statuses, { openai: true, soft: false });
    assert.equal(openai.get(SOFT_LIMIT_HEADER), null);
    assert.equal(openai.get("x-ratelimit-remaining-tokens"), null);
    assert.equal(openai.get("x-ratelimit-remaining-requests"), "2");
  });

  await limiter.close();
}

Deno.test("soft limits: Limit and its bad input", () => {
  const soft = Limit.custom({
    name: "tpm",
    capacity: 10,
    refillAmount: 10,
    refillPeriodSeconds: 60,
    soft: true,
  });
  assert.equal(soft.soft, true);
  assert.deepEqual(Limit.custom(JSON.parse(JSON.stringify(soft))), soft);
  assert.ok(!soft.equals(Limit.perMinute("tpm", 10)));
  assert.ok(soft.equals(Limit.perMinute("tpm", 10).withSoft(true)));
  assert.equal("soft" in Limit.perMinute("tpm", 10).toJSON(), false);
  assert.throws(
    () => Limit.perMinute("tpm", 10, { soft: "yes" as unknown as boolean }),
    (e) => e instanceof ValidationError && e.message.includes("limit tpm: soft"),
  );
});

Deno.test("soft limits: the CLI spec suffix", () => {
  const l = parseLimitSpec("tpm:1000/min:soft");
  assert.ok(l.soft && l.capacity === 1000);
  const burst = parseLimitSpec("tpm:1000/min:1500:SOFT");
  assert.ok(burst.soft && burst.capacity === 1500);
  assert.equal(parseLimitSpec("tpm:1000/min").soft, false);
  assert.equal(formatLimit(burst), "tpm:1000/min:1500:soft");
  assert.equal(formatLimit(l), "tpm:1000/min:soft");
  // "soft" is a suffix, never a rate or a burst.
  assert.throws(() => parseLimitSpec("tpm:soft"), UsageError);
  assert.throws(() => parseLimitSpec("tpm:1000/min:soft:soft"), UsageError);
});

Deno.test("soft limits: the limits file", async () => {
  const text = (soft: string) =>
    `entities:\n  key-1:\n    limits:\n      gpt-4:\n        - { name: tpm, rate: 1000, per: minute${soft} }\n`;
  const f = parseLimitsFile(text(", soft: true"));
  assert.equal(f.entities.get("key-1")!.limits.get("gpt-4")![0].soft, true);
  assert.throws(
    () => parseLimitsFile(text(", soft: yes please")),
    (e) => e instanceof LimitsFileError && /gpt-4\[0\]\.soft/.test(e.message),
  );
  const store = new MemoryLimitsStore();
  await applyLimits(parseLimitsFile(text("")), store);
  const plan = await planLimits(f, store);
  assert.match(formatPlan(plan), /1000\/minute -> 1000\/minute soft/);
  await applyLimits(f, store);
  assert.deepEqual((await planLimits(f, store)).steps, []);
  assert.match(await exportLimits(store), /soft: true/);
});

Deno.test("soft limits on the in-memory backend", async (t) => {
  const backend = new InMemoryBackend();
  await cases(
    t,
    (clock, options) =>
      Promise.resolve(new RateLimiter({ tableName: "in-memory", backend, clock, ...options })),
  );
});

dynamoTest("soft limits on DynamoDB Local", async (t, { client }) => {
  const tableName = uniqueTableName("soft");
  await cases(t, async (clock, options) => {
    const l = new RateLimiter({ tableName, client, clock, ...options });
    await l.createTable();
    return l;
  });

  await t.step("a warm acquire with a soft limit in debt is one UpdateItem", async () => {
    let now = T0;
    const limiter = new RateLimiter({ tableName, client, clock: () => now });
    const meter = new Meter(client);
    const go = () =>
      limiter.acquire({
        entityId: "warm",
        resource: "chat",
        limits,
        consume: { rpm: 1, tpm: 900 },
      });
    await go(); // cold: config read and the first write
    now += 20_000;
    meter.reset();
    const lease = await go(); // in debt after this one
    assert.equal(tpmOf(lease.statuses).available, 1000 - 1800 + 333);
    now += 20_000;
    const third = await go();
    assert.equal(tpmOf(third.statuses).available, 1000 - 2700 + 666);
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [
      ["UpdateItemCommand", false],
      ["UpdateItemCommand", false],
    ]);
    await limiter.close();
  });
});
