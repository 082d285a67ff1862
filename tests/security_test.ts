/**
 * Security:
 *
 * - no key injection: the key schema is injective over valid input and refuses `#`; crafted ids
 *   sent to every entry point (fast-check) either fail validation or touch only their own
 *   partition, checked on every key of every DynamoDB request, and another entity's items stay
 *   byte for byte the same;
 * - errors and logs never contain credentials or whole requests;
 * - destructive CLI commands refuse without `--yes` when nobody can confirm (no TTY);
 * - the CloudFormation table is encrypted at rest, and no policy grants `dynamodb:*` or `*`.
 *
 * Figures are printed as a `RELIABILITY security` JSON line (see docs/reliability.md).
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type AttributeValue,
  DeleteTableCommand,
  type DynamoDBClient,
  QueryCommand,
} from "@aws-sdk/client-dynamodb";
import type { LogFields, Logger } from "../src/logger.ts";
import { DynamoDBClient as Client } from "@aws-sdk/client-dynamodb";
import { FailureMode, RateLimiter } from "../src/limiter.ts";
import { Limit } from "../src/limit.ts";
import { ValidationError } from "../src/errors.ts";
import * as keys from "../src/keys.ts";
import { CLOCK_PROBE_KEY } from "../src/clock.ts"; // the clock probe's constant key (no input names it)
import { freePort } from "../src/local/mod.ts";
import { AUDIT_PK } from "../src/audit_record.ts";
import { SYSTEM_PK } from "../src/audit_query.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const VALID_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$/;
const VALID_RESOURCE = /^[A-Za-z][A-Za-z0-9_.\/-]{0,63}$/;

const idArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,30}$/);
const resourceArb = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.\/-]{0,30}$/);

/** Ids built to reach the victim's partition or items. */
const craftedId = fc.oneof(
  fc.constantFrom(
    "victim#",
    "victim#BUCKET#gpt-4",
    "victim#META",
    "victim#LIMIT#*",
    "ENTITY#victim",
    "victim\u0000",
    "victim ",
    " victim",
    "victim\n",
    "victim\u200b",
    "vıctim",
    "VICTIM",
    "Victim",
    "victim.",
    "victim:",
    "victim@",
    "victim-",
    "victim_",
    "victim/../victim",
    "victim%23",
    "PARENT#victim",
    "CHILD#victim",
    "*",
  ),
  fc.tuple(fc.constantFrom("victim", "ENTITY#victim", ""), nasty()).map(([a, b]) => a + b),
  fc.tuple(nasty(), fc.constantFrom("victim", "#victim")).map(([a, b]) => a + b),
);

function nasty() {
  return fc.oneof(
    fc.constantFrom("#", "##", "#BUCKET#", "#META", "#LIMIT#", "\u0000", "/", " ", "é", "🔥"),
    fc.string({ maxLength: 8 }),
  );
}

