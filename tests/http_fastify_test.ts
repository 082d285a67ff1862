/**
 * The Fastify plugin on a real Fastify 5 server, over real HTTP, with a limiter on DynamoDB
 * Local.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import Fastify, { type FastifyInstance } from "fastify";
import { FailureMode, Limit, RateLimiter, ValidationError } from "../mod.ts";
import { type FastifyRateLimitOptions, getLease, rateLimit } from "../src/http/fastify.ts";
import type { ErrorPhase } from "../src/http/responses.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const limits = [Limit.perMinute("rpm", 2), Limit.perMinute("tpm", 1_000)];

/** A Fastify app with the plugin registered, then `routes`, listening on a free port. */
async function serve(
  options: FastifyRateLimitOptions,
  routes: (app: FastifyInstance) => void,
) {
  const app = Fastify({ forceCloseConnections: true });
  await app.register(rateLimit, options);
  routes(app);
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, stop: () => app.close() };
}

/** Waits until `check` passes (it throws until then), for what happens after a disconnect. */
async function eventually(check: () => Promise<void>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

dynamoTest("Fastify plugin on DynamoDB Local", async (t, { client }) => {
  const limiter = new RateLimiter({
    tableName: uniqueTableName("http_fastify"),
    client,
    clock: () => T0,
    timeoutMs: 10_000,
  });
  const available = (entityId: string) => limiter.available({ entityId, resource: "chat", limits });
  const errors: [ErrorPhase, unknown][] = [];
  const onError = (err: unknown, phase: ErrorPhase) => void errors.push([phase, err]);
  await limiter.createTable();
  try {
    await t.step(
      "preHandler: admitted with headers and the handler's adjust, then 429",
      async () => {
        let calls = 0;
        const server = await serve({
          limiter,
          hook: "preHandler",
          key: (request) => ({
            entityId: String(request.headers["x-api-key"]),
            resource: "chat",
            limits,
            consume: { rpm: 1, tpm: (request.body as { estimate: number }).estimate },
          }),
          headers: { openai: true },
          onError,
        }, (app) => {
          app.post("/v1/chat", async (request) => {
            calls++;
            const { estimate } = request.body as { estimate: number };
            await getLease(request)!.adjust({ tpm: 150 - estimate });
            return { usage: 150 };
          });
        });
        const post = (estimate: number) =>
          fetch(`${server.url}/v1/chat`, {
            method: "POST",
            headers: { "x-api-key": "key-a", "content-type": "application/json" },
            body: JSON.stringify({ estimate }),
          });
        try {
          const ok = await post(400);
          assert.equal(ok.status, 200);
          assert.deepEqual(await ok.json(), { usage: 150 });
          assert.equal(ok.headers.get("RateLimit-Policy"), `"rpm";q=2;w=60, "tpm";q=1000;w=60`);
          assert.equal(ok.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=600;t=24`);
          assert.equal(ok.headers.get("x-ratelimit-remaining-tokens"), "600");
          assert.deepEqual(await available("key-a"), { rpm: 1, tpm: 850 });

          await (await post(100)).text();
          const refused = await post(100);
          assert.equal(refused.status, 429);
          assert.equal(refused.headers.get("content-type"), "application/json; charset=utf-8");
          assert.equal(refused.headers.get("Retry-After"), "30");
          assert.equal(refused.headers.get("RateLimit"), `"rpm";r=0;t=60, "tpm";r=700;t=18`);
          const body = await refused.json();
          assert.equal(body.error, "rate_limit_exceeded");
          assert.equal(body.retry_after_seconds, 30);
          assert.equal(calls, 2, "the refused request never reached the handler");
        } finally {
          await server.stop();
        }
      },
    );

    await t.step("a streamed reply is reconciled before its end reaches the client", async () => {
      const usage = new WeakMap<object, number>();
      const seen: boolean[] = [];
      const server = await serve({
        limiter,
        key: () => ({ entityId: "key-b", resource: "chat", limits, consume: { rpm: 1, tpm: 500 } }),
        reconcile: (request, _reply, _lease, { completed }) => {
          seen.push(completed);
          return { tpm: usage.get(request)! - 500 };
        },
        onError,
      }, (app) => {
        app.get("/stream", (request, reply) => {
          async function* answer() {
            for (const part of ["a", "b", "c"]) {
              await new Promise((r) => setTimeout(r, 5));
              yield part;
            }
            usage.set(request, 640);
          }
          return reply.type("text/event-stream").send(Readable.from(answer()));
        });
      });
      try {
        const res = await fetch(`${server.url}/stream`);
        assert.equal(res.headers.get("content-type"), "text/event-stream");
        assert.equal(res.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=500;t=30`);
        assert.equal(await res.text(), "abc");
        assert.deepEqual(seen, [true]);
        assert.deepEqual(await available("key-b"), { rpm: 1, tpm: 360 });
      } finally {
        await server.stop();
      }
    });

    await t.step("a client that leaves mid-stream: reconcile with completed: false", async () => {
      const seen: boolean[] = [];
      const server = await serve({
        limiter,
        key: () => ({ entityId: "key-c", resource: "chat", limits, consume: { rpm: 1, tpm: 500 } }),
        reconcile: (_request, _reply, _lease, { completed }) => {
          seen.push(completed);
          return completed ? undefined : { tpm: -500 };
        },
        onError,
      }, (app) => {
        app.get("/stream", (_request, reply) => {
          async function* endless() {
            for (;;) {
              await new Promise((r) => setTimeout(r, 5));
              yield "x".repeat(1000);
            }
          }
          return reply.send(Readable.from(endless()));
        });
      });
      try {
        const ctl = new AbortController();
        const res = await fetch(`${server.url}/stream`, { signal: ctl.signal });
        const reader = res.body!.getReader();
        await reader.read();
        ctl.abort();
        await reader.cancel().catch(() => {});
        await eventually(async () => {
          assert.deepEqual(await available("key-c"), { rpm: 1, tpm: 1000 });
        });
        assert.deepEqual(seen, [false]);
      } finally {
        await server.stop();
      }
    });

    await t.step("a handler that throws gives the tokens back, whatever its status", async () => {
      const server = await serve({
        limiter,
        key: (request) => ({
          entityId: `key-${request.url.slice(1)}`,
          resource: "chat",
          limits,
          consume: { rpm: 1, tpm: 400 },
        }),
        reconcile: () => ({ tpm: 100 }),
        onError,
      }, (app) => {
        app.get("/throws", () => {
          throw new Error("upstream down");
        });
        app.get("/gone", () => {
          throw Object.assign(new Error("no such model"), { statusCode: 404 });
        });
        app.get("/ok", () => "fine");
      });
      try {
        const thrown = await fetch(`${server.url}/throws`);
        assert.equal(thrown.status, 500);
        assert.equal((await thrown.json()).message, "upstream down");
        assert.deepEqual(await available("key-throws"), { rpm: 2, tpm: 1000 });
        const gone = await fetch(`${server.url}/gone`);
        assert.equal(gone.status, 404);
        await gone.body?.cancel();
        assert.deepEqual(await available("key-gone"), { rpm: 2, tpm: 1000 });
        assert.equal(await (await fetch(`${server.url}/ok`)).text(), "fine");
        assert.deepEqual(await available("key-ok"), { rpm: 1, tpm: 500 });
      } finally {
        await server.stop();
      }
    });

    await t.step("400 for a bad key, 403 for a disabled entity, null skips", async () => {
      await limiter.createEntity({ entityId: "key-off" });
      await limiter.disableEntity("key-off");
      const keyErrors: ErrorPhase[] = [];
      const server = await serve({
        limiter,
        key: (request) => {
          const id = request.headers["x-api-key"];
          if (request.url === "/health") return null;
          if (id === "throw") throw new Error("no key");
          return { entityId: String(id), resource: "chat", limits, consume: { rpm: 1 } };
        },
        onInvalidKey: (invalid, request) =>
          request.url === "/gateway"
            ? Response.json({ error: "unauthorized" }, { status: 401 })
            : Response.json({ field: invalid.field }, { status: 400 }),
        onError: (_err, phase) => void keyErrors.push(phase),
      }, (app) => {
        app.get("/*", () => "reached");
      });
      const get = (path: string, key: string) =>
        fetch(`${server.url}${path}`, { headers: { "x-api-key": key } });
      try {
        const bad = await get("/", "a#b");
        assert.equal(bad.status, 400);
        assert.deepEqual(await bad.json(), { field: "entityId" });
        const threw = await get("/", "throw");
        assert.equal(threw.status, 400);
        assert.deepEqual(await threw.json(), { field: "key()" });
        const gateway = await get("/gateway", "a#b");
        assert.equal(gateway.status, 401);
        assert.deepEqual(await gateway.json(), { error: "unauthorized" });
        assert.deepEqual(keyErrors, ["key", "key", "key"]);

        const off = await get("/", "key-off");
        assert.equal(off.status, 403);
        assert.equal(off.headers.get("Retry-After"), null);
        assert.equal((await off.json()).disabled, "entity");

        const health = await get("/health", "throw");
        assert.equal(health.status, 200);
        assert.equal(await health.text(), "reached");
        assert.equal(health.headers.get("RateLimit"), null);
      } finally {
        await server.stop();
      }
    });

    await t.step("an outage: 503 with FAIL_CLOSED, passes with FAIL_OPEN", async () => {
      const dead = new RateLimiter({
        tableName: "unreachable",
        endpoint: "http://127.0.0.1:9",
        timeoutMs: 300,
        closeTimeoutMs: 100,
      });
      const server = await serve({
        limiter: dead,
        key: (request) => ({
          entityId: "key-d",
          resource: "chat",
          limits,
          consume: { rpm: 1 },
          failureMode: request.url.includes("open")
            ? FailureMode.FAIL_OPEN
            : FailureMode.FAIL_CLOSED,
        }),
        onError,
      }, (app) => {
        app.get("/", () => "served");
      });
      try {
        const closed = await fetch(server.url);
        assert.equal(closed.status, 503);
        assert.equal(closed.headers.get("Retry-After"), "1");
        assert.equal((await closed.json()).error, "rate_limiter_unavailable");
        const open = await fetch(`${server.url}/?open=1`);
        assert.equal(open.status, 200);
        assert.equal(await open.text(), "served");
      } finally {
        await server.stop();
        await dead.close();
      }
    });

    await t.step("a scope: only its routes are limited; a bad hook is refused", async () => {
      const app = Fastify({ forceCloseConnections: true });
      await app.register(async (scope) => {
        await scope.register(rateLimit, {
          limiter,
          key: () => ({ entityId: "key-e", resource: "chat", limits, consume: { rpm: 1 } }),
          onError,
        });
        scope.get("/limited", () => "limited");
      });
      app.get("/free", () => "free");
      await app.listen({ port: 0, host: "127.0.0.1" });
      const { port } = app.server.address() as AddressInfo;
      try {
        const limited = await fetch(`http://127.0.0.1:${port}/limited`);
        assert.equal(await limited.text(), "limited");
        assert.match(limited.headers.get("RateLimit")!, /^"rpm";r=1;t=30/);
        const free = await fetch(`http://127.0.0.1:${port}/free`);
        assert.equal(await free.text(), "free");
        assert.equal(free.headers.get("RateLimit"), null);
        assert.deepEqual(await available("key-e"), { rpm: 1, tpm: 1000 });
      } finally {
        await app.close();
      }

      const bad = Fastify();
      await assert.rejects(
        async () => {
          await bad.register(rateLimit, {
            limiter,
            key: () => null,
            hook: "onSend" as "onRequest",
          });
        },
        (err) => err instanceof ValidationError && err.field === "hook",
      );
      await bad.close().catch(() => {});
    });

    assert.deepEqual(errors, [], "nothing went wrong after a response");
  } finally {
    await limiter.close();
  }
});
