/**
 * Exactly once through outages, made deterministic: SDK middleware on a real DynamoDB Local
 * client drops requests before they leave, or loses the answer after DynamoDB applied them.
 */
import assert from "node:assert/strict";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { FailureMode, Limit, RateLimiter, RateLimiterUnavailable } from "../mod.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

type Fault = "none" | "refuse" | "lose-answer" | "lose-one-answer";

Deno.test({
  name: "outbox: writes kept back by an outage are applied exactly once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    let fault: Fault = "none";
    let lostAnswers = 0;
    client.middlewareStack.add(
      (next) => async (args) => {
        if (fault === "refuse") {
          throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1"), {
            code: "ECONNREFUSED",
          });
        }
        // "lose-answer": DynamoDB handles a bucket write, but no answer (success or error) comes
        // back (a config read before it, since controls are read on every call, is answered)
        const input = args.input as Record<string, unknown>;
        if (!("UpdateExpression" in input) && !("TransactItems" in input)) return next(args);
        const lose = fault === "lose-answer" || fault === "lose-one-answer";
        if (fault === "lose-one-answer") fault = "none";
        try {
          const out = await next(args);
          if (!lose) return out;
        } catch (err) {
          if (!lose) throw err;
        }
        lostAnswers++;
        throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
      },
      { step: "initialize", name: "faults" },
    );
    const tableName = uniqueTableName("outbox");
    const now = 1_800_000_000_000;
    const make = (failureMode: FailureMode) =>
      new RateLimiter({ tableName, client, clock: () => now, timeoutMs: 1_000, failureMode });
    const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)];
    const counters = async (entityId: string) => {
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#gpt-4" } },
          ConsistentRead: true,
        }),
      );
      return { rq: Number(Item?.rq?.N ?? 0), tpm: Number(Item?.u_tpm?.N ?? 0) / 1000 };
    };
    try {
      await new RateLimiter({ tableName, client }).createTable();

      await t.step("a lost answer is resent under the same id and counted once", async () => {
        const limiter = make(FailureMode.FAIL_CLOSED);
        const base = { entityId: "lost", resource: "gpt-4", limits, cascade: false };
        fault = "lose-one-answer";
        lostAnswers = 0;
        const lease = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
        assert.equal(lostAnswers, 1);
        await lease.commit();
        assert.deepEqual(await counters("lost"), { rq: 1, tpm: 500 });
        assert.deepEqual(await limiter.available(base), { rpm: 99, tpm: 9_500 });
      });

      await t.step("FAIL_CLOSED: an acquire that landed unseen is given back", async () => {
        const limiter = make(FailureMode.FAIL_CLOSED);
        const base = { entityId: "unseen", resource: "gpt-4", limits, cascade: false };
        fault = "lose-answer";
        await assert.rejects(
          limiter.acquire({ ...base, consume: { rpm: 1, tpm: 700 } }),
          RateLimiterUnavailable,
        );
        assert.equal(limiter.pendingWrites, 1);
        fault = "none";
        await limiter.flush(5_000);
        assert.deepEqual(await limiter.available(base), { rpm: 100, tpm: 10_000 });
        assert.deepEqual(await counters("unseen"), { rq: 0, tpm: 0 }); // taken, then given back
      });

      await t.step("FAIL_CLOSED: an acquire that never landed is marked, not counted", async () => {
        const limiter = make(FailureMode.FAIL_CLOSED);
        const base = { entityId: "never", resource: "gpt-4", limits, cascade: false };
        // the acquire's write is sent but its answer is lost on the first try, refused after
        fault = "refuse";
        await assert.rejects(
          limiter.acquire({ ...base, consume: { rpm: 1, tpm: 700 } }),
          RateLimiterUnavailable,
        );
        fault = "none";
        await limiter.flush(5_000);
        assert.deepEqual(await limiter.available(base), { rpm: 100, tpm: 10_000 });
      });

      await t.step(
        "commit and rollback in an outage wait in the outbox, then apply once",
        async () => {
          const limiter = make(FailureMode.FAIL_CLOSED);
          const base = { entityId: "commit", resource: "gpt-4", limits, cascade: false };
          const a = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
          const b = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 300 } });
          fault = "lose-answer"; // applied by DynamoDB, answer lost: the outbox must not repeat it
          await a.adjust({ tpm: 250 });
          await a.commit();
          assert.equal(a.state, "committed");
          fault = "refuse";
          await b.rollback();
          assert.equal(b.state, "rolled back");
          assert.equal(limiter.pendingWrites, 2);
          fault = "none";
          await limiter.flush(5_000);
          assert.equal(limiter.pendingWrites, 0);
          assert.deepEqual(await counters("commit"), { rq: 1, tpm: 750 });
          assert.deepEqual(await limiter.available(base), { rpm: 99, tpm: 9_250 });
        },
      );

      await t.step(
        "FAIL_OPEN: a request let through is counted once DynamoDB is back",
        async () => {
          const limiter = make(FailureMode.FAIL_OPEN);
          const base = { entityId: "open", resource: "gpt-4", limits, cascade: false };
          fault = "refuse";
          const lease = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
          assert.equal(lease.failedOpen, true);
          await lease.adjust({ tpm: 9_900 }); // the answer was long: 10,400 tokens
          await lease.commit();
          const other = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 100 } });
          await other.rollback();
          assert.equal(limiter.pendingWrites, 4);
          fault = "none";
          await limiter.flush(5_000);
          assert.deepEqual(await counters("open"), { rq: 1, tpm: 10_400 });
          assert.deepEqual(await limiter.available(base), { rpm: 99, tpm: -400 });
        },
      );

      await t.step("FAIL_OPEN: an acquire that landed unseen is not counted twice", async () => {
        const limiter = make(FailureMode.FAIL_OPEN);
        const base = { entityId: "open-landed", resource: "gpt-4", limits, cascade: false };
        fault = "lose-answer";
        const lease = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
        assert.equal(lease.failedOpen, true);
        fault = "none";
        await limiter.flush(5_000);
        assert.deepEqual(await counters("open-landed"), { rq: 1, tpm: 500 });
      });
      await t.step("a client that retries inside the SDK hides no landed attempt", async () => {
        // The caller's own client, with the SDK's retries on: its first attempt lands but the
        // answer is lost, the SDK's next attempts are refused, and the error it finally throws is
        // only the last one's ("connection refused"). The limiter must still count the refused
        // acquire as possibly landed, and give it back.
        const retrying = localClient(ddb.endpoint);
        let mode: "land-then-refuse" | "refuse" | "none" = "land-then-refuse";
        retrying.middlewareStack.add(
          (next) => async (args) => {
            // Only the bucket write is faulted (the config read before it is answered).
            if (!("UpdateExpression" in (args.input as Record<string, unknown>))) return next(args);
            if (mode === "land-then-refuse") {
              mode = "refuse";
              await next(args);
              throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
            }
            if (mode === "refuse") {
              throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
            }
            return next(args);
          },
          { step: "deserialize", name: "perAttemptFaults" },
        );
        const limiter = new RateLimiter({
          tableName,
          client: retrying,
          clock: () => now,
          timeoutMs: 1_000,
        });
        const base = { entityId: "sdk-retries", resource: "gpt-4", limits, cascade: false };
        await assert.rejects(
          limiter.acquire({ ...base, consume: { rpm: 1, tpm: 400 } }),
          RateLimiterUnavailable,
        );
        assert.deepEqual(await counters("sdk-retries"), { rq: 1, tpm: 400 }); // it did land
        assert.equal(limiter.pendingWrites, 1);
        mode = "none";
        await limiter.flush(5_000);
        assert.deepEqual(await counters("sdk-retries"), { rq: 0, tpm: 0 }); // and was given back
        retrying.destroy();
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
