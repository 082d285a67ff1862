/**
 * The `logger` option: each warning path of the library, driven on DynamoDB Local, reaches a
 * recording logger as one call with its event name and fields (docs/usage.md, "Logs"), and never
 * names an entity; the default (the console) still prints one line per event.
 */

import assert from "node:assert/strict";
import {
  DeleteItemCommand,
  DeleteTableCommand,
  type DynamoDBClient,
} from "@aws-sdk/client-dynamodb";
import { FailureMode, Limit, type LogFields, type Logger, RateLimiter } from "../mod.ts";
import { LogThrottle } from "../src/logger.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

/** A logger that records its calls. */
class Recorder implements Logger {
  calls: { level: "warn" | "error"; message: string; fields: LogFields }[] = [];
  warn(message: string, fields: LogFields) {
    this.calls.push({ level: "warn", message, fields });
  }
  error(message: string, fields: LogFields) {
    this.calls.push({ level: "error", message, fields });
  }
  of(event: string) {
    return this.calls.filter((c) => c.fields.event === event);
  }
  /** Every call as text: what a log collector would keep. */
  text(): string {
    return this.calls.map((c) => `${c.level} ${c.message} ${JSON.stringify(c.fields)}`).join("\n");
  }
}

/** A client whose calls can be refused as by a network outage. */
function faultyClient(endpoint: string): { client: DynamoDBClient; down: (on: boolean) => void } {
  const client = localClient(endpoint);
  let refusing = false;
  client.middlewareStack.add(
    (next) => (args) => {
      if (refusing) {
        throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1"), { code: "ECONNREFUSED" });
      }
      return next(args);
    },
    { step: "initialize", name: "loggerTestFaults" },
  );
  return { client, down: (on) => void (refusing = on) };
}

