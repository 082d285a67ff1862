/**
 * The lean transport (src/transport/): its SigV4 signature against AWS's test vectors and the
 * SDK's signer, and its calls on DynamoDB Local against the SDK path's: the same results, the
 * same error shapes, aborts, the server clock, and the outbox through lost answers and refusals.
 */
import assert from "node:assert/strict";
import { DynamoDBClient, DynamoDBServiceException, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { SignatureV4 } from "@smithy/signature-v4";
import {
  ConfigurationError,
  FailureMode,
  Limit,
  RateLimiter,
  RateLimiterUnavailable,
} from "../mod.ts";
import { serverClockOf } from "../src/clock.ts";
import { limiterError, misconfiguration } from "../src/failure.ts";
import { type BucketWrite, Repository } from "../src/repository.ts";
import { isAbort, isRetryable, mayHaveApplied } from "../src/retry.ts";
import { makeClient } from "../src/setup.ts";
import { SigV4Signer } from "../src/transport/sigv4.ts";
import { leanTransportOf, useLeanTransport } from "../src/transport/lean.ts";
import { conformance } from "./_conformance.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const EXAMPLE = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const AUG_30_2015 = Date.UTC(2015, 7, 30, 12, 36, 0);

Deno.test("sigv4: the signatures of AWS's test suite (get-vanilla, post-vanilla, a form post)", () => {
  const sign = (method: string, headers: Record<string, string>, body: string) =>
    new SigV4Signer().sign({
      method,
      host: "example.amazonaws.com",
      headers,
      body,
      timeMs: AUG_30_2015,
      region: "us-east-1",
      service: "service",
      credentials: EXAMPLE,
    }).authorization;
  const scope = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
  assert.equal(
    sign("GET", {}, ""),
    `AWS4-HMAC-SHA256 ${scope}, SignedHeaders=host;x-amz-date, ` +
      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
  );
  assert.equal(
    sign("POST", {}, ""),
    `AWS4-HMAC-SHA256 ${scope}, SignedHeaders=host;x-amz-date, ` +
      "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
  );
  assert.equal(
    sign("POST", { "content-type": "application/x-www-form-urlencoded" }, "Param1=value1"),
    `AWS4-HMAC-SHA256 ${scope}, SignedHeaders=content-type;host;x-amz-date, ` +
      "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
  );
});

Deno.test("sigv4: a DynamoDB call signs as the SDK's signer signs it (session token, two days)", async () => {
  const sha256 = new DynamoDBClient({ region: "us-east-1" }).config.sha256;
  const credentials = { ...EXAMPLE, sessionToken: "FwoGZXIvYXdzEXAMPLE//token=" };
  const signer = new SigV4Signer(); // one signer: its cached key must follow the day
  for (const timeMs of [AUG_30_2015, AUG_30_2015 + 86_400_000]) {
    const body = JSON.stringify({ TableName: "t", Key: { PK: { S: "ENTITY#é x" } } });
    const headers = {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": "DynamoDB_20120810.UpdateItem",
    };
    const ours = signer.sign({
      method: "POST",
      host: "dynamodb.eu-west-1.amazonaws.com",
      headers,
      body,
      timeMs,
      region: "eu-west-1",
      service: "dynamodb",
      credentials,
    });
    const sdk = await new SignatureV4({
      credentials,
      region: "eu-west-1",
      service: "dynamodb",
      sha256,
      applyChecksum: false, // x-amz-content-sha256 is optional; the lean signer leaves it out
    }).sign({
      method: "POST",
      protocol: "https:",
      hostname: "dynamodb.eu-west-1.amazonaws.com",
      path: "/",
      query: {},
      headers: { ...headers, host: "dynamodb.eu-west-1.amazonaws.com" },
      body,
    }, { signingDate: new Date(timeMs) });
    assert.equal(ours.authorization, sdk.headers.authorization);
    assert.equal(ours["x-amz-security-token"], credentials.sessionToken);
  }
});

/** A bucket write of one limit, as the engine would send it. */
function write(entityId: string, opId: string, extra: Partial<BucketWrite> = {}): BucketWrite {
  return {
    entityId,
    resource: "api",
    ops: [{ kind: "fromNow", name: "rpm", key: "k1", n: 1_000n, newTat: 2_000n }],
    used: new Map([["rpm", 1_000n]]),
    requests: 1,
    nowMs: 1_000n,
    ttlSec: 99_999n,
    opId,
    maxWrites: 1_000n,
    ...extra,
  };
}

/** A port nothing listens on (a closed listener's). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test({
  name: "lean transport on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const sdk = localClient(ddb.endpoint);
    const lean = localClient(ddb.endpoint);
    useLeanTransport(lean);
    const tableName = uniqueTableName("transport");
    const viaSdk = new Repository({ client: sdk, tableName });
    const viaLean = new Repository({
      client: lean,
      tableName,
      transport: leanTransportOf(lean),
    });
    try {
      await new RateLimiter({ tableName, client: sdk }).createTable();

      await t.step("the limiter's own client is lean; a caller's client is not", () => {
        const own = makeClient({ endpoint: ddb.endpoint });
        assert.ok(leanTransportOf(own));
        assert.ok(!own.middlewareStack.identify().some((m) => m.startsWith("getUserAgent")));
        assert.equal(leanTransportOf(sdk), undefined);
        // fetch refuses port 9 (a "bad port"): such a client keeps the SDK's transport
        assert.equal(leanTransportOf(makeClient({ endpoint: "http://127.0.0.1:9" })), undefined);
        own.destroy();
      });

      await t.step("writes, cancels and reads give what the SDK's path gives", async () => {
        const outcomes = [];
        for (const [repo, entity] of [[viaSdk, "via-sdk"], [viaLean, "via-lean"]] as const) {
          const first = await repo.writeBucket(write(entity, "op1"));
          // The same id again: the receipt refuses it and ALL_OLD returns the item.
          const again = await repo.writeBucket(write(entity, "op1", { itemExists: true }));
          // A transaction with one refused write: each item's reason, the refused one's item.
          const tx = await repo.transactBuckets([
            write(entity, "op1"),
            write(`${entity}-b`, "op2"),
          ]);
          const read = await repo.getBucket(entity, "api");
          outcomes.push({ first, again, tx, read });
        }
        const [s, l] = outcomes;
        assert.equal(l.first.ok, true);
        assert.equal(l.again.ok, false);
        assert.ok(!l.again.ok && l.again.known && l.again.old?.receipts?.get("op1") === 1_000n);
        assert.ok(!l.tx.ok && l.tx.olds.length === 2 && !l.tx.olds[0].ok && l.tx.olds[1].ok);
        assert.equal(l.read?.limits.get("rpm")?.tat, 2_000n);
        assert.deepEqual(l, s);
      });

      await t.step("conformance through the lean transport", async (t2) => {
        await conformance(
          t2,
          (clock, options) =>
            new RateLimiter({ tableName, client: lean, clock, timeoutMs: 10_000, ...options }),
        );
      });

      await t.step("a limiter on its own client sends bucket writes through fetch", async () => {
        const real = globalThis.fetch;
        const targets: string[] = [];
        globalThis.fetch = (input, init) => {
          const target = new Headers(init?.headers).get("x-amz-target");
          if (target) targets.push(target.split(".")[1]);
          return real(input, init);
        };
        try {
          await using limiter = new RateLimiter({ tableName, endpoint: ddb.endpoint });
          const base = { entityId: "own", resource: "api", limits: [Limit.perMinute("rpm", 5)] };
          await (await limiter.acquire({ ...base, consume: { rpm: 2 } })).commit();
          await (await limiter.acquire({ ...base, consume: { rpm: 1 } })).rollback();
          assert.deepEqual(await limiter.available(base), { rpm: 3 });
        } finally {
          globalThis.fetch = real;
        }
        assert.ok(targets.filter((x) => x === "UpdateItem").length >= 3, targets.join());
      });

      await t.step("a missing table: the SDK's error, a ConfigurationError", async () => {
        const missing = uniqueTableName("missing");
        const errorOf = (repo: Repository) =>
          repo.writeBucket(write("x", "op1")).then(() => undefined, (e) => e);
        const ours = await errorOf(
          new Repository({
            client: lean,
            tableName: missing,
            transport: leanTransportOf(lean),
          }),
        );
        const theirs = await errorOf(new Repository({ client: sdk, tableName: missing }));
        assert.ok(ours instanceof DynamoDBServiceException);
        assert.equal(ours.name, "ResourceNotFoundException");
        assert.equal(ours.name, theirs.name);
        assert.equal(ours.message, theirs.message);
        assert.equal(ours.$fault, "client");
        assert.equal(ours.$metadata.httpStatusCode, 400);
        assert.equal(misconfiguration(ours), "table-not-found");
        assert.equal(mayHaveApplied(ours), false);
        assert.equal(isRetryable(ours), false);
        const err = limiterError(ours, "acquire", { tableName: missing });
        assert.ok(err instanceof ConfigurationError && err.kind === "table-not-found");
        await using limiter = new RateLimiter({ tableName: missing, endpoint: ddb.endpoint });
        await assert.rejects(
          limiter.acquire({
            entityId: "x",
            resource: "api",
            limits: [Limit.perMinute("rpm", 5)],
            consume: { rpm: 1 },
          }),
          ConfigurationError,
        );
      });

      await t.step("a refused connection: ECONNREFUSED, never applied, an outage", async () => {
        const endpoint = `http://127.0.0.1:${closedPort()}`;
        const down = makeClient({ endpoint });
        try {
          const repo = new Repository({
            client: down,
            tableName,
            transport: leanTransportOf(down),
          });
          const err = await repo.getBucket("x", "api").then(() => undefined, (e) => e);
          assert.equal(err?.code, "ECONNREFUSED", String(err));
          assert.equal(isRetryable(err), true);
          assert.equal(mayHaveApplied(err), false);
        } finally {
          down.destroy();
        }
        await using limiter = new RateLimiter({ tableName, endpoint, timeoutMs: 300 });
        await assert.rejects(
          limiter.acquire({
            entityId: "x",
            resource: "api",
            limits: [Limit.perMinute("rpm", 5)],
            consume: { rpm: 1 },
          }),
          RateLimiterUnavailable,
        );
      });

      await t.step("an abort signal aborts the request", async () => {
        // A server that accepts connections and never answers.
        const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const held: Deno.Conn[] = [];
        (async () => {
          for await (const conn of listener) held.push(conn);
        })().catch(() => {});
        const endpoint = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
        const hung = makeClient({ endpoint });
        try {
          const repo = new Repository({
            client: hung,
            tableName,
            transport: leanTransportOf(hung),
          });
          const t0 = performance.now();
          const err = await repo.getBucket("x", "api", AbortSignal.timeout(200)).then(
            () => undefined,
            (e) => e,
          );
          assert.ok(isAbort(err), String(err));
          assert.ok(performance.now() - t0 < 2_000);
        } finally {
          hung.destroy();
          listener.close();
          for (const c of held) c.close();
        }
      });

      await t.step("answers feed the client's server clock", async () => {
        // A server an hour ahead of this host, answering like DynamoDB.
        const server = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen() {} },
          () =>
            new Response("{}", {
              headers: {
                "content-type": "application/x-amz-json-1.0",
                date: new Date(Date.now() + 3_600_000).toUTCString(),
              },
            }),
        );
        const client = makeClient({ endpoint: `http://127.0.0.1:${server.addr.port}` });
        try {
          const clock = serverClockOf(client, { warn: () => {} });
          assert.equal(clock.verified, false);
          const repo = new Repository({ client, tableName, transport: leanTransportOf(client) });
          assert.equal(await repo.getBucket("x", "api"), undefined);
          assert.equal(clock.verified, true);
          assert.ok(Math.abs(clock.correctionMs - 3_600_000) < 2_000, String(clock.correctionMs));
        } finally {
          client.destroy();
          await server.shutdown();
        }
      });

      await t.step("outbox: lost answers and refusals, applied exactly once", async (t2) => {
        let fault: "none" | "refuse" | "lose-answer" | "lose-one-answer" = "none";
        const refused = `http://127.0.0.1:${closedPort()}/`;
        const faulty = localClient(ddb.endpoint);
        useLeanTransport(faulty, {
          fetch: async (input, init) => {
            if (fault === "refuse") return await fetch(refused, init); // a real refusal
            const lose = fault === "lose-answer" || fault === "lose-one-answer";
            if (fault === "lose-one-answer") fault = "none";
            const response = await fetch(input, init);
            if (!lose) return response;
            await response.text(); // DynamoDB handled it; the answer is lost on the way
            throw new TypeError("fetch failed", { cause: new Error("Connection reset by peer") });
          },
        });
        const now = 1_800_000_000_000;
        const make = (failureMode: FailureMode) =>
          new RateLimiter({
            tableName,
            client: faulty,
            clock: () => now,
            timeoutMs: 1_000,
            failureMode,
          });
        const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)];
        const counters = async (entityId: string) => {
          const { Item } = await sdk.send(
            new GetItemCommand({
              TableName: tableName,
              Key: { PK: { S: `ENTITY#${entityId}` }, SK: { S: "#BUCKET#gpt-4" } },
              ConsistentRead: true,
            }),
          );
          return { rq: Number(Item?.rq?.N ?? 0), tpm: Number(Item?.u_tpm?.N ?? 0) / 1000 };
        };
        try {
          await t2.step("a lost answer is resent under the same id and counted once", async () => {
            await using limiter = make(FailureMode.FAIL_CLOSED);
            const base = { entityId: "lean-lost", resource: "gpt-4", limits, cascade: false };
            fault = "lose-one-answer";
            const lease = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
            assert.equal(fault, "none");
            await lease.commit();
            assert.deepEqual(await limiter.available(base), { rpm: 99, tpm: 9_500 });
            assert.deepEqual(await counters("lean-lost"), { rq: 1, tpm: 500 });
          });
          await t2.step("FAIL_CLOSED: an acquire that landed unseen is given back", async () => {
            await using limiter = make(FailureMode.FAIL_CLOSED);
            const base = { entityId: "lean-unseen", resource: "gpt-4", limits, cascade: false };
            fault = "lose-answer";
            await assert.rejects(
              limiter.acquire({ ...base, consume: { rpm: 1, tpm: 700 } }),
              RateLimiterUnavailable,
            );
            assert.equal(limiter.pendingWrites, 1);
            fault = "none";
            await limiter.flush(5_000);
            assert.deepEqual(await limiter.available(base), { rpm: 100, tpm: 10_000 });
            assert.deepEqual(await counters("lean-unseen"), { rq: 0, tpm: 0 });
          });
          await t2.step(
            "FAIL_OPEN: a refused request is counted once DynamoDB is back",
            async () => {
              await using limiter = make(FailureMode.FAIL_OPEN);
              const base = { entityId: "lean-open", resource: "gpt-4", limits, cascade: false };
              fault = "refuse";
              const lease = await limiter.acquire({ ...base, consume: { rpm: 1, tpm: 500 } });
              assert.equal(lease.failedOpen, true);
              await lease.commit();
              fault = "none";
              await limiter.flush(5_000);
              assert.deepEqual(await limiter.available(base), { rpm: 99, tpm: 9_500 });
              assert.deepEqual(await counters("lean-open"), { rq: 1, tpm: 500 });
            },
          );
        } finally {
          fault = "none";
          faulty.destroy();
        }
      });
    } finally {
      sdk.destroy();
      lean.destroy();
      await ddb.stop();
    }
  },
});
