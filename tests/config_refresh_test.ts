/**
 * Config refresh off the hot path: an entity's cached metadata and stored limits, once past
 * `limitsCacheTtlMs`, are served stale while one background read refreshes them; past twice the
 * TTL they are read inline. Unit tests of the cache's windows, then the behaviour on DynamoDB
 * Local, counting the calls each acquire sends.
 */

import assert from "node:assert/strict";
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter } from "../mod.ts";
import { TtlCache } from "../src/cache.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const rpm = (n: number) => Limit.perMinute("rpm", n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("TtlCache: fresh within the TTL, stale for staleMs more, then gone", () => {
  let now = 1_000;
  const cache = new TtlCache<string, string>(100, 10, { now: () => now, staleMs: 100 });
  cache.set("a", "x");
  assert.deepEqual(cache.lookup("a"), { value: "x", fresh: true });
  now = 1_099;
  assert.equal(cache.get("a"), "x");
  now = 1_100;
  assert.equal(cache.get("a"), undefined); // get never serves stale
  assert.deepEqual(cache.lookup("a"), { value: "x", fresh: false });
  now = 1_199;
  assert.deepEqual(cache.lookup("a"), { value: "x", fresh: false });
  now = 1_200;
  assert.equal(cache.lookup("a"), undefined);
  cache.set("a", "y", 1_050); // aged from when its read started
  assert.deepEqual(cache.lookup("a"), { value: "y", fresh: false });
  cache.set("b", "z", 1_000);
  assert.equal(cache.lookup("b"), undefined);
});

Deno.test("TtlCache: without staleMs an entry is gone at its TTL; TTL 0 holds nothing", () => {
  let now = 0;
  const cache = new TtlCache<string, number>(50, 2, { now: () => now });
  cache.set("a", 1);
  now = 49;
  assert.deepEqual(cache.lookup("a"), { value: 1, fresh: true });
  now = 50;
  assert.equal(cache.lookup("a"), undefined);
  const none = new TtlCache<string, number>(0, 2, { now: () => now, staleMs: 100 });
  none.set("a", 1);
  assert.equal(none.lookup("a"), undefined);
  cache.set("a", 1);
  cache.set("b", 2);
  cache.set("c", 3); // over maxEntries: the oldest goes
  assert.deepEqual([cache.get("a"), cache.get("b"), cache.get("c")], [undefined, 2, 3]);
});

/** Calls a client sends (at `finalizeRequest`), those answered, and faults to inject. */
class Wire {
  sent: string[] = [];
  answered: string[] = [];
  refused: string[] = [];
  /** Whether a held answer is waiting for `release()`. */
  holding = false;
  /** Holds the answer of the next call of this command until `release()`. */
  #hold?: { command: string; gate: Promise<void> };
  release = () => {};
  /** Refuses every call of this command while set. */
  refuse?: string;

  constructor(client: DynamoDBClient) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName).replace(/Command$/, "");
        this.sent.push(command);
        if (this.refuse === command) {
          this.refused.push(command);
          throw Object.assign(new Error(`injected refusal of ${command}`), { name: "Injected" });
        }
        try {
          const out = await next(args);
          if (this.#hold?.command === command) {
            const { gate } = this.#hold;
            this.#hold = undefined;
            this.holding = true;
            await gate;
            this.holding = false;
          }
          return out;
        } finally {
          this.answered.push(command); // a failed condition included
        }
      },
      { step: "finalizeRequest", name: "zaeTestWire" },
    );
  }

  reset(): void {
    this.sent = [];
    this.answered = [];
    this.refused = [];
    this.refuse = undefined;
  }

  /** An acquire that waited for the held call would be stuck: the hold gives up after 3 s. */
  hold(command: string): void {
    const { promise, resolve } = Promise.withResolvers<void>();
    const timer = setTimeout(resolve, 3_000);
    this.#hold = { command, gate: promise };
    this.release = () => {
      clearTimeout(timer);
      resolve();
    };
  }

  /** Waits until a held answer is waiting. */
  async held(): Promise<void> {
    for (let i = 0; i < 200 && !this.holding; i++) await sleep(10);
    assert.ok(this.holding, "no answer held");
  }

  /** Waits until every call sent has been answered (or refused). */
  async settled(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (this.answered.length + this.refused.length >= this.sent.length) {
        await sleep(5);
        return;
      }
      await sleep(10);
    }
    throw new Error(`calls still in flight: sent ${this.sent}, answered ${this.answered}`);
  }
}

