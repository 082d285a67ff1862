/**
 * `also`: several resources in one acquire, all or nothing, with the cascade; run against
 * DynamoDB Local (with the calls metered) and against the in-memory backend.
 */
import assert from "node:assert/strict";
import { ScanCommand } from "@aws-sdk/client-dynamodb";
import {
  EntityDisabledError,
  Limit,
  RateLimiter,
  type RateLimiterOptions,
  RateLimiterUnavailable,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { withRateLimit } from "../src/http/mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const rpm = (n: number) => Limit.perMinute("rpm", n);
const tpm = (n: number) => Limit.perMinute("tpm", n);

/** A limiter on the backend under test (all share its state), with `options` on top. */
type Make = (options?: Partial<RateLimiterOptions>) => RateLimiter;
/** Every bucket item, as `entity/resource` → its write count (`wc`). */
type Snapshot = () => Promise<Map<string, bigint>>;

/** The items whose write count changed between two snapshots, with the change. */
function changed(before: Map<string, bigint>, after: Map<string, bigint>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [id, wc] of after) {
    const d = wc - (before.get(id) ?? 0n);
    if (d !== 0n) out[id] = Number(d);
  }
  return out;
}

const statusRows = (
  statuses: readonly { entityId: string; resource: string; limitName: string; available: number }[],
) => statuses.map((s) => [s.entityId, s.resource, s.limitName, s.available]);

