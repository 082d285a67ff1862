import assert from "node:assert/strict";
import {
  FailureMode,
  LeaseClosedError,
  Limit,
  RateLimiter,
  RateLimiterUnavailable,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { Meter } from "../scripts/meter.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";

const T0 = 1_800_000_000_000; // a fixed epoch ms
const rpm = (n: number, burst?: number) => Limit.perMinute("rpm", n, burst ? { burst } : undefined);
const tpm = (n: number, burst?: number) => Limit.perMinute("tpm", n, burst ? { burst } : undefined);

Deno.test({
  name: "RateLimiter on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const meter = new Meter(client);
    const tableName = uniqueTableName("limiter");
    let now = T0;
    const limiter = new RateLimiter({ tableName, client, createTable: true, clock: () => now });
    const fresh = (opts: Partial<ConstructorParameters<typeof RateLimiter>[0]> = {}) =>
      new RateLimiter({ tableName, client, clock: () => now, ...opts });
    try {
      await t.step("local-first: endpoint only, no credentials, createTable", async () => {
        const own = new RateLimiter({
          tableName: uniqueTableName("seed"),
          endpoint: ddb.endpoint,
          createTable: true,
          clock: () => now,
        });
        const lease = await own.acquire({
          entityId: "api-key-123",
          resource: "gpt-4",
          limits: [rpm(100), tpm(10_000)],
          consume: { rpm: 1, tpm: 500 },
        });
        assert.deepEqual(lease.statuses.map((s) => [s.limitName, s.available, s.requested]), [
          ["rpm", 99, 1],
          ["tpm", 9_500, 500],
        ]);
        await lease.commit();
        assert.deepEqual(
          await own.available({
            entityId: "api-key-123",
            resource: "gpt-4",
            limits: [rpm(100), tpm(10_000)],
          }),
          { rpm: 99, tpm: 9_500 },
        );
        await own.close();
      });

      await t.step("multi-limit acquire is all or nothing", async () => {
        const limits = [rpm(10), tpm(1_000)];
        const base = { entityId: "atomic", resource: "gpt-4", limits };
        await (await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 900 } })).commit();
        const err = await assert.rejects(
          limiter.acquire({ ...base, consume: { rpm: 1, tpm: 200 } }),
          RateLimitExceeded,
        ) as unknown;
        void err;
        // rpm had room, but nothing was consumed from it
        assert.deepEqual(await limiter.available(base), { rpm: 9, tpm: 100 });
      });

      await t.step(
        "RateLimitExceeded carries every status in order and an exact retry-after",
        async () => {
          const limits = [rpm(60), tpm(600)]; // 1 rpm/s, 10 tpm/s
          const base = { entityId: "statuses", resource: "gpt-4", limits };
          await (await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 595 } })).commit();
          let caught: RateLimitExceeded | undefined;
          try {
            await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 12 } });
          } catch (e) {
            caught = e as RateLimitExceeded;
          }
          assert.ok(caught instanceof RateLimitExceeded);
          assert.deepEqual(caught.statuses.map((s) => [s.limitName, s.exceeded]), [
            ["rpm", false],
            ["tpm", true],
          ]);
          assert.equal(caught.violations.length, 1);
          assert.equal(caught.passed[0].limitName, "rpm");
          assert.equal(caught.primaryViolation.limitName, "tpm");
          // 5 available, 12 needed: 7 tokens at 10/s = 0.7 s
          assert.equal(caught.retryAfterSeconds, 0.7);
          assert.equal(caught.retryAfterHeader, "1");
          const body = caught.asDict();
          assert.equal(body.error, "rate_limit_exceeded");
          assert.equal(body.retry_after_ms, 700);
          assert.deepEqual(body.limits[1], {
            entity_id: "statuses",
            resource: "gpt-4",
            limit_name: "tpm",
            capacity: 600,
            refill_amount: 600,
            refill_period_seconds: 60,
            available: 5,
            requested: 12,
            exceeded: true,
            retry_after_seconds: 0.7,
          });
          assert.deepEqual(JSON.parse(JSON.stringify(caught)), body);
          // exactly at the retry-after it passes, 1 ms earlier it does not
          now += 699;
          await assert.rejects(
            limiter.acquire({ ...base, consume: { rpm: 1, tpm: 12 } }),
            RateLimitExceeded,
          );
          now += 1;
          await (await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 12 } })).commit();
        },
      );

      await t.step("burst: capacity above the rate, refilled at the rate", async () => {
        const limits = [Limit.perSecond("rps", 2, { burst: 5 })];
        const base = { entityId: "burst", resource: "api", limits };
        for (let i = 0; i < 5; i++) await limiter.acquire({ ...base, consume: { rps: 1 } });
        await assert.rejects(limiter.acquire({ ...base, consume: { rps: 1 } }), RateLimitExceeded);
        now += 1_000; // 2 more tokens
        await limiter.acquire({ ...base, consume: { rps: 2 } });
        await assert.rejects(limiter.acquire({ ...base, consume: { rps: 1 } }), RateLimitExceeded);
        now += 10_000; // full again, capped at 5
        assert.deepEqual(await limiter.available(base), { rps: 5 });
      });

      await t.step("refill follows the injected clock exactly", async () => {
        const limits = [tpm(1_000)];
        const base = { entityId: "refill", resource: "gpt-4", limits };
        await limiter.acquire({ ...base, consume: { tpm: 1_000 } });
        assert.deepEqual(await limiter.available(base), { tpm: 0 });
        now += 59; // 0.98 tokens: still 0 whole tokens
        assert.deepEqual(await limiter.available(base), { tpm: 0 });
        now += 1; // 1 token
        assert.deepEqual(await limiter.available(base), { tpm: 1 });
        now += 30_000 - 60;
        assert.deepEqual(await limiter.available(base), { tpm: 500 });
        assert.equal(await limiter.timeUntilAvailable({ ...base, needed: { tpm: 600 } }), 6);
        assert.equal(await limiter.timeUntilAvailable({ ...base, needed: { tpm: 500 } }), 0);
        assert.equal(
          await limiter.timeUntilAvailable({ ...base, needed: { tpm: 1_001 } }),
          Infinity,
        );
      });

      await t.step("adjust may take a balance below zero, which then blocks", async () => {
        const limits = [rpm(100), tpm(1_000)];
        const base = { entityId: "negative", resource: "gpt-4", limits };
        const lease = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
        await lease.adjust({ tpm: 1_000 }); // the answer used 1,500 tokens
        assert.deepEqual(lease.consumed, { rpm: 1, tpm: 1_500 });
        await lease.commit();
        assert.deepEqual(await limiter.available(base), { rpm: 99, tpm: -500 });
        const e = await limiter.acquire({ ...base, consume: { rpm: 1 } }).catch((e) => e);
        assert.ok(e instanceof RateLimitExceeded);
        assert.equal(e.primaryViolation.limitName, "tpm");
        assert.equal(e.retryAfterSeconds, 30); // 500 tokens of debt at 1000/min
        // and the item may not expire before the debt is repaid
        const item = await client.send(
          new GetItemCommand({
            TableName: tableName,
            Key: { PK: { S: "ENTITY#negative" }, SK: { S: "#BUCKET#gpt-4" } },
          }),
        );
        assert.ok(Number(item.Item!.ttl.N) * 1000 >= now + 90_000);
      });

      await t.step("a large adjustment raises the TTL: expiry never forgives debt", async () => {
        const limits = [tpm(1_000)];
        const base = { entityId: "deep-debt", resource: "gpt-4", limits };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 10 } });
        await lease.adjust({ tpm: 1_000_000 }); // 1,000 minutes of debt
        await lease.commit();
        const item = await client.send(
          new GetItemCommand({
            TableName: tableName,
            Key: { PK: { S: "ENTITY#deep-debt" }, SK: { S: "#BUCKET#gpt-4" } },
          }),
        );
        const fullAt = now + (1_000_010 - 1_000) * 60;
        assert.ok(Number(item.Item!.ttl.N) * 1000 >= fullAt, `ttl ${item.Item!.ttl.N} < ${fullAt}`);
      });

      await t.step("negative adjust returns tokens, capped at capacity", async () => {
        const limits = [tpm(1_000)];
        const base = { entityId: "return", resource: "gpt-4", limits };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 800 } });
        await lease.adjust({ tpm: -300 });
        await lease.commit();
        assert.deepEqual(await limiter.available(base), { tpm: 500 });
        const l2 = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        await l2.adjust({ tpm: -5_000 }); // gives back the 100 it took, not the others' 500
        await l2.commit();
        assert.deepEqual(await limiter.available(base), { tpm: 500 });
        const l3 = await limiter.acquire({ ...base, consume: { tpm: 100 } });
        now += 60_000; // full again
        await l3.adjust({ tpm: -100 });
        await l3.commit();
        assert.deepEqual(await limiter.available(base), { tpm: 1_000 });
      });

      await t.step(
        "callback form commits on return, rolls back on throw and rethrows",
        async () => {
          const limits = [rpm(10), tpm(1_000)];
          const base = { entityId: "callback", resource: "gpt-4", limits };
          const result = await limiter.acquire(
            { ...base, consume: { rpm: 1, tpm: 100 } },
            async (lease) => {
              await lease.adjust({ tpm: 50 });
              return "answer";
            },
          );
          assert.equal(result, "answer");
          assert.deepEqual(await limiter.available(base), { rpm: 9, tpm: 850 });
          const boom = new Error("LLM failed");
          await assert.rejects(
            limiter.acquire({ ...base, consume: { rpm: 1, tpm: 300 } }, async (lease) => {
              await lease.adjust({ tpm: 1_000 });
              throw boom;
            }),
            (e) => e === boom,
          );
          assert.deepEqual(await limiter.available(base), { rpm: 9, tpm: 850 });
        },
      );

      await t.step("await using commits; explicit rollback gives everything back", async () => {
        const limits = [tpm(1_000)];
        const base = { entityId: "dispose", resource: "gpt-4", limits };
        {
          await using lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
          await lease.adjust({ tpm: 20 });
        }
        assert.deepEqual(await limiter.available(base), { tpm: 880 });
        {
          await using lease = await limiter.acquire({ ...base, consume: { tpm: 200 } });
          await lease.adjust({ tpm: 20 });
          await lease.rollback();
          assert.deepEqual(lease.consumed, { tpm: 0 });
        }
        assert.deepEqual(await limiter.available(base), { tpm: 880 });
      });

      await t.step(
        "closed leases: adjust throws, second commit/rollback does nothing",
        async () => {
          const limits = [tpm(1_000)];
          const base = { entityId: "closed", resource: "gpt-4", limits };
          const lease = await limiter.acquire({ ...base, consume: { tpm: 100 } });
          await lease.commit();
          await assert.rejects(lease.adjust({ tpm: 1 }), LeaseClosedError);
          meter.reset();
          await lease.commit();
          await lease.rollback();
          assert.equal(meter.count, 0);
          const l2 = await limiter.acquire({ ...base, consume: { tpm: 100 } });
          await l2.rollback();
          await assert.rejects(l2.adjust({ tpm: 1 }), LeaseClosedError);
          await l2.rollback();
          await l2.commit();
          assert.equal(l2.state, "rolled back");
          assert.deepEqual(await limiter.available(base), { tpm: 900 });
        },
      );

      await t.step("commit with no adjustment writes nothing", async () => {
        const base = { entityId: "no-write", resource: "gpt-4", limits: [tpm(1_000)] };
        const lease = await limiter.acquire({ ...base, consume: { tpm: 1 } });
        meter.reset();
        await lease.adjust({ tpm: 5 });
        await lease.adjust({ tpm: -5 });
        await lease.commit();
        assert.equal(meter.count, 0);
      });

      await t.step("200 concurrent acquires on a 50-token bucket admit exactly 50", async () => {
        const frozen = fresh({ timeoutMs: 30_000 });
        const base = { entityId: "concurrent", resource: "api", limits: [rpm(50)] };
        const results = await Promise.allSettled(
          Array.from({ length: 200 }, () => frozen.acquire({ ...base, consume: { rpm: 1 } })),
        );
        const admitted = results.filter((r) => r.status === "fulfilled").length;
        const other = results.filter(
          (r) => r.status === "rejected" && !(r.reason instanceof RateLimitExceeded),
        );
        assert.deepEqual(other, []);
        assert.equal(admitted, 50);
        assert.deepEqual(await frozen.available(base), { rpm: 0 });
      });

      await t.step(
        "a request larger than the capacity is impossible, distinguishably",
        async () => {
          const base = { entityId: "impossible", resource: "gpt-4", limits: [tpm(1_000)] };
          const e = await limiter.acquire({ ...base, consume: { tpm: 1_001 } }).catch((e) => e);
          assert.ok(e instanceof RateLimitExceeded);
          assert.equal(e.impossible, true);
          assert.equal(e.retryAfterSeconds, Infinity);
          assert.equal(e.retryAfterHeader, "");
          assert.equal(e.asDict().retry_after_seconds, null);
          assert.deepEqual(await limiter.available(base), { tpm: 1_000 });
        },
      );

      await t.step("changing limits of a live bucket keeps its state", async () => {
        const base = { entityId: "live", resource: "gpt-4" };
        await limiter.acquire({ ...base, limits: [tpm(1_000)], consume: { tpm: 200 } });
        // lower capacity clamps: 800 available -> 500
        assert.deepEqual(await limiter.available({ ...base, limits: [tpm(500)] }), { tpm: 500 });
        await limiter.acquire({ ...base, limits: [tpm(500)], consume: { tpm: 100 } });
        assert.deepEqual(await limiter.available({ ...base, limits: [tpm(500)] }), { tpm: 400 });
        // raised capacity keeps the balance; a limit added later starts full
        const raised = [tpm(2_000), rpm(10)];
        assert.deepEqual(await limiter.available({ ...base, limits: raised }), {
          tpm: 400,
          rpm: 10,
        });
        await limiter.acquire({ ...base, limits: raised, consume: { tpm: 100, rpm: 1 } });
        assert.deepEqual(await limiter.available({ ...base, limits: raised }), {
          tpm: 300,
          rpm: 9,
        });
        // a limit removed is ignored
        await limiter.acquire({ ...base, limits: [rpm(10)], consume: { rpm: 1 } });
        assert.deepEqual(await limiter.available({ ...base, limits: raised }), {
          tpm: 300,
          rpm: 8,
        });
      });

      await t.step(
        "bad input: ValidationError naming field, value and rule, nothing sent",
        async () => {
          meter.reset();
          const ok = {
            entityId: "valid",
            resource: "gpt-4",
            limits: [tpm(1_000)],
            consume: { tpm: 1 },
          };
          const cases: [Record<string, unknown>, string][] = [
            [{ entityId: "" }, "entityId"],
            [{ entityId: "a#b" }, "entityId"],
            [{ entityId: "x".repeat(257) }, "entityId"],
            [{ resource: "gpt#4" }, "resource"],
            [{ resource: "4gpt" }, "resource"],
            [{ consume: { tpm: -1 } }, "consume.tpm"],
            [{ consume: { tpm: NaN } }, "consume.tpm"],
            [{ consume: { tpm: Infinity } }, "consume.tpm"],
            [{ consume: { tpm: 1e300 } }, "consume.tpm"],
            [{ consume: { rpm: 1 } }, "consume.rpm"],
            [{ limits: [] }, "limits"],
            [{ limits: [tpm(1), tpm(2)] }, "limits[1].name"],
            [{ limits: [{ name: "tpm", capacity: 1 }] }, "limits[0]"],
            [{ failureMode: "maybe" }, "failureMode"],
          ];
          for (const [patch, field] of cases) {
            for (const failureMode of [FailureMode.FAIL_CLOSED, FailureMode.FAIL_OPEN]) {
              const e = await limiter.acquire({ ...ok, failureMode, ...patch } as never).catch((
                e,
              ) => e);
              assert.ok(e instanceof ValidationError, `${JSON.stringify(patch)}: ${e}`);
              assert.equal(e.field, field);
              assert.match(e.message, /^Invalid /);
            }
          }
          assert.throws(() => Limit.perMinute("tpm", 0), ValidationError);
          assert.throws(
            () => Limit.perMinute("tpm", 10, { burst: 5 }),
            /burst.*must be >= the rate/,
          );
          assert.throws(() => Limit.perMinute("t#m", 10), /limit.name/);
          assert.throws(() =>
            Limit.custom({ name: "x", capacity: 1, refillAmount: 1, refillPeriodSeconds: NaN })
          );
          const lease = await limiter.acquire(ok);
          meter.reset();
          await assert.rejects(lease.adjust({ tpm: NaN }), ValidationError);
          await assert.rejects(lease.adjust({ rpm: 1 }), /adjust.rpm/);
          assert.equal(meter.count, 0);
          await lease.commit();
        },
      );

      await t.step("one round trip: warm acquire + commit is one UpdateItem of 1 WCU", async () => {
        const base = {
          entityId: "cost",
          resource: "gpt-4",
          limits: [rpm(100), tpm(10_000)],
          cascade: false,
        };
        meter.reset();
        await (await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 100 } })).commit();
        // First use: the entity's metadata and the resource's controls, read once and cached.
        assert.deepEqual(meter.calls.map((c) => [c.command, c.tableWcu, c.indexWcu]), [
          ["BatchGetItemCommand", 0, 0],
          ["UpdateItemCommand", 1, 0],
        ]);
        meter.reset();
        await (await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 100 } })).commit();
        assert.deepEqual(meter.calls.map((c) => [c.command, c.tableWcu, c.indexWcu]), [
          ["UpdateItemCommand", 1, 0],
        ]);
      });

      await t.step("the deny cache refuses an exhausted bucket with no call", async () => {
        const base = { entityId: "deny", resource: "gpt-4", limits: [rpm(2)], cascade: false };
        await limiter.acquire({ ...base, consume: { rpm: 2 } });
        meter.reset();
        for (let i = 0; i < 5; i++) {
          const e = await limiter.acquire({ ...base, consume: { rpm: 1 } }).catch((e) => e);
          assert.ok(e instanceof RateLimitExceeded);
          assert.equal(e.retryAfterSeconds, 30);
        }
        assert.equal(meter.count, 0);
        // switched off, DynamoDB is asked every time
        const asking = fresh({ denyCache: false });
        await assert.rejects(asking.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
        await assert.rejects(asking.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
        assert.equal(meter.count, 3); // the new limiter's one controls read, then both refusals
        // the process's own rollback lowers what it knows
        now += 30_000;
        const lease = await limiter.acquire({ ...base, consume: { rpm: 1 } });
        await assert.rejects(limiter.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
        await lease.rollback();
        await (await limiter.acquire({ ...base, consume: { rpm: 1 } })).commit();
      });

      await t.step("another process's consumption is never over-admitted", async () => {
        const a = fresh(), b = fresh();
        const base = { entityId: "two-procs", resource: "gpt-4", limits: [rpm(3)], cascade: false };
        await a.acquire({ ...base, consume: { rpm: 1 } });
        await b.acquire({ ...base, consume: { rpm: 1 } });
        await a.acquire({ ...base, consume: { rpm: 1 } });
        await assert.rejects(b.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
        await assert.rejects(a.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
      });

      await t.step("failure modes when nothing listens", async () => {
        const dead = "http://127.0.0.1:9"; // discard port: nothing listens
        const closed = new RateLimiter({
          tableName,
          endpoint: dead,
          timeoutMs: 300,
          closeTimeoutMs: 200,
        });
        const started = Date.now();
        const e = await closed.acquire({
          entityId: "x",
          resource: "y",
          limits: [rpm(1)],
          consume: { rpm: 1 },
        })
          .catch((e) => e);
        assert.ok(e instanceof RateLimiterUnavailable, String(e));
        assert.ok(e.cause !== undefined);
        assert.ok(Date.now() - started < 2_000);
        const before = closed.pendingWrites; // 0, or 1 if a cut-off attempt must be verified
        const lease = await closed.acquire({
          entityId: "x",
          resource: "y",
          limits: [rpm(1)],
          consume: { rpm: 1 },
          failureMode: FailureMode.FAIL_OPEN,
        });
        assert.equal(lease.failedOpen, true);
        assert.ok(lease.cause instanceof RateLimiterUnavailable);
        await lease.adjust({ rpm: 5 });
        await lease.commit();
        // the request let through, and its adjustment, are counted once DynamoDB answers
        assert.equal(closed.pendingWrites, before + 2);
        await assert.rejects(closed.flush(100), /writes still waiting/);
        const open = new RateLimiter({
          tableName,
          endpoint: dead,
          timeoutMs: 300,
          failureMode: "fail_open",
          recordFailedOpen: false,
          closeTimeoutMs: 200,
        });
        assert.equal(
          (await open.acquire({
            entityId: "x",
            resource: "y",
            limits: [rpm(1)],
            consume: { rpm: 1 },
          }))
            .failedOpen,
          true,
        );
        assert.equal(open.pendingWrites, 0); // recordFailedOpen: false
        await assert.rejects(
          open.acquire({
            entityId: "x",
            resource: "y",
            limits: [rpm(1)],
            consume: { rpm: 1 },
            failureMode: "fail_closed",
          }),
          RateLimiterUnavailable,
        );
        await assert.rejects(
          open.available({ entityId: "x", resource: "y", limits: [rpm(1)] }),
          RateLimiterUnavailable,
        );
        // close() never throws because DynamoDB is down: it waits its bound, then reports
        const warnings: string[] = [];
        const warn = console.warn;
        console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
        try {
          const closing = Date.now();
          await closed.close();
          assert.ok(Date.now() - closing < 2_000, "bounded by closeTimeoutMs");
          assert.equal(closed.pendingWrites, before + 2, "what it left is still reported");
          await open.close();
        } finally {
          console.warn = warn;
        }
        assert.equal(warnings.length, open.pendingWrites > 0 ? 2 : 1);
        assert.match(warnings[0], /closed with \d+ write\(s\) still waiting for DynamoDB/);
      });

      await t.step("createTable tolerates concurrent creators", async () => {
        const name = uniqueTableName("race");
        const makers = Array.from(
          { length: 3 },
          () => new RateLimiter({ tableName: name, client, createTable: true, clock: () => now }),
        );
        const leases = await Promise.all(
          makers.map((m) =>
            m.acquire({ entityId: "race", resource: "r", limits: [rpm(10)], consume: { rpm: 1 } })
          ),
        );
        assert.equal(leases.length, 3);
        assert.deepEqual(
          await makers[0].available({ entityId: "race", resource: "r", limits: [rpm(10)] }),
          { rpm: 7 },
        );
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
