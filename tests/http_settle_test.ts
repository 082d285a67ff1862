/**
 * The end of a limited request: a failing `reconcile` costs only its own value, header naming
 * never fails for valid ids nor leaves a lease open, and header integers stay within RFC 8941.
 * Real requests (Deno.serve on a free port, fetch) against DynamoDB Local.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { Limit, RateLimiter } from "../mod.ts";
import {
  defaultPolicyName,
  getLease,
  limitQuotas,
  MAX_POLICY_NAME,
  MAX_SF_INTEGER,
  withRateLimit,
} from "../src/http/mod.ts";
import { rateLimit, type RateLimitEnv } from "../src/http/hono.ts";
import type { ErrorPhase } from "../src/http/responses.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;

function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    onError: (err) => new Response(`server error: ${(err as Error).message}`, { status: 500 }),
  }, handler);
  const { port } = server.addr as Deno.NetAddr;
  return { url: `http://127.0.0.1:${port}`, stop: () => server.shutdown() };
}

/** The README's reconcile: the usage header minus the estimate; no header charges the estimate. */
function readmeReconcile(res: Response) {
  const used = Number(res.headers.get("x-usage-tokens") || NaN); // missing or empty: NaN
  return Number.isFinite(used) ? { tpm: used - 500 } : {};
}

/** Every integer of the IETF fields, to check against RFC 8941's 15 digits. */
function sfIntegers(headers: Headers): string[] {
  const fields = `${headers.get("RateLimit-Policy")}, ${headers.get("RateLimit")}`;
  return [...fields.matchAll(/;[qwrt]=(-?\d+)/g)].map((m) => m[1]);
}