const ENTITY = "cust-7f3a@example.com"; // what an entity id may be: customer data
const limits = [Limit.perMinute("rpm", 100)];
const req = { entityId: ENTITY, resource: "gpt-4", limits, consume: { rpm: 1 } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("LogThrottle: one line per period, counting the events held back", () => {
  let now = 1_000;
  const t = new LogThrottle(100, () => now);
  assert.equal(t.next(), 1);
  assert.equal(t.next(), 0);
  now = 1_099;
  assert.equal(t.next(), 0);
  now = 1_100;
  assert.equal(t.next(), 3);
  assert.equal(t.next(), 0);
});

Deno.test("logger option: refused unless it has warn and error functions", () => {
  for (const bad of [null, 1, "console", {}, { warn: () => {} }, { warn: 1, error: () => {} }]) {
    assert.throws(
      () =>
        new RateLimiter({ tableName: "rate_limits", region: "us-east-1", logger: bad as never }),
      (e: Error) => e.name === "ValidationError" && e.message.startsWith("Invalid logger: "),
    );
  }
  // console, and any object with both methods, is accepted
  new RateLimiter({ tableName: "rate_limits", region: "us-east-1", logger: console }).close();
});

Deno.test({
  name: "logger: every warning path on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const admin = localClient(ddb.endpoint);
    const clients: DynamoDBClient[] = [admin];
    const faulty = () => {
      const f = faultyClient(ddb.endpoint);
      clients.push(f.client);
      return f;
    };
    try {
      await t.step("the outbox giving up after an outage: outbox.gave_up", async () => {
        const tableName = uniqueTableName("log_outbox");
        const { client, down } = faulty();
        const log = new Recorder();
        const limiter = new RateLimiter({
          tableName,
          client,
          createTable: true,
          clock: () => 1_800_000_000_000,
          timeoutMs: 500,
          logger: log,
        });
        const lease = await limiter.acquire(req);
        await lease.adjust({ rpm: 2 });
        down(true);
        await lease.commit(); // kept back by the outage
        assert.equal(limiter.pendingWrites, 1);
        assert.deepEqual(log.calls, []);
        // The outage ends, but the table is gone: retrying cannot mend that.
        await admin.send(new DeleteTableCommand({ TableName: tableName }));
        down(false);
        await assert.rejects(limiter.flush(5_000), /could not be resolved/);
        assert.equal(limiter.unresolvedWrites.length, 1);
        const [line, ...more] = log.of("outbox.gave_up");
        assert.deepEqual(more, []);
        assert.equal(line.level, "error");
        assert.deepEqual(line.fields, {
          event: "outbox.gave_up",
          table: tableName,
          namespace: "default",
          operation: "commit",
          resource: "gpt-4",
          error: "ConfigurationError",
          cause: "ResourceNotFoundException",
        });
        assert.match(line.message, /^zae-limiter: gave up on a commit write to resource gpt-4/);
        assert.ok(!log.text().includes(ENTITY), log.text());
        await limiter.close();
      });

      await t.step("close() with writes left: limiter.closed_with_writes", async () => {
        const tableName = uniqueTableName("log_close");
        const { client, down } = faulty();
        const log = new Recorder();
        const limiter = new RateLimiter({
          tableName,
          client,
          createTable: true,
          clock: () => 1_800_000_000_000,
          timeoutMs: 300,
          closeTimeoutMs: 300,
          logger: log,
        });
        const lease = await limiter.acquire(req);
        await lease.adjust({ rpm: 1 });
        down(true);
        await lease.rollback();
        await limiter.close(); // never throws for an outage
        const calls = log.of("limiter.closed_with_writes");
        assert.equal(calls.length, 1, log.text());
        assert.equal(calls[0].level, "warn");
        assert.deepEqual(calls[0].fields, {
          event: "limiter.closed_with_writes",
          table: tableName,
          namespace: "default",
          pending: 1,
          unresolved: 0,
          closeTimeoutMs: 300,
        });
        assert.ok(!log.text().includes(ENTITY));
        down(false);
      });

      await t.step(
        "a failed config refresh: config.refresh_failed, one line a minute",
        async () => {
          const tableName = uniqueTableName("log_refresh");
          const { client, down } = faulty();
          const log = new Recorder();
          const TTL = 300;
          const limiter = new RateLimiter({
            tableName,
            client,
            createTable: true,
            clock: () => 1_800_000_000_000,
            limitsCacheTtlMs: TTL,
            timeoutMs: 300,
            failureMode: FailureMode.FAIL_OPEN,
            recordFailedOpen: false,
            logger: log,
          });
          await (await limiter.acquire(req)).commit(); // config cached
          await sleep(TTL + 50); // stale now: served, refreshed in the background
          down(true);
          for (let i = 0; i < 3; i++) {
            const lease = await limiter.acquire(req); // the write fails open, the refresh fails
            assert.ok(lease.failedOpen);
            await sleep(20);
          }
          const calls = log.of("config.refresh_failed");
          assert.equal(calls.length, 1, log.text()); // three failures, one line
          assert.equal(calls[0].level, "warn");
          const { error, cause, ...rest } = calls[0].fields;
          assert.deepEqual(rest, {
            event: "config.refresh_failed",
            table: tableName,
            namespace: "default",
            resource: "gpt-4",
            parts: ["meta", "defaults"], // no stored limits asked for
            failures: 1,
          });
          assert.deepEqual([error, cause], ["RateLimiterUnavailable", "Error"]);
          assert.ok(!log.text().includes(ENTITY), log.text());
          down(false);
          await limiter.close();
        },
      );

      await t.step("a version-1 table: schema.outdated, once", async () => {
        const tableName = uniqueTableName("log_schema");
        await new RateLimiter({ tableName, client: admin, createTable: true }).createTable();
        await admin.send(
          new DeleteItemCommand({
            TableName: tableName,
            Key: { PK: { S: "SYSTEM" }, SK: { S: "#VERSION" } },
          }),
        );
        const log = new Recorder();
        const client = faulty().client;
        await using limiter = new RateLimiter({ tableName, client, logger: log });
        await (await limiter.acquire(req)).commit();
        await (await limiter.acquire(req)).commit();
        assert.deepEqual(log.calls.map((c) => [c.level, c.fields]), [[
          "warn",
          { event: "schema.outdated", table: tableName, version: 1, libraryVersion: 2 },
        ]]);
        assert.match(log.calls[0].message, /zae-limiter upgrade --table-name/);
      });

      await t.step("a host an hour fast: clock.skew, once", async () => {
        const tableName = uniqueTableName("log_clock");
        await new RateLimiter({ tableName, client: admin, createTable: true }).createTable();
        const client = localClient(ddb.endpoint);
        clients.push(client);
        // DynamoDB's Date header an hour behind this host: the host looks an hour fast.
        type Handler = { handle(req: unknown, opts?: unknown): Promise<{ response: unknown }> };
        const inner = client.config.requestHandler as unknown as Handler;
        (client.config as { requestHandler: unknown }).requestHandler = {
          ...inner,
          handle: async (request: unknown, opts?: unknown) => {
            const out = await inner.handle(request, opts);
            const headers = (out.response as { headers: Record<string, string> }).headers;
            headers.date = new Date(Date.now() - 3_600_000).toUTCString();
            return out;
          },
        };
        const log = new Recorder();
        await using limiter = new RateLimiter({ tableName, client, logger: log });
        for (let i = 0; i < 3; i++) await (await limiter.acquire(req)).commit();
        assert.equal(log.calls.length, 1, log.text());
        const { level, message, fields } = log.calls[0];
        assert.equal(level, "warn");
        assert.match(message, /is 3\d{3}\.\d s ahead of DynamoDB's/);
        assert.equal(fields.event, "clock.skew");
        assert.equal(fields.toleranceMs, 1000);
        const correction = fields.correctionMs as number;
        assert.ok(correction < -3_598_000 && correction > -3_602_000, `${correction}`);
        const min = fields.hostMinusDynamoMinMs as number;
        const max = fields.hostMinusDynamoMaxMs as number;
        assert.ok(min <= -correction && -correction <= max, JSON.stringify(fields));
      });

      await t.step("the default: one line per event on the console", async () => {
        const tableName = uniqueTableName("log_default");
        const { client, down } = faulty();
        const lines: string[] = [];
        const original = console.warn;
        console.warn = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
        try {
          const limiter = new RateLimiter({
            tableName,
            client,
            createTable: true,
            clock: () => 1_800_000_000_000,
            timeoutMs: 300,
            closeTimeoutMs: 200,
          });
          const lease = await limiter.acquire(req);
          await lease.adjust({ rpm: 1 });
          down(true);
          await lease.commit();
          await limiter.close();
        } finally {
          console.warn = original;
          down(false);
        }
        assert.equal(lines.length, 1, lines.join("\n"));
        assert.ok(!lines[0].includes("\n"));
        const json = lines[0].slice(lines[0].indexOf(" {") + 1);
        assert.match(lines[0], /^zae-limiter: closed with 1 write\(s\) still waiting/);
        assert.equal(JSON.parse(json).event, "limiter.closed_with_writes");
        assert.equal(JSON.parse(json).pending, 1);
      });

      await t.step("a logger that throws breaks nothing", async () => {
        const tableName = uniqueTableName("log_throws");
        const { client, down } = faulty();
        let calls = 0;
        const broken: Logger = {
          warn: () => {
            calls++;
            throw new Error("log sink down");
          },
          error: () => {
            throw new Error("log sink down");
          },
        };
        const limiter = new RateLimiter({
          tableName,
          client,
          createTable: true,
          clock: () => 1_800_000_000_000,
          timeoutMs: 300,
          closeTimeoutMs: 200,
          logger: broken,
        });
        const lease = await limiter.acquire(req);
        await lease.adjust({ rpm: 1 });
        down(true);
        await lease.commit();
        await limiter.close(); // resolves although the logger threw
        assert.equal(calls, 1);
        down(false);
      });
    } finally {
      clients.forEach((c) => c.destroy());
      await ddb.stop();
    }
  },
});
