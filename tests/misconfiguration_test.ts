/**
 * A misconfiguration is not an outage: a missing table, a table with other keys, access denied,
 * refused credentials and a missing region raise `ConfigurationError` at once, in FAIL_OPEN as in
 * FAIL_CLOSED, and are never retried until the deadline. An outage still follows the failure mode.
 *
 * Missing table and other key schema run on DynamoDB Local. Access denied and refused credentials
 * come from a loopback server answering with DynamoDB's own error bodies (moto does not enforce
 * IAM on DynamoDB), parsed by the real SDK.
 */

import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { CreateTableCommand, type DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  ConfigurationError,
  FailureMode,
  Limit,
  RateLimiter,
  RateLimiterUnavailable,
} from "../mod.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const limits = [Limit.perMinute("rpm", 10)];
const request = { entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } };
const MODES = [FailureMode.FAIL_OPEN, FailureMode.FAIL_CLOSED];

/** Counts the requests a client sends. */
function meter(client: DynamoDBClient): { calls: number } {
  const m = { calls: 0 };
  client.middlewareStack.add((next) => (args) => {
    m.calls++;
    return next(args);
  }, { step: "finalizeRequest", name: "misconfigMeter" });
  return m;
}

async function expectConfigError(
  p: Promise<unknown>,
  kind: ConfigurationError["kind"],
  message: RegExp,
): Promise<ConfigurationError> {
  const err = await p.then(() => undefined, (e) => e);
  assert.ok(err instanceof ConfigurationError, `expected ConfigurationError, got ${err}`);
  assert.equal(err.kind, kind);
  assert.match(err.message, message);
  assert.ok(!err.message.includes("\n"), "one line");
  return err;
}

Deno.test({
  name: "misconfiguration on DynamoDB Local: a missing table and a table with other keys",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    try {
      for (const failureMode of MODES) {
        await t.step(`missing table, ${failureMode}: ConfigurationError, one call`, async () => {
          const own = localClient(ddb.endpoint);
          const m = meter(own);
          const limiter = new RateLimiter({
            tableName: "rate_limits_typo",
            client: own,
            failureMode,
            timeoutMs: 5_000,
          });
          try {
            await expectConfigError(
              limiter.acquire(request),
              "table-not-found",
              /^Table "rate_limits_typo" does not exist in us-east-1 at http:\/\/127\.0\.0\.1:\d+: create it \(createTable: true/,
            );
            assert.equal(m.calls, 1, "reported at once, never retried");
            assert.equal(limiter.pendingWrites, 0, "nothing queued for a table that is not there");
            await expectConfigError(
              limiter.available({ entityId: "key-1", resource: "api", limits }),
              "table-not-found",
              /does not exist/,
            );
            await expectConfigError(
              limiter.createEntity({ entityId: "key-1" }),
              "table-not-found",
              /zae-limiter deploy/,
            );
          } finally {
            await limiter.close();
            own.destroy();
          }
        });
      }

      const other = uniqueTableName("otherkeys");
      await client.send(
        new CreateTableCommand({
          TableName: other,
          AttributeDefinitions: [{ AttributeName: "id", AttributeType: "S" }],
          KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
          BillingMode: "PAY_PER_REQUEST",
        }),
      );
      for (const failureMode of MODES) {
        await t.step(`a table with other keys, ${failureMode}: ConfigurationError`, async () => {
          const limiter = new RateLimiter({ tableName: other, client, failureMode });
          try {
            await expectConfigError(
              limiter.acquire(request),
              "table-schema",
              new RegExp(`^Table "${other}" in us-east-1 at .* is not a zae-limiter table`),
            );
          } finally {
            await limiter.close();
          }
        });
      }

      await t.step("an outage still follows the failure mode", async () => {
        // A port nobody listens on: a refused connection is an outage, not a misconfiguration.
        const closed = localClient("http://127.0.0.1:9");
        const open = new RateLimiter({
          tableName: other,
          client: closed,
          failureMode: FailureMode.FAIL_OPEN,
          timeoutMs: 300,
          recordFailedOpen: false,
        });
        const shut = new RateLimiter({ tableName: other, client: closed, timeoutMs: 300 });
        try {
          const lease = await open.acquire(request);
          assert.equal(lease.failedOpen, true);
          const err = await shut.acquire(request).then(() => undefined, (e) => e);
          assert.ok(err instanceof RateLimiterUnavailable, String(err));
          assert.match(err.message, /during acquire/);
        } finally {
          await open.close();
          await shut.close();
          closed.destroy();
        }
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});

/** A loopback server that answers every request with one DynamoDB error body. */
async function errorServer(
  status: number,
  type: string,
  message: string,
): Promise<{ endpoint: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    req.on("end", () => {
      res.writeHead(status, {
        "content-type": "application/x-amz-json-1.0",
        "x-amzn-requestid": "test",
      });
      res.end(JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

Deno.test("misconfiguration from DynamoDB's own error bodies: access denied, refused credentials, and a 500 is an outage", async (t) => {
  const cases = [
    {
      type: "AccessDeniedException",
      message:
        "User: arn:aws:sts::123456789012:assumed-role/app/x is not authorized to perform: dynamodb:UpdateItem",
      kind: "access-denied" as const,
      expect: /^Access denied to Table "rate_limits" .*during acquire: .*not authorized.*grant/,
    },
    {
      type: "UnrecognizedClientException",
      message: "The security token included in the request is invalid.",
      kind: "bad-credentials" as const,
      expect: /^The AWS credentials were refused .*UnrecognizedClientException/,
    },
  ];
  for (const c of cases) {
    for (const failureMode of MODES) {
      await t.step(`${c.type}, ${failureMode}`, async () => {
        const server = await errorServer(400, c.type, c.message);
        const limiter = new RateLimiter({
          tableName: "rate_limits",
          endpoint: server.endpoint,
          failureMode,
          timeoutMs: 5_000,
        });
        try {
          await expectConfigError(limiter.acquire(request), c.kind, c.expect);
          assert.equal(server.requests(), 1, "reported at once, never retried");
        } finally {
          await limiter.close();
          await server.close();
        }
      });
    }
  }
  await t.step("a 500 from DynamoDB is an outage: retried, then FAIL_OPEN passes", async () => {
    const server = await errorServer(500, "InternalServerError", "Internal server error");
    const limiter = new RateLimiter({
      tableName: "rate_limits",
      endpoint: server.endpoint,
      failureMode: FailureMode.FAIL_OPEN,
      timeoutMs: 400,
      recordFailedOpen: false,
    });
    try {
      const lease = await limiter.acquire(request);
      assert.equal(lease.failedOpen, true);
      assert.ok(server.requests() > 1, `retried: ${server.requests()} requests`);
    } finally {
      await limiter.close();
      await server.close();
    }
  });
});

Deno.test("misconfiguration: a missing region is reported at once, in both modes", async () => {
  const saved: Record<string, string | undefined> = {};
  const names = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_CONFIG_FILE",
    "AWS_PROFILE",
  ];
  for (const n of names) saved[n] = process.env[n];
  for (const n of names) delete process.env[n];
  process.env.AWS_CONFIG_FILE = "/nonexistent/zae-limiter-test-config";
  try {
    for (const failureMode of MODES) {
      const limiter = new RateLimiter({ tableName: "rate_limits", failureMode, timeoutMs: 5_000 });
      try {
        await expectConfigError(
          limiter.acquire(request),
          "region-missing",
          /No AWS region is set .*AWS_REGION/,
        );
      } finally {
        await limiter.close();
      }
    }
  } finally {
    for (const n of names) {
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
    }
  }
});