/** Every partition key value a request names (keys, items, key conditions, transactions). */
function partitionKeys(command: string, input: Record<string, unknown>): string[] {
  const out: string[] = [];
  const fromKey = (k: unknown) => {
    const pk = (k as Record<string, AttributeValue> | undefined)?.PK?.S;
    if (pk !== undefined) out.push(pk);
  };
  const i = input as {
    Key?: unknown;
    Item?: unknown;
    RequestItems?: Record<string, unknown>;
    TransactItems?: Record<string, { Key?: unknown; Item?: unknown }>[];
    ExpressionAttributeValues?: Record<string, AttributeValue>;
    KeyConditionExpression?: string;
  };
  fromKey(i.Key);
  fromKey(i.Item);
  for (const t of i.TransactItems ?? []) {
    for (const op of Object.values(t)) {
      fromKey(op.Key);
      fromKey(op.Item);
    }
  }
  for (const req of Object.values(i.RequestItems ?? {})) {
    if (Array.isArray(req)) {
      for (
        const w of req as { PutRequest?: { Item: unknown }; DeleteRequest?: { Key: unknown } }[]
      ) {
        fromKey(w.PutRequest?.Item);
        fromKey(w.DeleteRequest?.Key);
      }
    } else {
      for (const k of (req as { Keys?: unknown[] }).Keys ?? []) fromKey(k);
    }
  }
  if (command === "QueryCommand" && i.KeyConditionExpression) {
    for (const v of Object.values(i.ExpressionAttributeValues ?? {})) {
      if (v.S !== undefined && /^(ENTITY|PARENT|RESOURCE)#/.test(v.S)) out.push(v.S);
    }
  }
  return out;
}

/** Records the partition keys of every request the client sends. */
function watchKeys(client: DynamoDBClient): { seen: { command: string; pks: string[] }[] } {
  const log = { seen: [] as { command: string; pks: string[] }[] };
  client.middlewareStack.add(
    (next, context) => (args) => {
      const command = String(context.commandName);
      log.seen.push({
        command,
        pks: partitionKeys(command, args.input as Record<string, unknown>),
      });
      return next(args);
    },
    { step: "initialize", name: "watchKeys" },
  );
  return log;
}

async function partition(client: DynamoDBClient, tableName: string, entityId: string) {
  const out = await client.send(
    new QueryCommand({
      TableName: tableName,
      KeyConditionExpression: "PK = :pk",
      ExpressionAttributeValues: { ":pk": { S: keys.entityPk(entityId) } },
      ConsistentRead: true,
    }),
  );
  return JSON.stringify(out.Items ?? []);
}

const figures = {
  date: new Date().toISOString(),
  keySchemaPairs: 0,
  craftedIds: 0,
  craftedRefused: 0,
  craftedAccepted: 0,
  requestsChecked: 0,
  secretsProbes: 0,
  injectionProbes: 0,
  longestErrorMessage: 0,
  cli: {} as Record<string, number>,
};

Deno.test("key schema: injective over valid ids and resources, and # is refused", () => {
  fc.assert(
    fc.property(idArb, resourceArb, idArb, resourceArb, (e1, r1, e2, r2) => {
      figures.keySchemaPairs++;
      const k1 = keys.entityPk(e1) + "\u0001" + keys.bucketSk(r1);
      const k2 = keys.entityPk(e2) + "\u0001" + keys.bucketSk(r2);
      assert.equal(k1 === k2, e1 === e2 && r1 === r2);
      assert.equal(keys.entityPk(e1) === keys.entityPk(e2), e1 === e2);
      assert.equal(keys.entityIdOf(keys.entityPk(e1)), e1);
      assert.equal(keys.resourceOfBucketSk(keys.bucketSk(r1)), r1);
      // A bucket key never looks like another kind of item.
      for (const sk of [keys.bucketSk(r1), keys.limitSk(r1)]) {
        assert.notEqual(sk, keys.META_SK);
        assert.ok(!sk.startsWith(keys.USAGE_PREFIX));
      }
      assert.notEqual(keys.limitSk(r1), keys.limitSk(undefined));
    }),
    { numRuns: 2_000 },
  );
  for (const s of ["a#b", "#", "x#BUCKET#y"]) {
    assert.ok(!VALID_ID.test(s) && !VALID_RESOURCE.test(s));
  }
});

Deno.test({
  name: "no key injection: crafted ids touch only their own partition on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const adminClient = localClient(ddb.endpoint);
    const attackerClient = localClient(ddb.endpoint);
    const watched = watchKeys(attackerClient);
    const tableName = uniqueTableName("security");
    const admin = new RateLimiter({ tableName, client: adminClient });
    const attacker = new RateLimiter({ tableName, client: attackerClient, limitsCacheTtlMs: 0 });
    const limits = [Limit.perMinute("rpm", 100)];
    try {
      await admin.createTable();
      await admin.createEntity({ entityId: "victim", name: "Victim", metadata: { k: "v" } });
      await admin.createEntity({ entityId: "victim-child", parentId: "victim", cascade: true });
      await admin.setLimits({ entityId: "victim", limits });
      await admin.setLimits({ entityId: "victim", resource: "gpt-4", limits });
      await (await admin.acquire({
        entityId: "victim",
        resource: "gpt-4",
        limits,
        consume: { rpm: 5 },
      })).commit();
      const victimBefore = await partition(adminClient, tableName, "victim");
      const childBefore = await partition(adminClient, tableName, "victim-child");

      await t.step("every entry point, crafted ids and resources", async () => {
        await fc.assert(
          fc.asyncProperty(craftedId, fc.oneof(resourceArb, craftedId), async (id, resource) => {
            fc.pre(id !== "victim" && id !== "victim-child"); // the victim's own ids
            figures.craftedIds++;
            watched.seen.length = 0;
            const calls: (() => Promise<unknown>)[] = [
              () => attacker.acquire({ entityId: id, resource, limits, consume: { rpm: 1 } }),
              () =>
                attacker.acquire({
                  entityId: id,
                  resource,
                  limits,
                  consume: { rpm: 1 },
                  useStoredLimits: true,
                }),
              () => attacker.available({ entityId: id, resource, limits }),
              () => attacker.setLimits({ entityId: id, resource, limits }),
              () => attacker.getLimits({ entityId: id, resource }),
              () => attacker.deleteLimits({ entityId: id }),
              () => attacker.createEntity({ entityId: id }),
              () => attacker.getEntity(id),
              () => attacker.listChildren(id),
              () => attacker.deleteEntity(id),
            ];
            let refused = 0;
            for (const call of calls) {
              try {
                const r = await call();
                if (r && typeof r === "object" && "commit" in r) {
                  await (r as { commit(): Promise<void> }).commit();
                }
              } catch (err) {
                if (err instanceof ValidationError) refused++;
                else if (
                  !(err instanceof Error &&
                    /exists|not found|RateLimitExceeded/i.test(`${err.name} ${err.message}`))
                ) {
                  throw err;
                }
              }
            }
            const valid = VALID_ID.test(id) && VALID_RESOURCE.test(resource);
            if (refused > 0) figures.craftedRefused++;
            else figures.craftedAccepted++;
            if (!VALID_ID.test(id)) {
              assert.equal(refused, calls.length, `${JSON.stringify(id)} refused everywhere`);
            }
            if (valid) assert.equal(refused, 0, `${JSON.stringify(id)} is valid`);
            // Every key of every request belongs to the id itself.
            for (const { command, pks } of watched.seen) {
              figures.requestsChecked++;
              for (const pk of pks) {
                assert.ok(
                  pk === keys.entityPk(id) || pk === keys.parentKey(id) ||
                    pk === keys.resourceKey(resource) || pk === CLOCK_PROBE_KEY ||
                    pk === AUDIT_PK || // the audit event of an admin change (its own partition)
                    // the audit settings, read once before a limiter's first audited change
                    (pk === SYSTEM_PK && command === "GetItemCommand"),
                  `${command} for ${JSON.stringify(id)} named ${JSON.stringify(pk)}`,
                );
              }
            }
          }),
          { numRuns: 120 },
        );
      });

      await t.step("the victim's items are untouched", async () => {
        assert.equal(await partition(adminClient, tableName, "victim"), victimBefore);
        assert.equal(await partition(adminClient, tableName, "victim-child"), childBefore);
        assert.ok(figures.requestsChecked > 0);
      });
    } finally {
      await admin.close();
      await attacker.close();
      adminClient.destroy();
      attackerClient.destroy();
      await ddb.stop();
    }
  },
});