dynamoTest("HTTP helpers: settling and headers on DynamoDB Local", async (t, { client }) => {
  const limiter = new RateLimiter({
    tableName: uniqueTableName("http_settle"),
    client,
    clock: () => T0,
    timeoutMs: 10_000,
  });
  await limiter.createTable();
  try {
    await t.step("a bad reconcile keeps the handler's own adjust and the rest", async () => {
      const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 100_000)];
      const errors: [ErrorPhase, string][] = [];
      const reconcilers: Record<string, (res: Response) => unknown> = {
        nan: () => ({ tpm: NaN }),
        string: () => ({ tpm: "42" }),
        throws: () => {
          throw new Error("usage header unreadable");
        },
        "not-an-object": () => "oops",
        partial: () => ({ tpm: NaN, rpm: 2 }),
        "readme-no-header": readmeReconcile,
        "readme-header": readmeReconcile,
      };
      const app = serve(withRateLimit(async (req) => {
        const path = new URL(req.url).pathname.slice(1);
        if (path.startsWith("readme")) {
          const headers = path === "readme-header" ? { "x-usage-tokens": "742" } : undefined;
          return new Response("answer", { headers });
        }
        await getLease(req)!.adjust({ tpm: 3000 });
        return new Response("answer");
      }, {
        limiter,
        key: (req) => ({
          entityId: `key-${new URL(req.url).pathname.slice(1)}`,
          resource: "chat",
          limits,
          consume: { rpm: 1, tpm: 500 },
        }),
        reconcile: (res, _lease, { request }) =>
          reconcilers[new URL(request.url).pathname.slice(1)](res) as Record<string, number>,
        onError: (err, phase) => void errors.push([phase, (err as Error).message]),
      }));
      const available = (name: string) =>
        limiter.available({ entityId: `key-${name}`, resource: "chat", limits });
      try {
        for (const name of Object.keys(reconcilers)) {
          const res = await fetch(`${app.url}/${name}`);
          assert.equal(res.status, 200, name);
          assert.equal(await res.text(), "answer");
        }
        // 500 taken, the handler's 3,000 added; the bad value alone is dropped.
        for (const name of ["nan", "string", "throws", "not-an-object"]) {
          assert.deepEqual(await available(name), { rpm: 99, tpm: 96_500 }, name);
        }
        assert.deepEqual(await available("partial"), { rpm: 97, tpm: 96_500 });
        // A missing usage header charges the estimate, never less.
        assert.deepEqual(await available("readme-no-header"), { rpm: 99, tpm: 99_500 });
        assert.deepEqual(await available("readme-header"), { rpm: 99, tpm: 99_258 });
        assert.deepEqual(errors.map(([phase]) => phase), Array(5).fill("reconcile"));
        assert.match(errors[0][1], /Invalid adjust\.tpm: NaN/);
        assert.match(errors[1][1], /Invalid adjust\.tpm: "42"/);
        assert.equal(errors[2][1], "usage header unreadable");
        assert.match(errors[3][1], /Invalid reconcile\(\): "oops"/);
        assert.match(errors[4][1], /Invalid adjust\.tpm: NaN/);
      } finally {
        await app.stop();
      }
    });

    await t.step("Hono: a bad reconcile keeps the handler's adjust", async () => {
      const limits = [Limit.perMinute("tpm", 100_000)];
      const errors: ErrorPhase[] = [];
      const hono = new Hono<RateLimitEnv>();
      hono.use(
        "*",
        rateLimit({
          limiter,
          key: () => ({ entityId: "key-hono", resource: "chat", limits, consume: { tpm: 500 } }),
          reconcile: () => ({ tpm: NaN }),
          onError: (_err, phase) => void errors.push(phase),
        }),
      );
      hono.get("/", async (c) => {
        await c.get("lease").adjust({ tpm: 3000 });
        return c.text("answer");
      });
      const app = serve(hono.fetch);
      try {
        assert.equal(await (await fetch(app.url)).text(), "answer");
        const left = await limiter.available({ entityId: "key-hono", resource: "chat", limits });
        assert.deepEqual(left, { tpm: 96_500 });
        assert.deepEqual(errors, ["reconcile"]);
      } finally {
        await app.stop();
      }
    });

    for (const length of [253, 256]) {
      await t.step(
        `cascade to a parent id of ${length} characters: named, committed, 429`,
        async () => {
          const parentId = `proj-${"x".repeat(length - 5)}`;
          const childId = `key-long-${length}`;
          await limiter.createEntity({ entityId: parentId });
          await limiter.createEntity({ entityId: childId, parentId });
          const limits = [Limit.perMinute("rpm", 2), Limit.perMinute("tpm", 1_000)];
          const errors: unknown[] = [];
          let calls = 0;
          const app = serve(withRateLimit(() => {
            calls++;
            return new Response("ok");
          }, {
            limiter,
            key: () => ({
              entityId: childId,
              resource: "chat",
              limits,
              consume: { rpm: 1, tpm: 100 },
              cascade: true,
            }),
            reconcile: () => ({ tpm: 50 }),
            onError: (err) => void errors.push(err),
          }));
          try {
            const policies: string[] = [];
            for (let i = 0; i < 2; i++) {
              const res = await fetch(app.url);
              assert.equal(res.status, 200);
              assert.equal(await res.text(), "ok");
              policies.push(res.headers.get("RateLimit-Policy")!);
            }
            const refused = await fetch(app.url);
            assert.equal(refused.status, 429);
            assert.equal(refused.headers.get("Retry-After"), "30");
            await refused.body?.cancel();
            assert.equal(calls, 2);
            assert.deepEqual(errors, []);

            const names = [...policies[0].matchAll(/"([^"]*)";q=/g)].map((m) => m[1]);
            assert.equal(names.length, 4);
            assert.deepEqual(names.slice(0, 2), ["rpm", "tpm"]);
            for (const [i, limit] of ["rpm", "tpm"].entries()) {
              const name = names[2 + i];
              assert.ok(name.length <= MAX_POLICY_NAME, `${name.length} chars`);
              assert.ok(name.startsWith("proj-xxxx") && name.endsWith(`/${limit}`), name);
              assert.match(name, /~[0-9a-f]{16}\//, "shortened with a hash of the id");
            }
            assert.equal(policies[1], policies[0], "the same name on every response");
            assert.match(refused.headers.get("RateLimit")!, /~[0-9a-f]{16}\/rpm";r=0;t=60/);
            // Both leases committed with reconcile's 50, on the key and on the parent.
            for (const entityId of [childId, parentId]) {
              const left = await limiter.available({ entityId, resource: "chat", limits });
              assert.deepEqual(left, { rpm: 0, tpm: 700 }, entityId);
            }
          } finally {
            await app.stop();
          }
        },
      );
    }

    await t.step(
      "a policyName that throws: responses keep their status, leases close",
      async () => {
        const limits = [Limit.perMinute("rpm", 1), Limit.perMinute("tpm", 1_000)];
        const errors: ErrorPhase[] = [];
        for (
          const policyName of [
            () => {
              throw new Error("naming bug");
            },
            () => "n".repeat(300), // breaks the 256-character rule
          ]
        ) {
          const entityId = `key-naming-${errors.length}`;
          const app = serve(withRateLimit(() => new Response("ok"), {
            limiter,
            key: () => ({ entityId, resource: "chat", limits, consume: { rpm: 1, tpm: 100 } }),
            reconcile: () => ({ tpm: 25 }),
            headers: { policyName },
            onError: (_err, phase) => void errors.push(phase),
          }));
          try {
            const ok = await fetch(app.url);
            assert.equal(ok.status, 200);
            assert.equal(await ok.text(), "ok");
            assert.equal(ok.headers.get("RateLimit"), null);
            const refused = await fetch(app.url);
            assert.equal(refused.status, 429);
            assert.equal(refused.headers.get("Retry-After"), "60");
            assert.equal((await refused.json()).error, "rate_limit_exceeded");
            const left = await limiter.available({ entityId, resource: "chat", limits });
            assert.deepEqual(left, { rpm: 0, tpm: 875 }, "committed with reconcile's 25");
          } finally {
            await app.stop();
          }
        }
        assert.deepEqual(errors, ["headers", "headers", "headers", "headers"]);
      },
    );

    await t.step("a key deep in debt: every header integer has at most 15 digits", async () => {
      const limits = [Limit.perHour("tph", 1)];
      const app = serve(withRateLimit(async (req) => {
        await getLease(req)!.adjust({ tph: 1e15 }); // one huge answer
        return new Response("ok");
      }, {
        limiter,
        key: () => ({ entityId: "key-debt", resource: "chat", limits, consume: { tph: 1 } }),
        headers: { openai: true },
      }));
      try {
        await (await fetch(app.url)).text();
        const left = await limiter.available({ entityId: "key-debt", resource: "chat", limits });
        assert.deepEqual(left, { tph: -1e15 });
        const refused = await fetch(app.url);
        assert.equal(refused.status, 429);
        await refused.body?.cancel();
        // (1e15 + 1) tokens at 1 an hour: 3.6e18 s, 19 digits; written as the 15-digit maximum.
        assert.equal(refused.headers.get("RateLimit"), `"tph";r=0;t=${MAX_SF_INTEGER}`);
        assert.equal(refused.headers.get("RateLimit-Policy"), `"tph";q=1;w=3600`);
        for (const n of sfIntegers(refused.headers)) assert.ok(n.length <= 15, n);
      } finally {
        await app.stop();
      }
    });
  } finally {
    await limiter.close();
  }
});

