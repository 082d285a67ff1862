/**
 * The write-ceiling harness (`src/testing/ceiling.ts`): its accounting as pure logic, then the
 * proxy in front of a real DynamoDB Local — single writes, transactions, batches, the errors the
 * SDK and the limiter see, a hot project stalling at the ceiling, and a clean stop.
 */
import assert from "node:assert/strict";
import {
  BatchWriteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { chargesOf, ItemBuckets } from "../src/testing/ceiling.ts";
import { startWriteCeiling, type WriteCeiling } from "../src/testing/mod.ts";
import { isRetryable, mayHaveApplied } from "../src/retry.ts";
import { ValidationError } from "../src/errors.ts";
import { Limit, RateLimiter } from "../mod.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("ItemBuckets: a burst of one second, refilled per ms, all or nothing", () => {
  const b = new ItemBuckets(100, 100);
  for (let i = 0; i < 100; i++) assert.deepEqual(b.take(["a"], [1], 0), []);
  assert.deepEqual(b.take(["a"], [1], 0), ["a"]);
  assert.deepEqual(b.take(["a"], [1], 9), ["a"], "0.9 WCU after 9 ms: not enough");
  assert.deepEqual(b.take(["a"], [1], 10), [], "1 WCU after 10 ms");
  // A transaction of a full item and an empty one: refused whole, the full one not charged.
  assert.deepEqual(b.take(["b", "a"], [2, 2], 10), ["a"]);
  for (let i = 0; i < 50; i++) assert.deepEqual(b.take(["b"], [2], 10), []);
  assert.deepEqual(b.take(["b"], [2], 10), ["b"]);
  // An idle item refills to its burst, never past it.
  assert.deepEqual(b.take(["a"], [100], 1_000_000), []);
  assert.deepEqual(b.take(["a"], [1], 1_000_000), ["a"]);
  assert.throws(() => new ItemBuckets(0, 1), ValidationError);
  assert.throws(() => new ItemBuckets(10, 1.5), /burst.*positive whole number/);
});

Deno.test("chargesOf: 1 WCU a single write or batch item, 2 per transaction item", async () => {
  const keyOf = (_t: string, item: Record<string, unknown>) =>
    Promise.resolve({ PK: item.PK, SK: item.SK });
  const k = { PK: { S: "a" }, SK: { S: "b" } };
  const swapped = { SK: { S: "b" }, PK: { S: "a" } };
  const u = await chargesOf("UpdateItem", { TableName: "t", Key: k }, keyOf);
  const p = await chargesOf(
    "PutItem",
    { TableName: "t", Item: { ...swapped, x: { N: "1" } } },
    keyOf,
  );
  assert.deepEqual(u, p, "the same item, whatever the attribute order");
  assert.equal(u[0].wcu, 1);
  const tx = await chargesOf("TransactWriteItems", {
    TransactItems: [{ Update: { TableName: "t", Key: k } }, {
      ConditionCheck: { TableName: "u", Key: k },
    }],
  }, keyOf);
  assert.deepEqual(tx.map((c) => [c.table, c.wcu]), [["t", 2], ["u", 2]]);
  const batch = await chargesOf("BatchWriteItem", {
    RequestItems: { t: [{ PutRequest: { Item: k } }, { DeleteRequest: { Key: swapped } }] },
  }, keyOf);
  assert.deepEqual(batch.map((c) => c.wcu), [1, 1]);
  assert.deepEqual(await chargesOf("GetItem", { TableName: "t", Key: k }, keyOf), []);
});

/** A table with the limiter's key schema, created through the proxy. */
async function table(client: DynamoDBClient): Promise<string> {
  const tableName = uniqueTableName("ceiling");
  const limiter = new RateLimiter({ tableName, client });
  await limiter.createTable();
  await limiter.close();
  return tableName;
}