Deno.test({
  name: "errors and logs never contain credentials or whole requests",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const secret = "zaeSECRETkeyNEVERlogME/0123456789abcdefXYZ";
    const session = "zaeSESSIONtokenNEVERlogME";
    const accessKeyId = "AKIAZAENEVERLOGME0001";
    const forbidden = [
      secret,
      session,
      accessKeyId,
      "UpdateExpression",
      "ConditionExpression",
      "ExpressionAttributeValues",
      "Authorization",
      "X-Amz-Security-Token",
      "AWS4-HMAC-SHA256",
      "Signature=",
    ];
    // The library's own log lines, through the logger option: each as a collector would keep it.
    const logLines: string[] = [];
    const events = new Set<string>();
    const record = (level: string) => (message: string, fields: LogFields) => {
      events.add(fields.event);
      logLines.push(`${level} ${message} ${JSON.stringify(fields)}`);
    };
    const logger: Logger = { warn: record("warn"), error: record("error") };
    const ddb = await startTestDynamo();
    const dead = await freePort();
    const logged: string[] = [];
    const originals = { ...console };
    for (const m of ["log", "info", "warn", "error", "debug"] as const) {
      console[m] = (...args: unknown[]) =>
        void logged.push(args.map((a) => Deno.inspect(a, { depth: 8 })).join(" "));
    }
    const credentials = { accessKeyId, secretAccessKey: secret, sessionToken: session };
    const clients = [
      new Client({
        endpoint: `http://127.0.0.1:${dead}`,
        region: "us-east-1",
        credentials,
        maxAttempts: 1,
      }),
      new Client({ endpoint: ddb.endpoint, region: "us-east-1", credentials, maxAttempts: 1 }),
    ];
    const seen: string[] = [];
    const probe = async (what: string, fn: () => Promise<unknown>) => {
      figures.secretsProbes++;
      try {
        const r = await fn();
        seen.push(Deno.inspect(r, { depth: 8 }));
      } catch (err) {
        const e = err as Error;
        seen.push(`${what}: ${String(e)} ${e.message} ${e.stack ?? ""}`);
        seen.push(Deno.inspect(e, { depth: 8 }));
        try {
          seen.push(JSON.stringify(e));
        } catch {
          // not serialisable: nothing to leak
        }
      }
    };
    try {
      await t.step("unreachable DynamoDB, missing table, FAIL_CLOSED and FAIL_OPEN", async () => {
        for (const client of clients) {
          for (const failureMode of [FailureMode.FAIL_CLOSED, FailureMode.FAIL_OPEN]) {
            // Failed-open leases are not queued for recording (the outbox would wait on close).
            const options = { tableName: "no_such_table", client, failureMode, timeoutMs: 300 };
            const l = new RateLimiter(
              Object.assign(options, { recordFailedOpen: false, logger }),
            );
            const limits = [Limit.perMinute("rpm", 10)];
            const req = { entityId: "key-1", resource: "gpt-4", limits, consume: { rpm: 1 } };
            await probe("acquire", () => l.acquire(req));
            await probe("acquire cascade", () => l.acquire({ ...req, cascade: true }));
            await probe("available", () => l.available(req));
            // Admin calls wait at least 10 s for an unreachable DynamoDB: probe them once per client.
            if (failureMode === FailureMode.FAIL_CLOSED) {
              await probe("createEntity", () => l.createEntity({ entityId: "key-1" }));
            }
            if (client === clients[1]) {
              await probe("setLimits", () => l.setLimits({ entityId: "key-1", limits }));
            }
            await probe("bad input", () => l.acquire({ ...req, consume: { rpm: -1 } }));
            await probe("close", () => l.close());
          }
        }
      });
      await t.step("an outage with credentials set: the logger's warnings and errors", async () => {
        const client = new Client({
          endpoint: ddb.endpoint,
          region: "us-east-1",
          credentials,
          maxAttempts: 1,
        });
        clients.push(client);
        let down = false;
        client.middlewareStack.add(
          (next) => (args) => {
            if (down) {
              throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
            }
            return next(args);
          },
          { step: "initialize", name: "securityOutage" },
        );
        const tableName = uniqueTableName("sec_logs");
        const limits = [Limit.perMinute("rpm", 10)];
        const req = { entityId: "key-1", resource: "gpt-4", limits, consume: { rpm: 1 } };
        const common = { clock: () => 1_800_000_000_000, timeoutMs: 300, logger };
        const l = new RateLimiter({
          ...common,
          tableName,
          client,
          createTable: true,
          limitsCacheTtlMs: 200,
          failureMode: FailureMode.FAIL_OPEN,
        });
        const lease = await l.acquire(req);
        await lease.adjust({ rpm: 1 });
        await new Promise((r) => setTimeout(r, 250)); // the cached config is stale now
        down = true;
        await probe("failed-open acquire", () => l.acquire(req)); // a refresh fails, recorded
        await lease.commit(); // kept back by the outage
        // Back, but the table is gone: the outbox gives up on both writes.
        await clients[1].send(new DeleteTableCommand({ TableName: tableName }));
        down = false;
        await probe("flush", () => l.flush(5_000));
        await probe("close", () => l.close());
        // An unreachable DynamoDB: close() leaves a recorded failed-open acquire behind.
        const dead = new RateLimiter({
          ...common,
          tableName,
          client: clients[0],
          failureMode: FailureMode.FAIL_OPEN,
          closeTimeoutMs: 200,
        });
        await probe("failed-open acquire", () => dead.acquire(req));
        await probe("close", () => dead.close());
        assert.deepEqual(
          [...events].sort(),
          ["config.refresh_failed", "limiter.closed_with_writes", "outbox.gave_up"],
          [...logLines, ...seen.slice(-2)].join("\n"),
        );
      });
      await t.step("no secret and no request body in any error or log line", () => {
        assert.ok(logLines.length >= 4, logLines.join("\n"));
        const text = [...seen, ...logged, ...logLines].join("\n");
        assert.ok(seen.length >= 25, `${seen.length} outputs`);
        for (const f of forbidden) {
          const at = text.indexOf(f);
          assert.equal(
            at,
            -1,
            `${JSON.stringify(f)} leaked: …${text.slice(Math.max(0, at - 200), at + 100)}…`,
          );
        }
      });
    } finally {
      Object.assign(console, originals);
      clients.forEach((c) => c.destroy());
      await ddb.stop();
    }
  },
});