/** The suite both backends run. `calls` counts the backend's calls when it can. */
async function suite(
  t: Deno.TestContext,
  make: Make,
  snapshot: Snapshot,
  clock: { now: number },
  calls?: () => number,
) {
  const limiter = make();
  const key = { entityId: "key-c", resource: "gpt-4", also: ["all-models"] };
  const acquireC = (consume: Record<string, number>, l = limiter) => l.acquire({ ...key, consume });
  const avail = (entityId: string, resource: string) => limiter.available({ entityId, resource });
  try {
    await limiter.createEntity({ entityId: "proj" });
    await limiter.createEntity({ entityId: "key-c", parentId: "proj", cascade: true });
    await limiter.createEntity({ entityId: "key-n" });
    await limiter.setResourceDefaults({ resource: "gpt-4", limits: [rpm(10), tpm(1_000)] });
    await limiter.setResourceDefaults({ resource: "all-models", limits: [tpm(1_500)] });
    await limiter.setLimits({ entityId: "proj", resource: "all-models", limits: [tpm(150)] });

    await t.step("debits exactly the primary's, the also's and the parents' buckets", async () => {
      const before = await snapshot();
      const lease = await acquireC({ rpm: 1, tpm: 100 });
      assert.deepEqual(changed(before, await snapshot()), {
        "key-c/gpt-4": 1,
        "proj/gpt-4": 1,
        "key-c/all-models": 1,
        "proj/all-models": 1,
      });
      // Each resource with its own stored limits; rpm is taken only where a limit has that name.
      assert.deepEqual(statusRows(lease.statuses), [
        ["key-c", "gpt-4", "rpm", 9],
        ["key-c", "gpt-4", "tpm", 900],
        ["proj", "gpt-4", "rpm", 9],
        ["proj", "gpt-4", "tpm", 900],
        ["key-c", "all-models", "tpm", 1_400],
        ["proj", "all-models", "tpm", 50],
      ]);
      assert.deepEqual(lease.consumed, { rpm: 1, tpm: 100 });
      await lease.commit();
      assert.deepEqual(await avail("key-c", "all-models"), { tpm: 1_400 });
      assert.deepEqual(await avail("proj", "all-models"), { tpm: 50 });
      assert.deepEqual(await avail("proj", "gpt-4"), { rpm: 9, tpm: 900 });
    });

    await t.step("all or nothing: one bucket refuses, nothing is written", async () => {
      // A process that asks DynamoDB every time: the transaction is sent, and cancelled.
      const fresh = make({ denyCache: false });
      try {
        for (const l of [fresh, limiter]) {
          const before = await snapshot();
          const err = await acquireC({ rpm: 1, tpm: 100 }, l).catch((e) => e);
          assert.ok(err instanceof RateLimitExceeded, String(err));
          assert.deepEqual(
            err.violations.map((s) => [s.entityId, s.resource, s.limitName]),
            [["proj", "all-models", "tpm"]],
          );
          assert.match(err.message, /tpm of proj\/all-models/);
          assert.equal(err.retryAfterSeconds, 20); // 50 missing at 150 a minute
          assert.deepEqual(changed(before, await snapshot()), {});
        }
      } finally {
        await fresh.close();
      }
      assert.deepEqual(await avail("key-c", "gpt-4"), { rpm: 9, tpm: 900 });
      assert.deepEqual(await avail("key-c", "all-models"), { tpm: 1_400 });
    });

    await t.step("rollback and adjust act on every bucket", async () => {
      clock.now += 60_000; // every bucket full again
      const lease = await acquireC({ rpm: 1, tpm: 100 });
      await lease.rollback();
      for (const id of ["key-c", "proj"]) {
        assert.deepEqual(await avail(id, "gpt-4"), { rpm: 10, tpm: 1_000 });
      }
      assert.deepEqual(await avail("key-c", "all-models"), { tpm: 1_500 });
      assert.deepEqual(await avail("proj", "all-models"), { tpm: 150 });

      const used = await acquireC({ rpm: 1, tpm: 100 });
      await used.adjust({ tpm: 40 });
      await used.commit();
      const less = await acquireC({ rpm: 1, tpm: 10 });
      await less.adjust({ tpm: -50 }); // clamped at what each bucket gave: -10
      await less.commit();
      for (const id of ["key-c", "proj"]) {
        assert.deepEqual(await avail(id, "gpt-4"), { rpm: 8, tpm: 860 });
      }
      assert.deepEqual(await avail("key-c", "all-models"), { tpm: 1_360 });
      assert.deepEqual(await avail("proj", "all-models"), { tpm: 10 });
    });

    await t.step("the call's limits: for every resource, after each one's stored", async () => {
      const before = await snapshot();
      const only = await limiter.acquire({
        entityId: "key-n",
        resource: "gpt-4",
        also: ["all-models", "embeddings"],
        limits: [rpm(5)],
        useStoredLimits: false,
        consume: { rpm: 2 },
      });
      assert.deepEqual(statusRows(only.statuses), [
        ["key-n", "gpt-4", "rpm", 3],
        ["key-n", "all-models", "rpm", 3],
        ["key-n", "embeddings", "rpm", 3],
      ]);
      assert.deepEqual(changed(before, await snapshot()), {
        "key-n/gpt-4": 1,
        "key-n/all-models": 1,
        "key-n/embeddings": 1,
      });
      // Stored limits win where they exist; the call's limits fill in for "embeddings".
      const stored = await limiter.acquire({
        entityId: "key-s",
        resource: "gpt-4",
        also: ["all-models", "embeddings"],
        limits: [rpm(5)],
        useStoredLimits: true,
        consume: { rpm: 1, tpm: 10 },
      });
      assert.deepEqual(statusRows(stored.statuses), [
        ["key-s", "gpt-4", "rpm", 9],
        ["key-s", "gpt-4", "tpm", 990],
        ["key-s", "all-models", "tpm", 1_490],
        ["key-s", "embeddings", "rpm", 4],
      ]);
      // No limits anywhere for one of the resources: refused, nothing written.
      const none = await snapshot();
      const err = await limiter.acquire({
        entityId: "key-n",
        resource: "gpt-4",
        also: ["nothing-stored"],
        consume: { rpm: 1 },
      }).catch((e) => e);
      assert.ok(err instanceof ValidationError, String(err));
      assert.match(err.message, /resource "nothing-stored"/);
      assert.deepEqual(changed(none, await snapshot()), {});
    });

    await t.step("bad also is refused before any call", async () => {
      const base = { entityId: "key-n", resource: "gpt-4", consume: { rpm: 1 } };
      const cases: [unknown, string, RegExp][] = [
        [["gpt-4"], "also[0]", /own resource/],
        [["a", "b", "a"], "also[2]", /repeat/],
        [["bad name!"], "also[0]", /letter followed/],
        ["all-models", "also", /array/],
        [Array.from({ length: 50 }, (_, i) => `r${i}`), "also", /at most 49.*100/],
      ];
      const seen = calls?.();
      for (const [also, field, rule] of cases) {
        const err = await limiter.acquire({ ...base, also: also as string[] }).catch((e) => e);
        assert.ok(err instanceof ValidationError, `${also}: ${err}`);
        assert.equal(err.field, field);
        assert.match(err.message, rule);
      }
      const err = await limiter.acquire({
        ...base,
        cascade: false,
        also: Array.from({ length: 100 }, (_, i) => `r${i}`),
      }).catch((e) => e);
      assert.ok(err instanceof ValidationError && err.field === "also", String(err));
      assert.match(err.message, /at most 99/);
      assert.equal(calls?.(), seen, "no call for a refused request");
    });

    await t.step("100 items in one transaction pass (cascade: false)", async () => {
      const before = await snapshot();
      const also = Array.from({ length: 99 }, (_, i) => `r${i}`);
      const lease = await limiter.acquire({
        entityId: "key-n",
        resource: "wide",
        also,
        cascade: false,
        limits: [rpm(1)],
        useStoredLimits: false,
        consume: { rpm: 1 },
      });
      assert.equal(lease.statuses.length, 100);
      assert.equal(Object.keys(changed(before, await snapshot())).length, 100);
      await lease.rollback();
    });

    await t.step("a disabled also resource refuses, before any bucket write", async () => {
      await limiter.disableResource("all-models");
      const before = await snapshot();
      const err = await acquireC({ rpm: 1 }).catch((e) => e);
      assert.ok(err instanceof EntityDisabledError, String(err));
      assert.equal(err.disabled, "resource");
      assert.equal(err.disabledId, "all-models");
      assert.equal(err.resource, "gpt-4");
      assert.match(err.message, /resource "all-models" is disabled/);
      assert.deepEqual(changed(before, await snapshot()), {});
      // Without it in `also`, the primary alone goes through.
      await (await limiter.acquire({ entityId: "key-c", resource: "gpt-4", consume: {} })).commit();
      await limiter.enableResource("all-models");
      await (await acquireC({ rpm: 1 })).commit();
    });

    await t.step(
      "withRateLimit forwards also; each resource's limits have their own name",
      async () => {
        clock.now += 60_000;
        const handler = withRateLimit(() => new Response("ok"), {
          limiter,
          key: () => ({ ...key, consume: { rpm: 1, tpm: 10 } }),
        });
        const res = await handler(new Request("http://x/"));
        assert.equal(res.status, 200);
        assert.equal(
          res.headers.get("RateLimit-Policy"),
          [
            '"rpm";q=10;w=60',
            '"tpm";q=1000;w=60',
            '"proj/rpm";q=10;w=60',
            '"proj/tpm";q=1000;w=60',
            '"all-models:tpm";q=1500;w=60',
            '"proj/all-models:tpm";q=150;w=60',
          ].join(", "),
        );
        const refused = withRateLimit(() => new Response("ok"), {
          limiter,
          key: () => ({ ...key, consume: { tpm: 150 } }),
        });
        const no = await refused(new Request("http://x/"));
        assert.equal(no.status, 429);
        assert.equal(no.headers.get("Retry-After"), "4"); // 10 short at 150 a minute
      },
    );

    await t.step("a bypassed entity consumes from none of the resources", async () => {
      await limiter.setBypass({ entityId: "key-n", bypass: true });
      const before = await snapshot();
      const lease = await limiter.acquire({
        entityId: "key-n",
        resource: "gpt-4",
        also: ["all-models"],
        consume: { rpm: 1 },
      });
      assert.equal(lease.bypassed, true);
      assert.deepEqual(changed(before, await snapshot()), {});
      await limiter.setBypass({ entityId: "key-n", bypass: false });
    });

    await t.step("token batches take from every resource's bucket", async () => {
      const batched = make({ batches: true });
      const limits = [rpm(1_000)];
      const req = { entityId: "key-b", resource: "gpt-4", also: ["all-models"], limits };
      const left = (resource: string) =>
        limiter.available({ ...req, resource, useStoredLimits: false });
      try {
        const lease = await batched.acquire({
          ...req,
          consume: { rpm: 1 },
          useStoredLimits: false,
        });
        assert.deepEqual(lease.statuses.map((s) => s.resource), ["gpt-4", "all-models"]);
        await lease.commit();
        for (const resource of ["gpt-4", "all-models"]) {
          // A batch of 16 taken from each bucket in one write, one of them used.
          assert.deepEqual(batched.held({ entityId: "key-b", resource }), { rpm: 15 }, resource);
          assert.deepEqual(await left(resource), { rpm: 984 }, resource);
        }
      } finally {
        await batched.close(); // returns the batches
      }
      for (const resource of ["gpt-4", "all-models"]) {
        assert.deepEqual(await left(resource), { rpm: 999 }, resource);
      }
    });
  } finally {
    await limiter.close();
  }
}

