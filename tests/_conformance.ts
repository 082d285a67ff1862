/**
 * One suite of limiter behaviours, run against DynamoDB Local and against the in-memory testing
 * backend, so the two cannot drift.
 */
import assert from "node:assert/strict";
import {
  EntityExistsError,
  EntityNotFoundError,
  Limit,
  type RateLimiter,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";

/** Makes a limiter on the backend under test; each call shares that backend's state. */
export type MakeLimiter = (clock: () => number, options?: { denyCache?: boolean }) => RateLimiter;

const rpm = (n: number) => Limit.perMinute("rpm", n);
const tpm = (n: number, burst?: number) => Limit.perMinute("tpm", n, burst ? { burst } : undefined);

/** Runs the suite as steps of `t`. */
export async function conformance(t: Deno.TestContext, make: MakeLimiter): Promise<void> {
  let now = 1_900_000_000_000;
  const clock = () => now;
  const limiter = make(clock);
  const step = (name: string, fn: () => Promise<void>) => t.step(`conformance: ${name}`, fn);

  await step("multi-limit all or nothing, statuses and exact retry-after", async () => {
    const base = { entityId: "c-atomic", resource: "gpt-4", limits: [rpm(60), tpm(600)] };
    await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 595 } });
    const e = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 12 } }).catch((e) => e);
    assert.ok(e instanceof RateLimitExceeded);
    assert.deepEqual(e.statuses.map((s) => [s.limitName, s.available, s.exceeded]), [
      ["rpm", 59, false],
      ["tpm", 5, true],
    ]);
    assert.equal(e.retryAfterSeconds, 0.7);
    assert.deepEqual(await limiter.available(base), { rpm: 59, tpm: 5 });
    now += 700;
    await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 12 } });
  });

  await step("burst and refill", async () => {
    const base = { entityId: "c-burst", resource: "api", limits: [tpm(600, 900)] };
    await limiter.acquire({ ...base, consume: { tpm: 900 } });
    await assert.rejects(limiter.acquire({ ...base, consume: { tpm: 1 } }), RateLimitExceeded);
    now += 1_000;
    assert.deepEqual(await limiter.available(base), { tpm: 10 });
    assert.equal(await limiter.timeUntilAvailable({ ...base, needed: { tpm: 30 } }), 2);
    now += 600_000;
    assert.deepEqual(await limiter.available(base), { tpm: 900 });
  });

  await step("adjust into debt, rollback, callback and await using", async () => {
    const base = { entityId: "c-lease", resource: "gpt-4", limits: [tpm(1_000)] };
    await limiter.acquire({ ...base, consume: { tpm: 400 } }, async (lease) => {
      await lease.adjust({ tpm: 1_100 });
    });
    assert.deepEqual(await limiter.available(base), { tpm: -500 });
    await assert.rejects(limiter.acquire({ ...base, consume: { tpm: 0 } }), RateLimitExceeded);
    now += 60_000;
    assert.deepEqual(await limiter.available(base), { tpm: 500 });
    const boom = new Error("boom");
    await assert.rejects(
      limiter.acquire({ ...base, consume: { tpm: 300 } }, () => {
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.deepEqual(await limiter.available(base), { tpm: 500 });
    {
      await using lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
      await lease.adjust({ tpm: -50 });
    }
    assert.deepEqual(await limiter.available(base), { tpm: 450 });
  });

  await step("a request over the capacity is impossible", async () => {
    const e = await limiter.acquire({
      entityId: "c-impossible",
      resource: "api",
      limits: [rpm(5)],
      consume: { rpm: 6 },
    }).catch((e) => e);
    assert.ok(e instanceof RateLimitExceeded);
    assert.equal(e.impossible, true);
  });

  await step("live limit changes keep the state", async () => {
    const base = { entityId: "c-live", resource: "api" };
    await limiter.acquire({ ...base, limits: [rpm(10)], consume: { rpm: 4 } });
    assert.deepEqual(await limiter.available({ ...base, limits: [rpm(5)] }), { rpm: 5 });
    assert.deepEqual(await limiter.available({ ...base, limits: [rpm(100), tpm(10)] }), {
      rpm: 6,
      tpm: 10,
    });
  });

  await step("concurrent acquires never over-admit", async () => {
    const base = { entityId: "c-race", resource: "api", limits: [rpm(20)] };
    const others = [make(clock), make(clock), make(clock)];
    const results = await Promise.allSettled(
      others.flatMap((l) =>
        Array.from({ length: 20 }, () => l.acquire({ ...base, consume: { rpm: 1 } }))
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 20);
    assert.ok(
      results.every((r) => r.status === "fulfilled" || r.reason instanceof RateLimitExceeded),
    );
    await Promise.all(others.map((l) => l.close()));
  });

  await step("entities, cascade and stored limits", async () => {
    await limiter.createEntity({ entityId: "c-proj" });
    await limiter.createEntity({ entityId: "c-key", parentId: "c-proj", cascade: true });
    await assert.rejects(limiter.createEntity({ entityId: "c-proj" }), EntityExistsError);
    await assert.rejects(
      limiter.createEntity({ entityId: "c-x", parentId: "c-none" }),
      EntityNotFoundError,
    );
    await assert.rejects(
      limiter.createEntity({ entityId: "c-y", parentId: "c-key" }),
      ValidationError,
    );
    await limiter.setLimits({ entityId: "c-proj", limits: [rpm(2)] });
    const call = { resource: "gpt-4", limits: [rpm(10)], useStoredLimits: true };
    await limiter.acquire({ entityId: "c-key", ...call, consume: { rpm: 2 } });
    const e = await limiter.acquire({ entityId: "c-key", ...call, consume: { rpm: 1 } }).catch((
      e,
    ) => e);
    assert.ok(e instanceof RateLimitExceeded);
    assert.deepEqual(e.statuses.map((s) => [s.entityId, s.available, s.exceeded]), [
      ["c-key", 8, false],
      ["c-proj", 0, true],
    ]);
    assert.deepEqual((await limiter.listChildren("c-proj")).map((c) => c.entityId), ["c-key"]);
    await assert.rejects(limiter.deleteEntity("c-proj"), /delete them first/);
    await limiter.deleteEntity("c-key");
    assert.equal(await limiter.getEntity("c-key"), undefined);
    assert.deepEqual(
      await limiter.available({ entityId: "c-key", resource: "gpt-4", limits: [rpm(10)] }),
      { rpm: 10 },
    );
    assert.deepEqual((await limiter.getLimits({ entityId: "c-proj" })).map((l) => l.capacity), [2]);
    await limiter.deleteLimits({ entityId: "c-proj" });
    assert.deepEqual(await limiter.getLimits({ entityId: "c-proj" }), []);
  });

  await step("the deny cache refuses locally with the exact wait", async () => {
    const base = { entityId: "c-deny", resource: "api", limits: [rpm(1)], cascade: false };
    await limiter.acquire({ ...base, consume: { rpm: 1 } });
    now += 15_000;
    const e = await limiter.acquire({ ...base, consume: { rpm: 1 } }).catch((e) => e);
    assert.ok(e instanceof RateLimitExceeded);
    assert.equal(e.retryAfterSeconds, 45);
  });

  await limiter.close();
}