const key = (pk: string) => ({ PK: { S: pk }, SK: { S: "#BUCKET#x" } });
const bump = (TableName: string, pk: string) =>
  new UpdateItemCommand({
    TableName,
    Key: key(pk),
    UpdateExpression: "ADD n :one",
    ExpressionAttributeValues: { ":one": { N: "1" } },
  });

async function countOf(client: DynamoDBClient, TableName: string, pk: string): Promise<number> {
  const out = await client.send(
    new GetItemCommand({ TableName, Key: key(pk), ConsistentRead: true }),
  );
  return Number(out.Item?.n?.N ?? 0);
}

/** A proxy at `wcuPerSecond`, and a client of it with the SDK's own retries off. */
async function withCeiling(
  endpoint: string,
  wcuPerSecond: number,
  fn: (ceiling: WriteCeiling, client: DynamoDBClient) => Promise<void>,
) {
  await using ceiling = await startWriteCeiling({ upstream: endpoint, wcuPerSecond });
  const client = new DynamoDBClient({
    endpoint: ceiling.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
  try {
    await fn(ceiling, client);
  } finally {
    client.destroy();
  }
}

dynamoTest("write ceiling in front of DynamoDB Local", async (t, { ddb, client: direct }) => {
  await t.step("an UpdateItem loop is throttled above the ceiling, never below", async () => {
    // 20 WCU/s: one caller on a shared 2-core machine outruns it many times over.
    await withCeiling(ddb.endpoint, 20, async (ceiling, client) => {
      const tableName = await table(client);
      // The burst (one second's worth) passes at once; then 15 writes a second, below the
      // refill of 20, pass every one although the bucket starts empty.
      for (let i = 0; i < 20; i++) await client.send(bump(tableName, "slow"));
      for (let i = 0; i < 30; i++) {
        await new Promise((r) => setTimeout(r, 67));
        await client.send(bump(tableName, "slow"));
      }
      assert.equal(ceiling.stats().throttled, 0);
      assert.equal(await countOf(direct, tableName, "slow"), 50);
      // Above it: as fast as one caller can, for 1.5 s.
      let ok = 0, refused = 0;
      const start = performance.now();
      while (performance.now() - start < 1500) {
        try {
          await client.send(bump(tableName, "fast"));
          ok++;
        } catch (err) {
          const e = err as Error & { $metadata: { httpStatusCode?: number } };
          assert.equal(e.name, "ProvisionedThroughputExceededException");
          assert.equal(e.$metadata.httpStatusCode, 400);
          assert.ok(isRetryable(e) && !mayHaveApplied(e), "retried, and known not applied");
          refused++;
        }
      }
      const seconds = (performance.now() - start) / 1000;
      const stored = await countOf(direct, tableName, "fast");
      console.log(`  ${ok} writes passed, ${refused} refused in ${seconds.toFixed(2)} s`);
      assert.equal(stored, ok, "a refused write never reached DynamoDB");
      assert.ok(refused > 0);
      assert.ok(ok >= 20 + Math.floor(20 * (seconds - 0.1)), `it runs at the ceiling: ${ok}`);
      assert.ok(ok <= 20 + Math.ceil(20 * seconds), `${ok} writes in ${seconds} s`);
    });
  });

  await t.step("a transaction costs 2 WCU an item, and is refused whole", async () => {
    await withCeiling(ddb.endpoint, 10, async (ceiling, client) => {
      const tableName = await table(client);
      const tx = (...pks: string[]) =>
        new TransactWriteItemsCommand({
          TransactItems: pks.map((pk) => ({
            Update: {
              TableName: tableName,
              Key: key(pk),
              UpdateExpression: "ADD n :one",
              ExpressionAttributeValues: { ":one": { N: "1" } },
            },
          })),
        });
      for (let i = 0; i < 5; i++) await client.send(tx("a", "b")); // 10 WCU each: the burst
      // (The table's creation wrote its schema version item through the ceiling too: 1 WCU.)
      const items = [...ceiling.stats().items.values()].filter((s) => !s.key.includes("SYSTEM"))
        .map((s) => s.wcu);
      assert.deepEqual(items, [10, 10]);
      const err = await client.send(tx("c", "a")).then(() => undefined, (e) => e);
      assert.equal(err?.name, "TransactionCanceledException");
      assert.deepEqual(err.CancellationReasons.map((r: { Code: string }) => r.Code), [
        "None",
        "ThrottlingError",
      ]);
      assert.ok(isRetryable(err) && !mayHaveApplied(err), "retried, and known not applied");
      assert.equal(await countOf(direct, tableName, "c"), 0, "nothing of it was applied");
      const stats = ceiling.stats();
      assert.equal(stats.throttledByOperation.TransactWriteItems, 1);
      assert.equal(
        [...stats.items.values()].find((s) => s.key.includes('"c"'))?.wcu ?? 0,
        0,
        "c not charged",
      );
    });
  });

  await t.step("a batch sends back the items over the ceiling as UnprocessedItems", async () => {
    await withCeiling(ddb.endpoint, 2, async (ceiling, client) => {
      const tableName = await table(client);
      await client.send(bump(tableName, "full"));
      await client.send(bump(tableName, "full"));
      const put = (pk: string) => ({ PutRequest: { Item: { ...key(pk), n: { N: "7" } } } });
      const out = await client.send(
        new BatchWriteItemCommand({ RequestItems: { [tableName]: [put("full"), put("new")] } }),
      );
      assert.deepEqual(out.UnprocessedItems?.[tableName], [put("full")]);
      assert.equal(await countOf(direct, tableName, "new"), 7);
      assert.equal(await countOf(direct, tableName, "full"), 2);
      assert.equal(ceiling.stats().unprocessedItems, 1);
      const all = await client.send(
        new BatchWriteItemCommand({ RequestItems: { [tableName]: [put("full")] } }),
      )
        .then(() => undefined, (e) => e);
      assert.equal(all?.name, "ProvisionedThroughputExceededException");
    });
  });

  await t.step("the limiter with its default client retries within its deadline", async () => {
    await withCeiling(ddb.endpoint, 5, async (ceiling, client) => {
      const tableName = await table(client);
      await using limiter = new RateLimiter({
        tableName,
        endpoint: ceiling.endpoint,
        timeoutMs: 5_000,
      });
      const limits = [Limit.perMinute("rpm", 1_000)];
      const start = performance.now();
      for (let i = 0; i < 10; i++) {
        await (await limiter.acquire({ entityId: "k", resource: "x", limits, consume: { rpm: 1 } }))
          .commit();
      }
      const seconds = (performance.now() - start) / 1000;
      const { throttled, items } = ceiling.stats();
      console.log(
        `  10 acquires in ${seconds.toFixed(2)} s, ${throttled} throttled answers retried`,
      );
      assert.ok(throttled > 0);
      assert.ok(seconds >= 0.9, "5 writes past the burst wait for 1 s of refill");
      const wcu = [...items.values()].find((s) => s.key.includes("ENTITY#k"))?.wcu;
      assert.ok(wcu !== undefined && wcu >= 10 && wcu <= 5 + Math.ceil(5 * seconds));
    });
  });

  await t.step("a hot project stalls at the ceiling", async () => {
    const run = async (endpoint: string, ms: number) => {
      const tableName = uniqueTableName("hot");
      const limits = [Limit.perMinute("rpm", 10_000_000), Limit.perMinute("tpm", 1_000_000_000)];
      const setup = new RateLimiter({ tableName, endpoint, createTable: true });
      await setup.createEntity({ entityId: "proj" });
      await setup.setLimits({ entityId: "proj", limits });
      for (let k = 0; k < 10; k++) {
        await setup.createEntity({ entityId: `key-${k}`, parentId: "proj", cascade: true });
      }
      await setup.close();
      const workers = Array.from(
        { length: 4 },
        () => new RateLimiter({ tableName, endpoint, timeoutMs: 10_000 }),
      );
      let admitted = 0, failed = 0;
      const until = performance.now() + ms;
      const start = performance.now();
      await Promise.all(workers.map(async (limiter, w) => {
        for (let i = w; performance.now() < until; i += 4) {
          try {
            const lease = await limiter.acquire({
              entityId: `key-${i % 10}`,
              resource: "llm",
              limits,
              consume: { rpm: 1, tpm: 500 },
            });
            await lease.commit();
            admitted++;
          } catch {
            failed++;
          }
        }
      }));
      const seconds = (performance.now() - start) / 1000;
      for (const l of workers) await l.close();
      return { admitted, failed, seconds, perSecond: admitted / seconds };
    };
    // The 100 WCU/s is about what this load reaches on a busy 2-core machine without
    // any ceiling; 20 WCU/s (10 requests a second) keeps the gap plain on any machine.
    const WCU = 20;
    await using ceiling = await startWriteCeiling({ upstream: ddb.endpoint, wcuPerSecond: WCU });
    const free = await run(ddb.endpoint, 3_000);
    ceiling.reset();
    const hot = await run(ceiling.endpoint, 3_000);
    const stats = ceiling.stats();
    const project = [...stats.items.values()]
      .find((s) => s.key.includes("ENTITY#proj") && s.key.includes("#BUCKET#"));
    console.log(
      `  without ceiling: ${free.perSecond.toFixed(0)} admitted/s; at ${WCU} WCU/s per item: ` +
        `${hot.perSecond.toFixed(1)} admitted/s (${hot.admitted} in ${
          hot.seconds.toFixed(1)
        } s), ` +
        `${stats.throttled} throttled answers, the project's bucket charged ${project?.wcu} WCU`,
    );
    assert.equal(hot.failed, 0, "the limiter rode out the throttling within its deadline");
    assert.ok(stats.throttled > 0);
    // Each admitted request wrote the project's bucket at 2 WCU at least, and the item took at
    // most its burst plus the refill: at most WCU/2 requests plus WCU/2 a second.
    const most = WCU / 2 + (WCU / 2) * hot.seconds;
    assert.ok(hot.admitted <= most, `${hot.admitted} in ${hot.seconds} s, at most ${most}`);
    assert.ok(project !== undefined && project.wcu <= WCU + WCU * hot.seconds + 1);
    assert.ok(hot.admitted >= most / 2, `it runs near the ceiling, not far under: ${hot.admitted}`);
    assert.ok(free.perSecond >= 2 * hot.perSecond, "the same load runs far faster without it");
  });

  await t.step("wcuPerSecond can be changed while running, and is validated", async () => {
    await using ceiling = await startWriteCeiling({ upstream: ddb.endpoint, wcuPerSecond: 1000 });
    ceiling.wcuPerSecond = 100;
    assert.equal(ceiling.wcuPerSecond, 100);
    assert.throws(() => (ceiling.wcuPerSecond = 0), /wcuPerSecond/);
    await assert.rejects(startWriteCeiling({ upstream: "nope" }), /upstream/);
  });

  await t.step(
    "a process running the proxy exits on SIGTERM and leaves nothing listening",
    async () => {
      const code = `import { startWriteCeiling } from "${ROOT}src/testing/mod.ts";
      const c = await startWriteCeiling({ upstream: "${ddb.endpoint}" });
      console.log(c.port);`;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", code],
        cwd: ROOT,
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const port = Number((await reader.read()).value?.trim());
      assert.ok(port > 0);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      child.kill("SIGTERM");
      const status = await child.status;
      assert.equal(status.success, false);
      await reader.cancel();
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
    },
  );

  await t.step("the demo shows the stall", async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "examples/hot_key_ceiling.ts", "--smoke"],
      cwd: ROOT,
      env: { ZAE_LIMITER_ENDPOINT: ddb.endpoint },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    assert.match(text, /^smoke run passed$/m);
  });
});
