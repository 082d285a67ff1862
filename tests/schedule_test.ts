// Schedules: a limit's parameters change in time windows of the week (a higher rate on weekends),
// resolved at acquire time from the limiter's clock. The same cases run on DynamoDB Local and on
// the in-memory backend, with an injected clock; the cost of a warm acquire and of the first one
// after a switch is metered on DynamoDB Local.
import assert from "node:assert/strict";
import {
  Limit,
  type LimitStatus,
  RateLimiter,
  type RateLimiterOptions,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import type { CustomLimitOptions } from "../src/limit.ts";
import type { LimitSchedule } from "../src/limit_schedule.ts";
import { LimitsFileError, parseLimitsFile } from "../src/limits_file/mod.ts";
import { limitToSpec, type RateLimitSpec, showLimit } from "../src/limits_file/model.ts";
import { Meter } from "../scripts/meter.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

type Make = (clock: () => number, options?: Partial<RateLimiterOptions>) => Promise<RateLimiter>;

const weekend: LimitSchedule = {
  timeZone: "Europe/Berlin",
  windows: [{ days: ["sat", "sun"], from: "00:00", to: "24:00", rate: 200, burst: 300 }],
};
const rpm = Limit.perMinute("rpm", 100, { schedule: weekend });
// Saturday 10 January 2026 00:00 CET and Monday 12 January 00:00 CET.
const SAT = Date.UTC(2026, 0, 9, 23);
const MON = Date.UTC(2026, 0, 11, 23);

/** A nightly 22:00–06:00 window on the Saturday of a DST change, in `timeZone`. */
const nightly = (timeZone: string) =>
  Limit.perMinute("rpm", 100, {
    schedule: { timeZone, windows: [{ days: ["sat"], from: "22:00", to: "06:00", rate: 300 }] },
  });

function rpmOf(statuses: readonly LimitStatus[]): LimitStatus {
  const s = statuses.find((s) => s.limitName === "rpm");
  assert.ok(s, "an rpm status");
  return s;
}

async function refused(p: Promise<unknown>): Promise<LimitStatus> {
  const err = await p.then(() => undefined, (e) => e);
  assert.ok(err instanceof RateLimitExceeded, `refused, got ${err}`);
  return rpmOf(err.statuses);
}

async function cases(t: Deno.TestContext, make: Make) {
  let now = SAT - 1;
  const limiter = await make(() => now);
  const acquire = (entityId: string, n: number, limits = [rpm]) =>
    limiter.acquire({ entityId, resource: "chat", limits, consume: { rpm: n } });
  const available = async (entityId: string, limits = [rpm]) =>
    (await limiter.available({ entityId, resource: "chat", limits })).rpm;

  await t.step("the rate doubles at the weekend's start and returns at its end", async () => {
    now = SAT - 1; // Friday 23:59:59.999
    assert.equal(rpmOf((await acquire("w", 100)).statuses).available, 0);
    const friday = await refused(acquire("w", 1));
    assert.equal(friday.limit.capacity, 100);
    assert.equal(friday.retryAfterSeconds, 0.6); // 1 token at 100 a minute
    now = SAT; // one ms later: the weekend's parameters, the balance carried (1 thousandth)
    const saturday = await refused(acquire("w", 1));
    assert.equal(saturday.limit.capacity, 300);
    assert.equal(saturday.limit.refillAmount, 200);
    assert.equal(saturday.retryAfterSeconds, 0.3); // 0.999 token at 200 a minute: 299.7 ms
    now = SAT + 60_000; // a minute at 200 a minute
    assert.equal(await available("w"), 200);
    assert.equal(rpmOf((await acquire("w", 200)).statuses).available, 0);
    await refused(acquire("w", 1));
    now = SAT + 30 * 60_000; // full at the weekend's capacity
    assert.equal(await available("w"), 300);
    now = MON - 1; // Sunday 23:59:59.999: still the weekend's
    assert.equal(rpmOf((await acquire("w", 250)).statuses).available, 50);
    now = MON; // the weekday's again: 50 tokens and a thousandth of a token kept, capacity 100
    const monday = await refused(acquire("w", 51));
    assert.equal(monday.limit.capacity, 100);
    assert.equal(monday.available, 50);
    assert.equal(rpmOf((await acquire("w", 50)).statuses).available, 0);
    now = MON + 60_000; // a minute at 100 a minute, not 200
    assert.equal(await available("w"), 100);
  });

  await t.step("the switch is exact to the millisecond, both ways", async () => {
    for (const [at, cap] of [[SAT - 1, 100], [SAT, 300], [MON - 1, 300], [MON, 100]]) {
      now = at;
      const e = `edge-${at}`;
      assert.equal(await available(e), cap, `available at ${new Date(at).toISOString()}`);
      const s = rpmOf((await acquire(e, 1)).statuses);
      assert.deepEqual([s.limit.capacity, s.available], [cap, cap - 1]);
    }
  });

  await t.step("a nightly window across a DST change (Berlin, New York)", async () => {
    const nights: [string, number, number][] = [
      // Spring forward: Saturday 22:00 standard time, Sunday 06:00 summer time (7 hours).
      ["Europe/Berlin", Date.UTC(2026, 2, 28, 21), Date.UTC(2026, 2, 29, 4)],
      ["America/New_York", Date.UTC(2026, 2, 8, 3), Date.UTC(2026, 2, 8, 10)],
      // Fall back: Saturday 22:00 summer time, Sunday 06:00 standard time (9 hours).
      ["Europe/Berlin", Date.UTC(2026, 9, 24, 20), Date.UTC(2026, 9, 25, 5)],
      ["America/New_York", Date.UTC(2026, 10, 1, 2), Date.UTC(2026, 10, 1, 11)],
    ];
    for (const [zone, start, end] of nights) {
      const limit = nightly(zone);
      for (const [at, cap] of [[start - 1, 100], [start, 300], [end - 1, 300], [end, 100]]) {
        now = at;
        const e = `dst-${zone.replace("/", ".")}-${at}`;
        const s = rpmOf((await acquire(e, 1, [limit])).statuses);
        assert.deepEqual(
          [s.limit.capacity, s.available],
          [cap, cap - 1],
          `${zone} at ${new Date(at).toISOString()}`,
        );
      }
      // One bucket across the end: drained to 0 at the end's last ms, then at the day rate.
      now = end - 1;
      await acquire(`dst-${zone.replace("/", ".")}`, 300, [limit]);
      now = end + 60_000;
      assert.equal(await available(`dst-${zone.replace("/", ".")}`, [limit]), 100);
    }
  });

  await t.step("two processes agree on the switch", async () => {
    now = SAT - 60_000;
    const other = await make(() => now);
    const other1 = (n: number) =>
      other.acquire({ entityId: "two", resource: "chat", limits: [rpm], consume: { rpm: n } });
    await acquire("two", 60);
    assert.equal(rpmOf((await other1(40)).statuses).available, 0);
    now = SAT + 30_000; // 1 token of Friday (60 s·100/min – 59.999 s… ) and 100 of Saturday
    const a = await refused(acquire("two", 200));
    const b = await refused(other1(200));
    assert.deepEqual([a.limit.capacity, a.available], [300, b.available]);
    assert.equal(b.limit.capacity, 300);
    assert.equal(rpmOf((await other1(a.available)).statuses).available, 0);
    await refused(acquire("two", 1));
    await other.close();
  });

  await limiter.close();
}

Deno.test("schedules on the in-memory backend", async (t) => {
  const backend = new InMemoryBackend();
  await cases(
    t,
    (clock, options) =>
      Promise.resolve(new RateLimiter({ tableName: "in-memory", backend, clock, ...options })),
  );
});

dynamoTest("schedules on DynamoDB Local", async (t, { client }) => {
  const tableName = uniqueTableName("sched");
  await cases(t, async (clock, options) => {
    const l = new RateLimiter({ tableName, client, clock, ...options });
    await l.createTable();
    return l;
  });

  await t.step("a warm acquire is one UpdateItem, in a window and after a switch", async () => {
    let now = SAT - 120_000;
    const limiter = new RateLimiter({ tableName, client, clock: () => now });
    const meter = new Meter(client);
    const go = () =>
      limiter.acquire({ entityId: "warm", resource: "chat", limits: [rpm], consume: { rpm: 1 } });
    await go(); // cold
    now += 1000;
    meter.reset();
    await go();
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [["UpdateItemCommand", false]]);
    now = SAT + 1000;
    meter.reset();
    const first = await go(); // the switch: the bucket's spec changes (see docs/design.md)
    assert.equal(rpmOf(first.statuses).limit.capacity, 300);
    // The process knew the bucket under Friday's spec: its guess fails and returns the item,
    // whose conversion is the second write (docs/design.md, "Schedules").
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [
      ["UpdateItemCommand", true],
      ["UpdateItemCommand", false],
    ]);
    now += 1000;
    meter.reset();
    await go();
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [["UpdateItemCommand", false]]);
    await limiter.close();
  });

  await t.step("a stored schedule reaches a second limiter, and the audit trail", async () => {
    let now = SAT + 1000;
    const admin = new RateLimiter({ tableName, client, clock: () => now });
    await admin.setLimits({ entityId: "stored", limits: [rpm] });
    const reader = new RateLimiter({ tableName, client, clock: () => now });
    const [got] = await reader.getLimits({ entityId: "stored" });
    assert.ok(got.equals(rpm));
    assert.deepEqual((got.toJSON() as CustomLimitOptions).schedule, weekend);
    const lease = await reader.acquire({
      entityId: "stored",
      resource: "chat",
      consume: { rpm: 1 },
    });
    assert.deepEqual([rpmOf(lease.statuses).limit.capacity, rpmOf(lease.statuses).available], [
      300,
      299,
    ]);
    now = MON;
    assert.equal(
      (await reader.available({ entityId: "stored", resource: "chat" })).rpm,
      100,
    );
    const { events } = await admin.getAuditEvents({ entityId: "stored", limit: 1 });
    const after = events[0].after as { limits: { schedule?: unknown }[] };
    assert.deepEqual(after.limits[0].schedule, weekend);
    await admin.close();
    await reader.close();
  });
});