Deno.test("errors never echo an unbounded or multi-line input (no log injection)", async () => {
  const l = new RateLimiter({ tableName: "t_unused", endpoint: "http://127.0.0.1:9" });
  const limits = [Limit.perMinute("rpm", 10)];
  const base = { entityId: "key-1", resource: "gpt-4", limits, consume: { rpm: 1 } };
  const inputs: Record<string, unknown>[] = [
    { entityId: "x".repeat(10_000) },
    { entityId: "a\nINFO forged log line" },
    { resource: "r\r\nX-Forged: 1" },
    { consume: { ["x".repeat(10_000)]: 1 } },
    { consume: { ["rpm\nINFO forged log line"]: 1 } },
    { resource: "x".repeat(10_000) },
    { consume: { rpm: 1 }, useStoredLimits: true, limits: [], entityId: "é".repeat(5_000) },
  ];
  try {
    for (const input of inputs) {
      figures.injectionProbes++;
      const err = await l.acquire({ ...base, ...input }).then(() => undefined, (e) => e);
      assert.ok(err instanceof ValidationError, String(err));
      figures.longestErrorMessage = Math.max(figures.longestErrorMessage, err.message.length);
      assert.ok(
        err.message.length <= 400,
        `${err.message.length} characters: ${err.message.slice(0, 120)}…`,
      );
      assert.ok(
        !/[\r\n]/.test(err.message),
        `line break in ${JSON.stringify(err.message.slice(0, 120))}`,
      );
      assert.ok(
        !/[\r\n]/.test(err.field),
        `line break in field ${JSON.stringify(err.field.slice(0, 120))}`,
      );
    }
  } finally {
    await l.close();
  }
});

