/**
 * Exactly once with receipts, on DynamoDB Local: every bucket write leaves a receipt `r_{opId}`
 * and is refused where one is already there, and refused past its write-count bound; receipts
 * that no copy can need are swept by later writes, so an item keeps only a few.
 */

import assert from "node:assert/strict";
import {
  type DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
  type UpdateItemCommandInput,
} from "@aws-sdk/client-dynamodb";
import { FailureMode, Limit, RateLimiter, RateLimiterUnavailable } from "../mod.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const limits = [Limit.perMinute("rpm", 1_000), Limit.perMinute("tpm", 100_000)];

async function item(client: DynamoDBClient, tableName: string, entityId: string) {
  const { Item } = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#api" } },
      ConsistentRead: true,
    }),
  );
  const receipts = Object.keys(Item ?? {}).filter((k) => k.startsWith("r_"));
  return {
    rq: Number(Item?.rq?.N ?? 0),
    tpm: Number(Item?.u_tpm?.N ?? 0) / 1000,
    wc: Number(Item?.wc?.N ?? 0),
    receipts,
    window: Object.keys(Item ?? {}).filter((k) => /^o\d+$/.test(k)),
  };
}

Deno.test({
  name: "receipts: exactly once, late copies refused, receipts swept",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("receipts");
    const now = 1_800_000_000_000;
    const request = (entityId: string, tpm = 10) => ({
      entityId,
      resource: "api",
      limits,
      consume: { rpm: 1, tpm },
      cascade: false,
    });
    try {
      await new RateLimiter({ tableName, client }).createTable();

      await t.step("sequential writes of one process leave at most a few receipts", async () => {
        const limiter = new RateLimiter({ tableName, client, clock: () => now });
        for (let i = 0; i < 60; i++) await (await limiter.acquire(request("seq"))).commit();
        const got = await item(client, tableName, "seq");
        assert.equal(got.rq, 60);
        assert.equal(got.wc, 60);
        assert.ok(got.receipts.length <= 2, `receipts left: ${got.receipts.length}`);
        assert.deepEqual(got.window, [], "no window of ids any more");
        await limiter.close();
      });

      await t.step(
        "a duplicated request is applied once (the copy finds the receipt)",
        async () => {
          const dup = localClient(ddb.endpoint);
          let duplicate = true;
          dup.middlewareStack.add((next) => async (args) => {
            const out = await next(args);
            // The bucket write (the first call may be the config read, which has no receipt).
            if (duplicate && (args.input as UpdateItemCommandInput).UpdateExpression) {
              duplicate = false;
              // The same request delivered again, as a network may do: refused by its receipt.
              const again = await next(args).then(() => "applied", (e) => (e as Error).name);
              assert.equal(again, "ConditionalCheckFailedException");
            }
            return out;
          }, { step: "finalizeRequest", name: "duplicate" });
          const limiter = new RateLimiter({ tableName, client: dup, clock: () => now });
          await (await limiter.acquire(request("dup", 500))).commit();
          assert.equal(duplicate, false);
          const got = await item(client, tableName, "dup");
          assert.deepEqual([got.rq, got.tpm], [1, 500]);
          await limiter.close();
          dup.destroy();
        },
      );

      await t.step(
        "a copy delivered after its bound has passed is refused; the outcome is reported",
        async () => {
          // The acquire's first request is held back (never sent): the limiter sees a lost
          // answer; its retries within the deadline are refused.
          const held = localClient(ddb.endpoint);
          let mode: "pass" | "hold" | "refuse" = "pass";
          let captured: UpdateItemCommandInput | undefined;
          held.middlewareStack.add((next) => (args) => {
            const input = args.input as UpdateItemCommandInput;
            if (mode === "hold" && input.UpdateExpression) {
              mode = "refuse";
              captured = structuredClone(input);
              throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
            }
            if (mode === "refuse" && input.UpdateExpression) {
              throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
            }
            return next(args);
          }, { step: "initialize", name: "hold" });
          const limiter = new RateLimiter({
            tableName,
            client: held,
            clock: () => now,
            timeoutMs: 300,
            failureMode: FailureMode.FAIL_CLOSED,
          });
          const other = new RateLimiter({ tableName, client, clock: () => now });
          await (await other.acquire(request("late"))).commit();
          await (await limiter.acquire(request("late"))).commit(); // learns the bucket
          const before = await item(client, tableName, "late");
          mode = "hold";
          await assert.rejects(limiter.acquire(request("late", 700)), RateLimiterUnavailable);
          assert.ok(captured, "the acquire's write was captured");
          assert.equal(limiter.pendingWrites, 1, "the refused acquire waits to be cancelled");
          // 40 writes by another process push the item past the held write's bound.
          for (let i = 0; i < 40; i++) await (await other.acquire(request("late"))).commit();
          const copy = await client.send(new UpdateItemCommand(captured!)).then(
            () => "applied",
            (e) => (e as Error).name,
          );
          assert.equal(copy, "ConditionalCheckFailedException");
          const after = await item(client, tableName, "late");
          assert.equal(after.rq, before.rq + 40, "the late copy counted nothing");
          // The limiter's outbox cannot tell any more whether it landed: reported, never guessed.
          mode = "pass";
          await limiter.flush(5_000).catch(() => {});
          assert.equal(limiter.unresolvedWrites.length, 1);
          assert.match(String(limiter.unresolvedWrites[0].error), /Cannot tell whether/);
          await limiter.close().catch(() => {});
          await other.close();
          held.destroy();
        },
      );

      await t.step("receipts a stopped process left are swept by others", async () => {
        const first = new RateLimiter({ tableName, client, clock: () => now });
        await Promise.all(
          Array.from({ length: 8 }, async () => (await first.acquire(request("left"))).commit()),
        );
        await first.close();
        const left = (await item(client, tableName, "left")).receipts;
        assert.ok(left.length >= 1, "the stopped process left receipts behind");
        const second = new RateLimiter({ tableName, client, clock: () => now });
        for (let i = 0; i < 45; i++) await (await second.acquire(request("left"))).commit();
        const got = await item(client, tableName, "left");
        assert.deepEqual(got.receipts.filter((r) => left.includes(r)), [], "old receipts swept");
        assert.ok(got.receipts.length <= 2, `receipts left: ${got.receipts.length}`);
        assert.equal(got.rq, 53);
        await second.close();
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});