Deno.test({
  name: "config refresh on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const otherClient = localClient(ddb.endpoint); // a second process, as far as caches go
    const wire = new Wire(client);
    const tableName = uniqueTableName("refresh");
    const TTL = 1_000;
    const limiter = new RateLimiter({
      tableName,
      client,
      createTable: true,
      limitsCacheTtlMs: TTL,
    });
    const operator = new RateLimiter({ tableName, client: otherClient });
    const call = (entityId: string) => ({
      entityId,
      resource: "api",
      limits: [rpm(1_000)],
      consume: { rpm: 1 },
      useStoredLimits: true,
    });
    const capacity = async (entityId: string) => {
      const lease = await limiter.acquire(call(entityId));
      await lease.commit();
      return lease.statuses[0].limit.capacity;
    };
    /** First use: reads the config inline; returns when its read started (real time). */
    const warmUp = async (entityId: string) => {
      wire.reset();
      const readFrom = Date.now();
      await capacity(entityId);
      assert.deepEqual(wire.sent, ["BatchGetItem", "UpdateItem"]);
      return readFrom;
    };
    try {
      await limiter.acquire({ ...call("seed"), useStoredLimits: false }); // creates the table

      await t.step(
        "past the TTL a warm acquire sends one UpdateItem; one refresh runs",
        async () => {
          await operator.setLimits({ entityId: "busy", resource: "api", limits: [rpm(50)] });
          const readFrom = await warmUp("busy");
          await sleep(readFrom + TTL + 150 - Date.now());
          wire.reset();
          wire.hold("BatchGetItem"); // the refresh's answer waits until released
          assert.equal(await capacity("busy"), 50);
          assert.deepEqual(wire.answered, ["UpdateItem"]); // all the acquire waited for
          assert.deepEqual(wire.sent.toSorted(), ["BatchGetItem", "UpdateItem"]);
          for (let i = 0; i < 3; i++) assert.equal(await capacity("busy"), 50);
          await Promise.all([capacity("busy"), capacity("busy")]);
          // one refresh per key in flight, however many acquires found the entry stale
          assert.equal(wire.sent.filter((c) => c === "BatchGetItem").length, 1);
          assert.equal(wire.sent.filter((c) => c === "UpdateItem").length, 6);
          wire.release();
          await wire.settled();
          wire.reset();
          await capacity("busy");
          assert.deepEqual(wire.sent, ["UpdateItem"]); // refreshed: fresh again, nothing to read
        },
      );

      await t.step("another limiter's change is seen within TTL + one refresh", async () => {
        await operator.setLimits({ entityId: "changed", resource: "api", limits: [rpm(50)] });
        const readFrom = await warmUp("changed");
        await operator.setLimits({ entityId: "changed", resource: "api", limits: [rpm(7)] });
        const changedAt = Date.now();
        assert.equal(await capacity("changed"), 50); // fresh: cached
        await sleep(readFrom + TTL + 150 - Date.now());
        wire.reset();
        assert.equal(await capacity("changed"), 50); // stale, served; the refresh starts
        await wire.settled();
        assert.deepEqual(wire.sent.toSorted(), ["BatchGetItem", "UpdateItem"]);
        wire.reset();
        assert.equal(await capacity("changed"), 7);
        assert.ok(!wire.sent.includes("BatchGetItem"), `sent ${wire.sent}`); // already refreshed
        const seenAfter = Date.now() - changedAt;
        assert.ok(seenAfter < 2 * TTL, `seen ${seenAfter} ms after the change`);
      });

      await t.step("an entry past twice the TTL is read inline, not served", async () => {
        await operator.setLimits({ entityId: "idle", resource: "api", limits: [rpm(50)] });
        const readFrom = await warmUp("idle");
        await operator.setLimits({ entityId: "idle", resource: "api", limits: [rpm(9)] });
        await sleep(readFrom + 2 * TTL + 150 - Date.now());
        wire.reset();
        assert.equal(await capacity("idle"), 9); // not the stale 50: the acquire waited for the read
        assert.equal(wire.sent[0], "BatchGetItem");
        assert.equal(wire.sent.filter((c) => c === "BatchGetItem").length, 1);
      });

      await t.step("a failed refresh keeps the stale value and is retried next use", async () => {
        await operator.setLimits({ entityId: "flaky", resource: "api", limits: [rpm(50)] });
        const readFrom = await warmUp("flaky");
        await operator.setLimits({ entityId: "flaky", resource: "api", limits: [rpm(8)] });
        await sleep(readFrom + TTL + 150 - Date.now());
        wire.reset();
        wire.refuse = "BatchGetItem";
        assert.equal(await capacity("flaky"), 50); // never throws into the caller
        await wire.settled();
        assert.equal(await capacity("flaky"), 50); // still stale: tried again
        await wire.settled();
        assert.equal(wire.sent.filter((c) => c === "BatchGetItem").length, 2);
        wire.refuse = undefined;
        assert.equal(await capacity("flaky"), 50);
        await wire.settled();
        assert.equal(await capacity("flaky"), 8);
      });

      await t.step(
        "setLimits overtaking a refresh in flight: its old read is not kept",
        async () => {
          await operator.setLimits({ entityId: "raced", resource: "api", limits: [rpm(50)] });
          const readFrom = await warmUp("raced");
          await sleep(readFrom + TTL + 150 - Date.now());
          wire.hold("BatchGetItem"); // the refresh has read 50; its answer is held
          assert.equal(await capacity("raced"), 50);
          await wire.held();
          await limiter.setLimits({ entityId: "raced", resource: "api", limits: [rpm(6)] });
          assert.equal(await capacity("raced"), 6); // read anew, not joined to the old read
          wire.release();
          await wire.settled();
          wire.reset();
          assert.equal(await capacity("raced"), 6);
          assert.deepEqual(wire.sent, ["UpdateItem"]);
        },
      );
    } finally {
      await limiter.close();
      await operator.close();
      client.destroy();
      otherClient.destroy();
      await ddb.stop();
    }
  },
});