/** Keys built to forge a log line, drive a terminal or grow a message. */
const CRAFTED_KEYS = [
  "k\nINFO entityId=key-admin granted",
  "k\r\nX-Forged: 1",
  "x".repeat(10_000),
  "a".repeat(257),
  "",
  "k\u2028INFO forged",
  "k\u2029INFO forged",
  "k\u0085INFO forged",
  "\x1b]52;c;ZXZpbA==\x07",
  "\x1b[2J\x1b[H",
  "\x9b2J",
  "\x7f\x00\x08",
  "\u202eevil",
  "é".repeat(5_000),
  "\u{1F600}".repeat(3_000),
  "\ud800".repeat(100),
];

/** No line break, no control character (C0, DEL, C1) and no line separator. */
const UNSAFE = /[\p{Cc}\u2028\u2029]/u;

Deno.test({
  name: "crafted object keys: every ValidationError is one line of at most 400 characters",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("security_keys");
    const l = new RateLimiter({ tableName, client, timeoutMs: 10_000 });
    const limits = [Limit.perMinute("rpm", 10)];
    const req = { entityId: "key-1", resource: "gpt-4", limits };
    let probes = 0;
    const check = (err: unknown, what: string) => {
      probes++;
      assert.ok(err instanceof ValidationError, `${what}: ${String(err).slice(0, 200)}`);
      figures.longestErrorMessage = Math.max(figures.longestErrorMessage, err.message.length);
      assert.ok(err.message.length <= 400, `${what}: ${err.message.length} characters`);
      assert.ok(!UNSAFE.test(err.message), `${what}: ${JSON.stringify(err.message.slice(0, 200))}`);
      assert.ok(
        !UNSAFE.test(err.field),
        `${what}: field ${JSON.stringify(err.field.slice(0, 200))}`,
      );
      return err;
    };
    const fail = (p: Promise<unknown>) => p.then(() => undefined, (e) => e);
    try {
      await l.createTable();
      await t.step("metadata keys, with a non-string and with a string value", async () => {
        for (const [i, key] of CRAFTED_KEYS.entries()) {
          for (const value of [1, null, { nested: "x" }, "v"]) {
            const entityId = `meta-${i}`;
            const err = await fail(
              l.createEntity({ entityId, metadata: { [key]: value } as Record<string, string> }),
            );
            if (value === "v" && key.length >= 1 && key.length <= 256) {
              // A valid key with a string value is stored as is.
              assert.equal(err, undefined, String(err));
              assert.equal((await l.getEntity(entityId))?.metadata[key], "v");
              await l.deleteEntity(entityId);
              continue;
            }
            const e = check(err, `metadata key #${i} = ${JSON.stringify(value)}`);
            // The key's length is checked before its value's type.
            if (key.length === 0 || key.length > 256) assert.equal(e.field, "metadata key");
            else assert.match(e.rule, /must be a string/);
            assert.equal(await l.getEntity(entityId), undefined, "nothing written");
          }
        }
      });
      await t.step("consume and adjust keys", async () => {
        for (const [i, key] of CRAFTED_KEYS.entries()) {
          check(await fail(l.acquire({ ...req, consume: { [key]: 1 } })), `consume key #${i}`);
          const lease = await l.acquire({ ...req, consume: { rpm: 1 } });
          try {
            check(await fail(lease.adjust({ [key]: 1 })), `adjust key #${i}`);
          } finally {
            await lease.rollback();
          }
        }
      });
      figures.injectionProbes += probes;
      const validKeys = CRAFTED_KEYS.filter((k) => k.length >= 1 && k.length <= 256).length;
      assert.equal(probes, CRAFTED_KEYS.length * 6 - validKeys);
    } finally {
      await l.close();
      client.destroy();
      await ddb.stop();
    }
  },
});

