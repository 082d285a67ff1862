/**
 * A second reading of the write engine (receipts, the outbox, token batches): each step shows one
 * defect found in review, on DynamoDB Local, with faults injected by SDK middleware on a real
 * client (requests refused before they leave, or answers lost after DynamoDB applied them).
 */
import assert from "node:assert/strict";
import { type DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import {
  FailureMode,
  Limit,
  RateLimiter,
  RateLimiterUnavailable,
  RateLimitExceeded,
  UncertainOutcome,
} from "../mod.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

async function counters(client: DynamoDBClient, tableName: string, entityId: string) {
  const { Item } = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#api" } },
      ConsistentRead: true,
    }),
  );
  return { rq: Number(Item?.rq?.N ?? 0), rpm: Number(Item?.u_rpm?.N ?? 0) / 1000 };
}

/** The entity ids a request writes (UpdateItem, or every item of a transaction). */
function entitiesOf(input: unknown): string[] {
  const i = input as {
    Key?: { PK?: { S?: string } };
    TransactItems?: { Update?: { Key?: { PK?: { S?: string } } } }[];
  };
  // Bucket writes only (reads of the entities' config pass).
  const pks = i.TransactItems
    ? i.TransactItems.map((t) => t.Update?.Key?.PK?.S)
    : (input as { UpdateExpression?: string }).UpdateExpression
    ? [i.Key?.PK?.S]
    : [];
  return pks.filter((pk): pk is string => !!pk).map((pk) => pk.replace(/^ENTITY#/, ""));
}

const refused = () => Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
const hangUp = () => Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });

Deno.test({
  name: "review: the write engine keeps its promises",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("review");
    const now = 1_800_000_000_000;
    const limits = [Limit.perMinute("rpm", 100)];
    try {
      await new RateLimiter({ tableName, client }).createTable();

      /**
       * An acquire (or a batch take) on a key and its project lands unseen; the outbox gives it
       * back while the project's item refuses for a while, so its entry runs twice.
       */
      const giveBackInterrupted = async (key: string, project: string, batches: boolean) => {
        const own = localClient(ddb.endpoint);
        // "lose": every answer lost after DynamoDB applied the request; "project-down": the
        // project's item refused for a while (the key's item answers).
        let fault: "lose" | "project-down" | "none" = "lose";
        let downUntil = 0;
        own.middlewareStack.add((next) => async (args) => {
          if (fault === "lose" && entitiesOf(args.input).length > 0) {
            await next(args).catch(() => {});
            throw hangUp();
          }
          if (fault === "project-down" && entitiesOf(args.input).includes(project)) {
            if (downUntil === 0) downUntil = Date.now() + 600;
            if (Date.now() < downUntil) throw refused();
          }
          return next(args);
        }, { step: "initialize", name: "faults" });
        const setup = new RateLimiter({ tableName, client, clock: () => now });
        await setup.createEntity({ entityId: project });
        await setup.createEntity({ entityId: key, parentId: project, cascade: true });
        await setup.close();
        const limiter = new RateLimiter({
          tableName,
          client: own,
          clock: () => now,
          timeoutMs: 300,
          batches,
        });
        const request = { entityId: key, resource: "api", limits, consume: { rpm: 5 } };
        await assert.rejects(limiter.acquire(request), RateLimiterUnavailable);
        // It landed on both items, unseen: the outbox must give it back on both, once.
        const landed = await counters(client, tableName, key);
        assert.ok(landed.rpm >= 5, JSON.stringify(landed));
        assert.deepEqual(await counters(client, tableName, project), landed);
        fault = "project-down";
        await limiter.flush(5_000);
        assert.deepEqual(await counters(client, tableName, key), { rq: 0, rpm: 0 });
        assert.deepEqual(await counters(client, tableName, project), { rq: 0, rpm: 0 });
        await limiter.close();
        own.destroy();
      };

      await t.step(
        "a give-back to a key and its project, interrupted on the project, is applied once on each",
        () => giveBackInterrupted("key-g", "proj-g", false),
      );

      await t.step(
        "the same for a batch take: the give-back keeps one operation across the outbox's runs",
        () => giveBackInterrupted("key-h", "proj-h", true),
      );
      await t.step("close() during a batch take in flight returns that batch too", async () => {
        const own = localClient(ddb.endpoint);
        let delay = 300; // the first bucket write (the take) answers late
        own.middlewareStack.add((next) => async (args) => {
          if (delay > 0 && entitiesOf(args.input).length > 0) {
            const ms = delay;
            delay = 0;
            const out = await next(args);
            await new Promise((r) => setTimeout(r, ms));
            return out;
          }
          return next(args);
        }, { step: "initialize", name: "slow" });
        const limiter = new RateLimiter({
          tableName,
          client: own,
          clock: () => now,
          batches: { idleMs: 60_000, maxAgeMs: 60_000 },
        });
        const base = { entityId: "closing", resource: "api", cascade: false };
        const big = [Limit.perMinute("rpm", 1_000)];
        const acquiring = limiter.acquire({ ...base, limits: big, consume: { rpm: 1 } });
        await new Promise((r) => setTimeout(r, 100)); // the take is in flight
        await limiter.close();
        const lease = await acquiring;
        assert.equal(lease.failedOpen, false);
        // Closed: the request it served is counted, and nothing more is held.
        assert.deepEqual(await counters(client, tableName, "closing"), { rq: 1, rpm: 1 });
        own.destroy();
      });
      await t.step(
        "an acquire refused as exceeded after a lost attempt is cancelled: a late copy never counts",
        async () => {
          const own = localClient(ddb.endpoint);
          let hold = false;
          let release: (() => Promise<unknown>) | undefined;
          own.middlewareStack.add((next) => (args) => {
            if (hold && entitiesOf(args.input).length > 0) {
              // This attempt sits in a socket: DynamoDB gets it later; the client sees a reset.
              hold = false;
              release = () => next(args);
              return Promise.reject(hangUp());
            }
            return next(args);
          }, { step: "initialize", name: "hold" });
          const ten = [Limit.perMinute("rpm", 10)];
          const base = { entityId: "late", resource: "api", limits: ten, cascade: false };
          const mine = new RateLimiter({ tableName, client: own, clock: () => now });
          const other = new RateLimiter({ tableName, client, clock: () => now });
          await mine.acquire({ ...base, consume: { rpm: 5 } });
          const theirs = await other.acquire({ ...base, consume: { rpm: 5 } }); // now empty
          hold = true;
          // Planned on what `mine` knew (5 left): the held attempt, then its resend, refused.
          await assert.rejects(mine.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
          await theirs.rollback(); // 5 free again: the held copy's condition now holds
          await mine.flush(5_000);
          await release!().catch(() => {}); // the late copy arrives
          await mine.flush(5_000);
          // Only the first request of `mine` is counted: the refused one never is.
          assert.deepEqual(await counters(client, tableName, "late"), { rq: 1, rpm: 5 });
          await mine.close();
          await other.close();
          own.destroy();
        },
      );
      await t.step(
        "a refusal that took several SDK attempts counts as in doubt (an earlier attempt may land)",
        async () => {
          // The caller's own client, with the SDK's retries on: its first attempt sits in a socket,
          // the SDK's second is refused by its condition, and the refusal is what the limiter sees.
          const retrying = localClient(ddb.endpoint);
          let hold = false;
          let release: (() => Promise<unknown>) | undefined;
          retrying.middlewareStack.add((next) => (args) => {
            if (hold && entitiesOf(args.input).length > 0) {
              hold = false;
              release = () => next(args);
              return Promise.reject(hangUp());
            }
            return next(args);
          }, { step: "deserialize", name: "holdOneAttempt" });
          const ten = [Limit.perMinute("rpm", 10)];
          const base = { entityId: "sdk-late", resource: "api", limits: ten, cascade: false };
          const mine = new RateLimiter({ tableName, client: retrying, clock: () => now });
          const other = new RateLimiter({ tableName, client, clock: () => now });
          await mine.acquire({ ...base, consume: { rpm: 5 } });
          const theirs = await other.acquire({ ...base, consume: { rpm: 5 } }); // now empty
          hold = true;
          await assert.rejects(mine.acquire({ ...base, consume: { rpm: 1 } }), RateLimitExceeded);
          assert.ok(release, "the first attempt was held");
          await theirs.rollback();
          await mine.flush(5_000);
          await release().catch(() => {}); // the SDK's first attempt arrives late
          await mine.flush(5_000);
          assert.deepEqual(await counters(client, tableName, "sdk-late"), { rq: 1, rpm: 5 });
          await mine.close();
          await other.close();
          retrying.destroy();
        },
      );
      await t.step(
        "an acquire whose outcome became unknowable within its call follows the failure mode",
        async () => {
          for (const mode of [FailureMode.FAIL_OPEN, FailureMode.FAIL_CLOSED]) {
            const entityId = `unknowable-${mode}`;
            const base = { entityId, resource: "api", limits, cascade: false };
            const busy = new RateLimiter({ tableName, client, clock: () => now });
            const own = localClient(ddb.endpoint);
            let lose = true;
            own.middlewareStack.add((next) => async (args) => {
              if (lose && entitiesOf(args.input).length > 0) {
                lose = false;
                await next(args); // applied, but the answer is lost...
                // ...and before the resend, the item takes more writes than the bound allows,
                // so its receipt is swept: nobody can tell any more whether it landed.
                for (let i = 0; i < 40; i++) await busy.acquire({ ...base, consume: { rpm: 0 } });
                throw hangUp();
              }
              return next(args);
            }, { step: "initialize", name: "lose" });
            const limiter = new RateLimiter({
              tableName,
              client: own,
              clock: () => now,
              failureMode: mode,
            });
            // A commit whose outcome becomes unknowable does not throw either: the outbox reports.
            lose = false;
            const lease = await limiter.acquire({ ...base, consume: { rpm: 1 } });
            lose = true;
            await lease.adjust({ rpm: 1 });
            await lease.commit();
            await assert.rejects(limiter.flush(5_000), /could not be resolved/);
            base.entityId = `${entityId}-acquire`; // a fresh item for the acquire below
            lose = true;
            const acquiring = limiter.acquire({ ...base, consume: { rpm: 1 } });
            if (mode === FailureMode.FAIL_OPEN) {
              assert.equal((await acquiring).failedOpen, true);
            } else {
              await assert.rejects(acquiring, RateLimiterUnavailable);
            }
            // Reported, never guessed.
            await assert.rejects(limiter.flush(5_000), /could not be resolved/);
            assert.ok(limiter.unresolvedWrites.some((w) => w.error instanceof UncertainOutcome));
            await limiter.close();
            await busy.close();
            own.destroy();
          }
        },
      );
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