Deno.test("limitQuotas clamps every number to RFC 8941's 15 digits", () => {
  const limit = Limit.perDay("tpd", 1, { burst: 1e12 }); // w = 1e12 days
  const [q] = limitQuotas([{
    entityId: "key-1",
    resource: "chat",
    limitName: "tpd",
    limit,
    available: -1e15,
    requested: 1,
    exceeded: true,
    retryAfterSeconds: 1,
  }]);
  assert.deepEqual(
    [q.quota, q.windowSeconds, q.remaining, q.resetSeconds],
    [1e12, MAX_SF_INTEGER, 0, MAX_SF_INTEGER],
  );
});

Deno.test("defaultPolicyName: long ids are cut to 256 characters, deterministically", () => {
  const status = (entityId: string) => ({
    entityId,
    resource: "chat",
    limitName: "tpm",
    limit: Limit.perMinute("tpm", 100),
    available: 100,
    requested: 1,
    exceeded: false,
    retryAfterSeconds: 0,
  });
  const id252 = `p${"x".repeat(251)}`;
  assert.equal(defaultPolicyName(status(id252), "key-1"), `${id252}/tpm`, "256: kept whole");
  const a = defaultPolicyName(status(`${id252}a`), "key-1");
  const b = defaultPolicyName(status(`${id252}b`), "key-1");
  assert.equal(a.length, 256);
  assert.notEqual(a, b, "ids that differ past the cut get different names");
  assert.equal(defaultPolicyName(status(`${id252}a`), "key-1"), a);
  assert.equal(defaultPolicyName(status(`${id252}a`), `${id252}a`), "tpm");
});