const cliMain = new URL("../cli/main.ts", import.meta.url).pathname;
const haveCli = await Deno.stat(cliMain).then(() => true, () => false);

async function runCli(args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", cliMain, ...args],
    env: { ZAE_LIMITER_TABLE: "", ...env },
    stdin: "null", // no TTY: nobody can confirm
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test({
  name: "destructive CLI commands refuse without --yes when there is no TTY",
  ignore: !haveCli,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await t.step("delete (the stack)", async () => {
      const r = await runCli([
        "delete",
        "--stack-name",
        "zae-security-test",
        "--region",
        "us-east-1",
      ], {
        AWS_ACCESS_KEY_ID: "x",
        AWS_SECRET_ACCESS_KEY: "y",
        AWS_ENDPOINT_URL: "http://127.0.0.1:9",
      });
      figures.cli["delete without --yes: exit code"] = r.code;
      assert.notEqual(r.code, 0);
      assert.match(r.err, /--yes/);
    });
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("cli_sec");
    const admin = new RateLimiter({ tableName, client });
    try {
      await admin.createTable();
      await admin.createEntity({ entityId: "keep-me" });
      const conn = ["--table-name", tableName, "--endpoint-url", ddb.endpoint];
      await t.step("entity delete without --yes refuses and deletes nothing", async () => {
        const r = await runCli(["entity", "delete", "keep-me", ...conn]);
        figures.cli["entity delete without --yes: exit code"] = r.code;
        assert.ok(await admin.getEntity("keep-me"), "the entity is still there");
        assert.notEqual(r.code, 0, r.out);
        assert.match(r.err, /--yes/);
      });
      await t.step("entity delete --yes deletes", async () => {
        const r = await runCli(["entity", "delete", "keep-me", "--yes", ...conn]);
        assert.equal(r.code, 0, r.err);
        assert.equal(await admin.getEntity("keep-me"), undefined);
      });
    } finally {
      await admin.close();
      client.destroy();
      await ddb.stop();
    }
  },
});

const templatePath = new URL("../templates/zae-limiter.yaml", import.meta.url).pathname;
const haveTemplate = await Deno.stat(templatePath).then(() => true, () => false);

Deno.test({
  name: "template: the table is encrypted at rest; no policy grants dynamodb:* or *",
  ignore: !haveTemplate,
  async fn() {
    const { parseTemplate } = await import("../src/infra/template.ts");
    const template = parseTemplate() as {
      Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>;
    };
    const tables = Object.values(template.Resources).filter((r) =>
      r.Type === "AWS::DynamoDB::Table"
    );
    assert.equal(tables.length, 1);
    assert.deepEqual(tables[0].Properties?.SSESpecification, { SSEEnabled: true });
    const actions: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) {
          if (k === "Action") actions.push(...(Array.isArray(x) ? x : [x]).map(String));
          else walk(x);
        }
      }
    };
    walk(template.Resources);
    assert.ok(actions.length > 0);
    for (const a of actions) assert.ok(a !== "*" && !a.endsWith(":*"), `wildcard action ${a}`);
    console.log(
      `RELIABILITY security ${JSON.stringify({ ...figures, policyActions: actions.length })}`,
    );
  },
});