Deno.test("schedules: bad input is a ValidationError naming the field", async (t) => {
  const bad = (schedule: unknown, field: string, rule: RegExp) =>
    assert.throws(
      () => Limit.perMinute("rpm", 100, { schedule: schedule as LimitSchedule }),
      (e) => e instanceof ValidationError && e.field === field && rule.test(e.rule),
      field,
    );
  const w = { days: ["sat"], from: "00:00", to: "24:00", rate: 200 };
  await t.step("the limit's own rules", () => {
    bad({ timeZone: "Mars/Base", windows: [w] }, "limit rpm: schedule.timeZone", /zone/);
    bad(
      { timeZone: "UTC", windows: [w, { ...w, days: ["fri"], from: "18:00", to: "08:00" }] },
      "limit rpm: schedule.windows[1]",
      /overlaps windows\[0\]/,
    );
    bad(
      { timeZone: "UTC", windows: [{ ...w, burst: 100 }] },
      "limit rpm: schedule.windows[0].burst",
      />= the window's rate/,
    );
    bad(
      { timeZone: "UTC", windows: [{ ...w, rate: 0.0005 }] },
      "limit rpm: schedule.windows[0].rate",
      /0\.001/,
    );
    bad(
      { timeZone: "UTC", windows: [{ ...w, rate: 0 }] },
      "limit rpm: schedule.windows[0].rate",
      /> 0/,
    );
    bad(
      { timeZone: "UTC", windows: [{ ...w, rtae: 3 }] },
      "limit rpm: schedule.windows[0].rtae",
      /not a field/,
    );
    bad({ timeZone: "UTC", windows: [] }, "limit rpm: schedule.windows", /at least one/);
    bad(
      { timeZone: "UTC", windows: [{ ...w, from: "25:00" }] },
      "limit rpm: schedule.windows[0].from",
      /HH:MM/,
    );
  });
  await t.step("the limits file names the path inside the schedule", () => {
    const text = [
      "system:",
      "  limits:",
      "    - name: rpm",
      "      rate: 100",
      "      per: minute",
      "      schedule:",
      "        timeZone: Europe/Berlin",
      "        windows:",
      "          - { days: [sat, sun], from: '00:00', to: '24:00', rate: 200, burst: BURST }",
    ].join("\n");
    const file = parseLimitsFile(text.replace("BURST", "300"));
    assert.ok(file.system?.[0].equals(rpm));
    assert.deepEqual((limitToSpec(rpm) as RateLimitSpec).schedule, weekend);
    assert.equal(
      showLimit(rpm),
      "rpm 100/minute schedule@Europe/Berlin[sat,sun 00:00-24:00 200 burst 300]",
    );
    assert.throws(
      () => parseLimitsFile(text.replace("BURST", "150")),
      (e) =>
        e instanceof LimitsFileError && e.problems.length === 1 &&
        e.problems[0].field === "system.limits[0].schedule.windows[0].burst" &&
        e.problems[0].value === 150 && e.problems[0].line === 6,
    );
  });
  await t.step("equality, plain data and shards see the schedule", () => {
    assert.ok(!rpm.equals(Limit.perMinute("rpm", 100)));
    assert.ok(Limit.custom(JSON.parse(JSON.stringify(rpm))).equals(rpm));
    assert.ok(rpm.withSoft(true).schedule === rpm.schedule);
  });
});
