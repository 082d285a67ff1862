// Shadow mode: everything evaluated and recorded, nothing refused; each would-be refusal reported
// once (callback, counter, lease, header). The same cases run on DynamoDB Local and on the
// in-memory backend, with an injected clock; the deny cache is metered on DynamoDB Local.
import assert from "node:assert/strict";
import {
  Limit,
  RateLimiter,
  type RateLimiterOptions,
  RateLimitExceeded,
  type ShadowRefusal,
  ValidationError,
} from "../mod.ts";
import { SHADOW_REFUSED_HEADER, withRateLimit } from "../src/http/mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

type Make = (clock: () => number, options?: Partial<RateLimiterOptions>) => Promise<RateLimiter>;

const T0 = 1_700_000_040_000;
const rpm = Limit.perMinute("rpm", 2);
const tpm = Limit.perMinute("tpm", 1000);
const soft = Limit.perMinute("spm", 1, { soft: true });

async function cases(t: Deno.TestContext, make: Make) {
  let now = T0;
  const seen: ShadowRefusal[] = [];
  const shadow = await make(() => now, { shadow: true, onShadowRefusal: (i) => seen.push(i) });
  const plain = await make(() => now);

  await t.step("a shadow limiter admits what it would refuse, and reports each once", async () => {
    const leases = [];
    for (let i = 0; i < 5; i++) {
      const lease = await shadow.acquire({
        entityId: "trial",
        resource: "chat",
        limits: [rpm, tpm, soft],
        consume: { rpm: 1, tpm: 100, spm: 1 },
      });
      leases.push(lease);
      await lease.commit();
    }
    assert.deepEqual(leases.map((l) => l.shadowRefused), [false, false, true, true, true]);
    assert.equal(shadow.shadowRefusals, 3);
    assert.equal(seen.length, 3);
    // The statuses that would have refused, as they were before each request: rpm only (tpm had
    // room, and the soft limit never refuses).
    assert.deepEqual(
      seen.map((s) => [s.entityId, s.resource, s.statuses.map((x) => x.limitName)]),
      [["trial", "chat", ["rpm"]], ["trial", "chat", ["rpm"]], ["trial", "chat", ["rpm"]]],
    );
    assert.deepEqual(seen.map((s) => s.statuses[0].available), [0, -1, -2]);
    assert.deepEqual(seen.map((s) => s.statuses[0].retryAfterSeconds), [30, 60, 90]);
    assert.ok(seen.every((s) => s.statuses[0].exceeded));
    assert.deepEqual(leases[4].shadowRefusals, seen[2].statuses);
    // What the table shows is what really happened: five requests, rpm in debt.
    assert.deepEqual(
      await shadow.available({ entityId: "trial", resource: "chat", limits: [rpm, tpm, soft] }),
      { rpm: -3, tpm: 500, spm: -4 },
    );
  });

  await t.step("the same table without shadow refuses, with the debt the trial left", async () => {
    const err = await plain.acquire({
      entityId: "trial",
      resource: "chat",
      limits: [rpm, tpm],
      consume: { rpm: 1 },
    }).then(() => assert.fail("admitted"), (e) => e);
    assert.ok(err instanceof RateLimitExceeded);
    assert.equal(err.retryAfterSeconds, 120);
    assert.equal(shadow.shadowRefusals, 3); // nothing reported by another limiter's refusal
  });

  await t.step("per call: shadow on one call of a limiter that refuses", async () => {
    const q = { entityId: "percall", resource: "chat", limits: [rpm], consume: { rpm: 2 } };
    await plain.acquire(q);
    await assert.rejects(plain.acquire(q), RateLimitExceeded);
    const lease = await plain.acquire({ ...q, shadow: true });
    assert.equal(lease.shadowRefused, true);
    assert.equal(plain.shadowRefusals, 1);
    // A shadow call on a shadow limiter can opt out.
    await assert.rejects(shadow.acquire({ ...q, shadow: false }), RateLimitExceeded);
    assert.equal(shadow.shadowRefusals, 3);
    assert.deepEqual(
      await plain.available({ entityId: "percall", resource: "chat", limits: [rpm] }),
      { rpm: -2 },
    );
  });

  await t.step("a request larger than the capacity is admitted into debt too", async () => {
    now += 60_000;
    const lease = await shadow.acquire({
      entityId: "big",
      resource: "chat",
      limits: [tpm],
      consume: { tpm: 1500 },
    });
    assert.equal(lease.shadowRefused, true);
    assert.equal(lease.shadowRefusals[0].retryAfterSeconds, Infinity);
    assert.equal(lease.statuses[0].available, -500);
    await lease.rollback(); // gives it all back, exactly
    assert.deepEqual(
      await shadow.available({ entityId: "big", resource: "chat", limits: [tpm] }),
      { tpm: 1000 },
    );
    assert.equal(shadow.shadowRefusals, 4);
  });

  await t.step("batches: a shadow call writes through, and is reported", async () => {
    const q = {
      entityId: "batched",
      resource: "chat",
      limits: [rpm],
      consume: { rpm: 1 },
      batch: true,
    };
    const admitted = [];
    for (let i = 0; i < 3; i++) admitted.push((await shadow.acquire(q)).shadowRefused);
    assert.deepEqual(admitted, [false, false, true]);
    assert.deepEqual(await shadow.available(q), { rpm: -1 });
    assert.deepEqual(shadow.held({ entityId: "batched", resource: "chat" }), {});
  });

  await t.step("the HTTP helpers say so in a header", async () => {
    const handler = withRateLimit(() => new Response("ok"), {
      limiter: shadow,
      key: () => ({ entityId: "http", resource: "chat", limits: [rpm], consume: { rpm: 2 } }),
    });
    const first = await handler(new Request("http://x/"));
    assert.equal(first.status, 200);
    await first.text();
    assert.equal(first.headers.get(SHADOW_REFUSED_HEADER), null);
    const second = await handler(new Request("http://x/"));
    assert.equal(second.status, 200);
    await second.text();
    assert.equal(second.headers.get(SHADOW_REFUSED_HEADER), '"rpm"');
    assert.equal(second.headers.get("RateLimit"), '"rpm";r=0;t=120');
  });

  await t.step("bad options", () => {
    assert.throws(
      () => new RateLimiter({ tableName: "x", backend: new InMemoryBackend(), shadow: 1 as never }),
      (e) => e instanceof ValidationError && e.message.includes("shadow"),
    );
    assert.throws(
      () =>
        new RateLimiter({
          tableName: "x",
          backend: new InMemoryBackend(),
          onShadowRefusal: "log" as never,
        }),
      (e) => e instanceof ValidationError && e.message.includes("onShadowRefusal"),
    );
  });

  await t.step("a throwing callback does not fail the request", async () => {
    const l = await make(() => now, {
      shadow: true,
      onShadowRefusal: () => {
        throw new Error("boom");
      },
    });
    const q = { entityId: "boom", resource: "chat", limits: [rpm], consume: { rpm: 3 } };
    assert.equal((await l.acquire(q)).shadowRefused, true);
    assert.equal(l.shadowRefusals, 1);
    await l.close();
  });

  await shadow.close();
  await plain.close();
}

