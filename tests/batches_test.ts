/**
 * Token batches on DynamoDB Local: fewer writes, exact books after the batches go back, never an
 * over-admission across processes, a bounded under-admission, adjust and rollback inside a batch,
 * cascade, an outage while a batch is held, and a process killed while it holds one.
 */

import assert from "node:assert/strict";
import { DeleteTableCommand, type DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import {
  ConfigurationError,
  Limit,
  RateLimiter,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { Meter } from "../scripts/meter.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;

async function counters(client: DynamoDBClient, tableName: string, entityId: string) {
  const { Item } = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#api" } },
      ConsistentRead: true,
    }),
  );
  return {
    rq: Number(Item?.rq?.N ?? 0),
    rpm: Number(Item?.u_rpm?.N ?? 0) / 1000,
    tpm: Number(Item?.u_tpm?.N ?? 0) / 1000,
  };
}

Deno.test({
  name: "token batches on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("batches");
    const clock = () => T0; // frozen: no refill, so admissions are exact to count
    try {
      await new RateLimiter({ tableName, client }).createTable();

      await t.step("bad batch options are ValidationErrors naming the field", () => {
        assert.throws(
          () => new RateLimiter({ tableName, client, batches: { maxShare: 0 } }),
          (e) => e instanceof ValidationError && e.field === "batches.maxShare",
        );
        assert.throws(
          () => new RateLimiter({ tableName, client, batches: { idleMs: -1 } }),
          (e) => e instanceof ValidationError && e.field === "batches.idleMs",
        );
        const limiter = new RateLimiter({ tableName, client });
        return assert.rejects(
          limiter.acquire({
            entityId: "v",
            resource: "api",
            limits: [Limit.perMinute("rpm", 10)],
            consume: { rpm: 1 },
            batch: "yes" as unknown as boolean,
          }),
          (e) => e instanceof ValidationError && e.field === "batch",
        );
      });

      await t.step("one process: far fewer writes, exact books once returned", async () => {
        const own = localClient(ddb.endpoint);
        const meter = new Meter(own);
        const limiter = new RateLimiter({ tableName, client: own, clock, batches: true });
        const limits = [Limit.perMinute("rpm", 100_000), Limit.perMinute("tpm", 10_000_000)];
        for (let i = 0; i < 300; i++) {
          await (await limiter.acquire({
            entityId: "one",
            resource: "api",
            limits,
            consume: { rpm: 1, tpm: 10 },
            cascade: false,
          })).commit();
        }
        const writes = meter.calls.filter((c) => c.command === "UpdateItemCommand").length;
        assert.ok(writes <= 30, `${writes} writes for 300 requests`);
        console.log(`BATCHES one process: ${writes} writes for 300 requests`);
        assert.ok(limiter.held({ entityId: "one", resource: "api" }).rpm! >= 0);
        await limiter.close(); // returns the batch
        assert.deepEqual(await counters(client, tableName, "one"), {
          rq: 300,
          rpm: 300,
          tpm: 3000,
        });
        own.destroy();
      });

      await t.step(
        "four processes never over-admit; under-admission within the bound",
        async () => {
          const capacity = 200;
          const limits = [Limit.perMinute("rpm", capacity)];
          const share = 0.1;
          const limiters = Array.from(
            { length: 4 },
            () =>
              new RateLimiter({
                tableName,
                client: localClient(ddb.endpoint),
                clock,
                batches: { maxShare: share },
              }),
          );
          let admitted = 0, refused = 0;
          await Promise.all(limiters.map(async (limiter) => {
            for (let i = 0; i < 120; i++) {
              try {
                const lease = await limiter.acquire({
                  entityId: "four",
                  resource: "api",
                  limits,
                  consume: { rpm: 1 },
                  cascade: false,
                });
                admitted++;
                await lease.commit();
              } catch (e) {
                if (!(e instanceof RateLimitExceeded)) throw e;
                refused++;
              }
            }
          }));
          // Never more than the bucket holds; less only by what other processes held at a refusal.
          assert.ok(admitted <= capacity, `admitted ${admitted} > ${capacity}`);
          const bound = capacity - 4 * share * capacity;
          assert.ok(admitted >= bound, `admitted ${admitted} < ${bound} (refused ${refused})`);
          console.log(
            `BATCHES four processes: ${admitted} admitted of ${capacity}, ${refused} refused`,
          );
          await Promise.all(limiters.map((l) => l.close()));
          const books = await counters(client, tableName, "four");
          assert.deepEqual(books, { rq: admitted, rpm: admitted, tpm: 0 });
        },
      );

      await t.step("adjust and rollback inside a batch: exact books", async () => {
        const limiter = new RateLimiter({ tableName, client, clock, batches: true });
        const limits = [Limit.perMinute("rpm", 1_000), Limit.perMinute("tpm", 1_000_000)];
        const base = { entityId: "adj", resource: "api", limits, cascade: false };
        const a = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
        await a.adjust({ tpm: 250 }); // used 750
        await a.commit();
        const b = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
        await b.adjust({ tpm: -400 }); // used 100
        await b.commit();
        const c = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
        await c.rollback();
        await limiter.close();
        assert.deepEqual(await counters(client, tableName, "adj"), { rq: 2, rpm: 2, tpm: 850 });
        const fresh = new RateLimiter({ tableName, client, clock });
        assert.deepEqual(await fresh.available(base), { rpm: 998, tpm: 999_150 });
        await fresh.close();
      });

      await t.step("cascade: the key's and the project's batches, both books exact", async () => {
        const limiter = new RateLimiter({ tableName, client, clock, batches: true });
        await limiter.createEntity({ entityId: "proj-b" });
        await limiter.createEntity({ entityId: "key-b", parentId: "proj-b", cascade: true });
        const limits = [Limit.perMinute("rpm", 10_000)];
        for (let i = 0; i < 50; i++) {
          await (await limiter.acquire({
            entityId: "key-b",
            resource: "api",
            limits,
            consume: { rpm: 1 },
          })).commit();
        }
        await limiter.close();
        assert.deepEqual(await counters(client, tableName, "key-b"), { rq: 50, rpm: 50, tpm: 0 });
        assert.deepEqual(await counters(client, tableName, "proj-b"), { rq: 50, rpm: 50, tpm: 0 });
      });

      await t.step("an outage while a batch is held: served from it, returned once", async () => {
        const own = localClient(ddb.endpoint);
        let down = false;
        own.middlewareStack.add((next) => (args) => {
          if (down) {
            throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
          }
          return next(args);
        }, { step: "initialize", name: "outage" });
        const limiter = new RateLimiter({
          tableName,
          client: own,
          clock,
          timeoutMs: 300,
          batches: { idleMs: 60_000, maxAgeMs: 60_000 },
        });
        const limits = [Limit.perMinute("rpm", 10_000)];
        const base = { entityId: "out", resource: "api", limits, cascade: false };
        for (let i = 0; i < 9; i++) {
          await (await limiter.acquire({ ...base, consume: { rpm: 1 } })).commit();
        }
        const held = limiter.held(base).rpm!;
        assert.ok(held >= 1, `holds ${held}`);
        down = true;
        for (let i = 0; i < held; i++) {
          const lease = await limiter.acquire({ ...base, consume: { rpm: 1 } });
          assert.equal(lease.failedOpen, false); // from the batch, no call
          await lease.commit();
        }
        const closing = limiter.close(); // the return waits in the outbox
        await new Promise((r) => setTimeout(r, 400));
        down = false;
        await closing;
        assert.equal(limiter.pendingWrites, 0);
        const served = 9 + held;
        assert.deepEqual(await counters(client, tableName, "out"), {
          rq: served,
          rpm: served,
          tpm: 0,
        });
        own.destroy();
      });

      await t.step("a return that fails for good is reported, not dropped", async () => {
        const gone = uniqueTableName("batches_gone");
        const limiter = new RateLimiter({ tableName: gone, client, clock, batches: true });
        await limiter.createTable();
        await (await limiter.acquire({
          entityId: "gone",
          resource: "api",
          limits: [Limit.perMinute("rpm", 1_000)],
          consume: { rpm: 1 },
          cascade: false,
        })).commit();
        await client.send(new DeleteTableCommand({ TableName: gone }));
        const warnings: string[] = [];
        const warn = console.warn;
        console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
        try {
          await limiter.close();
        } finally {
          console.warn = warn;
        }
        assert.equal(limiter.unresolvedWrites.length, 1);
        assert.match(limiter.unresolvedWrites[0].label, /^batch return gone#api/);
        assert.ok(limiter.unresolvedWrites[0].error instanceof ConfigurationError);
        assert.equal(warnings.length, 1);
        assert.match(warnings[0], /1 unresolved/);
      });

      await t.step("a process killed while it holds a batch loses at most the batch", async () => {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", new URL("./_batch_child.ts", import.meta.url).pathname],
          env: { ENDPOINT: ddb.endpoint, TABLE: tableName, NOW: String(T0) },
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let out = "";
        while (!out.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          out += value;
        }
        const { served, held } = JSON.parse(out.split("\n")[0]);
        child.kill("SIGKILL");
        await child.status;
        reader.releaseLock();
        await child.stdout.cancel().catch(() => {});
        const books = await counters(client, tableName, "killed");
        // Taken from the bucket: what it served plus what it held; never less than it served.
        assert.equal(books.rpm, served + held, JSON.stringify({ books, served, held }));
        assert.ok(books.rpm >= served);
        const limiter = new RateLimiter({ tableName, client, clock });
        const available = await limiter.available({
          entityId: "killed",
          resource: "api",
          limits: [Limit.perMinute("rpm", 1_000)],
        });
        assert.equal(available.rpm, 1_000 - served - held);
        await limiter.close();
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