Deno.test({
  name: "also on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const meter = new Meter(client);
    // Faults on bucket writes: refused before leaving, or applied with the answer lost.
    let fault: "none" | "refuse" | "lose-answer" | "lose-one-answer" = "none";
    client.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as Record<string, unknown>;
        if (!("UpdateExpression" in input) && !("TransactItems" in input)) return next(args);
        if (fault === "refuse") {
          throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
        }
        const lose = fault === "lose-answer" || fault === "lose-one-answer";
        if (fault === "lose-one-answer") fault = "none";
        const out = await next(args).catch((err) => {
          if (!lose) throw err;
        });
        if (!lose) return out!;
        throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
      },
      { step: "initialize", name: "faults" },
    );
    const tableName = uniqueTableName("also");
    const clock = { now: T0 };
    const make: Make = (options = {}) =>
      new RateLimiter({ tableName, client, clock: () => clock.now, ...options });
    const snapshot: Snapshot = async () => {
      const out = new Map<string, bigint>();
      let start: Record<string, never> | undefined;
      do {
        const page = await client.send(
          new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey: start }),
        );
        for (const item of page.Items ?? []) {
          const sk = item.SK?.S ?? "";
          if (!sk.startsWith("#BUCKET#")) continue;
          const entity = (item.PK?.S ?? "").replace(/^.*ENTITY#/, "");
          out.set(`${entity}/${sk.slice("#BUCKET#".length)}`, BigInt(item.wc?.N ?? "0"));
        }
        start = page.LastEvaluatedKey as typeof start;
      } while (start);
      return out;
    };
    try {
      const setup = make({ createTable: true });
      await setup.createTable();
      await setup.close();
      await suite(t, make, snapshot, clock, () => meter.count);

      await t.step("warm: one TransactWriteItems for 4 buckets, no call to commit", async () => {
        const limiter = make();
        try {
          const call = () =>
            limiter.acquire({
              entityId: "key-c",
              resource: "gpt-4",
              also: ["all-models"],
              consume: { rpm: 1 },
            });
          await (await call()).commit(); // cold: config reads, first guesses
          await (await call()).commit(); // knows every bucket
          meter.reset();
          const lease = await call();
          assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [
            ["TransactWriteItemsCommand", false],
          ]);
          await lease.commit();
          assert.equal(meter.count, 1, "a commit with nothing to add sends nothing");
        } finally {
          await limiter.close();
        }
      });

      await t.step("exactly once through outages, on every bucket", async () => {
        const limiter = make({ timeoutMs: 1_000 });
        await limiter.createEntity({ entityId: "proj-o" });
        await limiter.createEntity({ entityId: "key-o", parentId: "proj-o", cascade: true });
        const req = { entityId: "key-o", resource: "gpt-4", also: ["all-models"] };
        const left = async () => [
          await limiter.available({ entityId: "key-o", resource: "gpt-4" }),
          await limiter.available({ entityId: "proj-o", resource: "gpt-4" }),
          await limiter.available({ entityId: "key-o", resource: "all-models" }),
          await limiter.available({ entityId: "proj-o", resource: "all-models" }),
        ];
        const full = [
          { rpm: 10, tpm: 1_000 },
          { rpm: 10, tpm: 1_000 },
          { tpm: 1_500 },
          { tpm: 1_500 },
        ];
        try {
          assert.deepEqual(await left(), full);
          // A lost answer: resent under the same id, found by its receipts, counted once.
          fault = "lose-one-answer";
          const before = await snapshot();
          await (await limiter.acquire({ ...req, consume: { rpm: 1, tpm: 100 } })).commit();
          assert.deepEqual(changed(before, await snapshot()), {
            "key-o/gpt-4": 1,
            "proj-o/gpt-4": 1,
            "key-o/all-models": 1,
            "proj-o/all-models": 1,
          });
          assert.deepEqual(await left(), [
            { rpm: 9, tpm: 900 },
            { rpm: 9, tpm: 900 },
            { tpm: 1_400 },
            { tpm: 1_400 },
          ]);
          // A rollback in an outage waits in the outbox, then gives back on every bucket.
          const lease = await limiter.acquire({ ...req, consume: { rpm: 1, tpm: 100 } });
          fault = "refuse";
          await lease.rollback();
          assert.equal(limiter.pendingWrites, 4);
          fault = "none";
          await limiter.flush();
          // FAIL_CLOSED, every answer lost: the caller is told "unavailable", so the acquire that
          // landed unseen is given back on every bucket.
          fault = "lose-answer";
          await assert.rejects(
            limiter.acquire({ ...req, consume: { rpm: 1, tpm: 100 } }),
            RateLimiterUnavailable,
          );
          fault = "none";
          await limiter.flush();
          assert.deepEqual(await left(), [
            { rpm: 9, tpm: 900 },
            { rpm: 9, tpm: 900 },
            { tpm: 1_400 },
            { tpm: 1_400 },
          ]);
        } finally {
          fault = "none";
          await limiter.close();
        }
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});

Deno.test("also on the in-memory backend", async (t) => {
  const backend = new InMemoryBackend();
  const clock = { now: T0 };
  const make: Make = (options = {}) =>
    new RateLimiter({ tableName: "in-memory", backend, clock: () => clock.now, ...options });
  const resources = [
    "gpt-4",
    "all-models",
    "embeddings",
    "wide",
    ...Array.from(
      { length: 99 },
      (_, i) => `r${i}`,
    ),
  ];
  const snapshot: Snapshot = async () => {
    const out = new Map<string, bigint>();
    for (const resource of resources) {
      for (const { entityId, bucket } of await backend.buckets.resourceBuckets(resource)) {
        out.set(`${entityId}/${resource}`, bucket.writes ?? 0n);
      }
    }
    return out;
  };
  await suite(t, make, snapshot, clock);
});