Deno.test("shadow mode on the in-memory backend", async (t) => {
  const backend = new InMemoryBackend();
  await cases(
    t,
    (clock, options) =>
      Promise.resolve(new RateLimiter({ tableName: "in-memory", backend, clock, ...options })),
  );
});

dynamoTest("shadow mode on DynamoDB Local", async (t, { client }) => {
  const tableName = uniqueTableName("shadow");
  await cases(t, async (clock, options) => {
    const l = new RateLimiter({ tableName, client, clock, ...options });
    await l.createTable();
    return l;
  });

  await t.step("the deny cache refuses with no call, but never in shadow mode", async () => {
    const now = T0;
    const limiter = new RateLimiter({ tableName, client, clock: () => now });
    const q = { entityId: "deny", resource: "chat", limits: [rpm], consume: { rpm: 2 } };
    await limiter.acquire(q);
    await assert.rejects(limiter.acquire(q), RateLimitExceeded); // learns the bucket is empty
    const meter = new Meter(client);
    await assert.rejects(limiter.acquire(q), RateLimitExceeded);
    assert.equal(meter.count, 0); // the deny cache: no call
    const lease = await limiter.acquire({ ...q, shadow: true });
    assert.equal(lease.shadowRefused, true);
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [["UpdateItemCommand", false]]);
    assert.equal(lease.statuses[0].available, -2);
    await limiter.close();
  });
});
