import assert from "node:assert/strict";
import { Hono } from "hono";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { getLease, rateLimitedResponse, withRateLimit } from "../src/http/mod.ts";
import { rateLimit, type RateLimitEnv } from "../src/http/hono.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const rpm = Limit.perMinute("rpm", 2);
const tpm = Limit.perMinute("tpm", 1_000);
const limits = [rpm, tpm];

/** Serves `handler` on a free port; `stop` waits for the server to finish. */
function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    onError: (err) => new Response(`handler failed: ${(err as Error).message}`, { status: 500 }),
  }, handler);
  const { port } = server.addr as Deno.NetAddr;
  return { url: `http://127.0.0.1:${port}`, stop: () => server.shutdown() };
}

/** A body that sends `chunks` one by one, then calls `done`. */
function slowBody(chunks: string[], done?: () => Promise<void> | void): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  return new ReadableStream({
    async pull(controller) {
      await new Promise((r) => setTimeout(r, 5));
      if (i < chunks.length) controller.enqueue(enc.encode(chunks[i++]));
      else {
        await done?.();
        controller.close();
      }
    },
  });
}

Deno.test({
  name: "HTTP integration on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const now = T0;
    const limiter = new RateLimiter({
      tableName: uniqueTableName("http"),
      client,
      clock: () => now,
      timeoutMs: 10_000,
    });
    const available = (entityId: string, resource = "chat") =>
      limiter.available({ entityId, resource, limits });
    const errors: unknown[] = [];
    const onError = (err: unknown) => void errors.push(err);
    try {
      await limiter.createTable();
      await t.step("fetch handler: admitted requests carry the quota left", async () => {
        const app = serve(withRateLimit(() => new Response("hello"), {
          limiter,
          key: (req) => ({
            entityId: req.headers.get("x-api-key")!,
            resource: "chat",
            limits,
            consume: { rpm: 1, tpm: 100 },
          }),
        }));
        try {
          const res = await fetch(app.url, { headers: { "x-api-key": "key-a" } });
          assert.equal(res.status, 200);
          assert.equal(await res.text(), "hello");
          assert.equal(res.headers.get("RateLimit-Policy"), `"rpm";q=2;w=60, "tpm";q=1000;w=60`);
          // rpm: 1 of 2 left, one token back in 30 s; tpm: 900 left, 100 back in 6 s.
          assert.equal(res.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=900;t=6`);
          assert.equal(res.headers.get("Retry-After"), null);
          assert.equal(res.headers.get("x-ratelimit-remaining-requests"), null);
        } finally {
          await app.stop();
        }
      });

      await t.step(
        "fetch handler: a refused request gets 429, Retry-After and a JSON body",
        async () => {
          let calls = 0;
          const app = serve(withRateLimit(() => {
            calls++;
            return new Response("ok");
          }, {
            limiter,
            key: (req) => ({
              entityId: "key-b",
              resource: "chat",
              limits,
              consume: { rpm: 1, tpm: Number(new URL(req.url).searchParams.get("tpm")) },
            }),
            headers: { openai: true },
          }));
          try {
            const first = await fetch(`${app.url}/?tpm=300`);
            await first.body?.cancel();
            assert.equal(first.headers.get("x-ratelimit-limit-requests"), "2");
            assert.equal(first.headers.get("x-ratelimit-remaining-requests"), "1");
            assert.equal(first.headers.get("x-ratelimit-reset-requests"), "30s");
            assert.equal(first.headers.get("x-ratelimit-remaining-tokens"), "700");
            assert.equal(first.headers.get("x-ratelimit-reset-tokens"), "18s");

            const refused = await fetch(`${app.url}/?tpm=800`);
            assert.equal(refused.status, 429);
            assert.equal(refused.headers.get("content-type"), "application/json; charset=utf-8");
            // 100 tokens missing at 1000/min: 6 s; rpm still had a token.
            assert.equal(refused.headers.get("Retry-After"), "6");
            assert.equal(
              refused.headers.get("RateLimit-Policy"),
              `"rpm";q=2;w=60, "tpm";q=1000;w=60`,
            );
            assert.equal(refused.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=700;t=18`);
            const body = await refused.json();
            assert.equal(body.error, "rate_limit_exceeded");
            assert.equal(body.retry_after_seconds, 6);
            assert.equal(body.retry_after_ms, 6000);
            assert.deepEqual(
              body.limits.map((
                l: Record<string, unknown>,
              ) => [l.limit_name, l.available, l.exceeded]),
              [["rpm", 1, false], ["tpm", 700, true]],
            );
            assert.equal(calls, 1, "the handler never saw the refused request");
            assert.deepEqual(await available("key-b"), { rpm: 1, tpm: 700 });
          } finally {
            await app.stop();
          }
        },
      );

      await t.step("a request larger than the capacity: 429 without Retry-After", async () => {
        const app = serve(withRateLimit(() => new Response("ok"), {
          limiter,
          key: () => ({ entityId: "key-c", resource: "chat", limits, consume: { tpm: 5_000 } }),
        }));
        try {
          const res = await fetch(app.url);
          assert.equal(res.status, 429);
          assert.equal(res.headers.get("Retry-After"), null);
          assert.equal(res.headers.get("RateLimit"), `"rpm";r=2;t=0, "tpm";r=1000;t=0`);
          const body = await res.json();
          assert.equal(body.retry_after_seconds, null);
          assert.equal(body.retry_after_ms, null);
        } finally {
          await app.stop();
        }
      });

      await t.step("a streamed body is reconciled once it has been sent", async () => {
        const usage = new WeakMap<Request, number>();
        const seen: boolean[] = [];
        const app = serve(withRateLimit((req) =>
          new Response(
            slowBody(["a", "b", "c"], () => void usage.set(req, 640)),
            { headers: { "content-type": "text/event-stream" } },
          ), {
          limiter,
          key: () => ({
            entityId: "key-d",
            resource: "chat",
            limits,
            consume: { rpm: 1, tpm: 500 },
          }),
          reconcile: (_res, lease, { request, completed }) => {
            seen.push(completed);
            assert.equal(lease.state, "open");
            return { tpm: usage.get(request)! - 500 };
          },
          onError,
        }));
        try {
          const res = await fetch(app.url);
          assert.equal(res.headers.get("content-type"), "text/event-stream");
          assert.equal(res.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=500;t=30`);
          assert.equal(await res.text(), "abc");
          // The body ends only after the adjustment is written: no polling needed.
          assert.deepEqual(seen, [true]);
          assert.deepEqual(await available("key-d"), { rpm: 1, tpm: 360 });
        } finally {
          await app.stop();
        }
      });

      await t.step(
        "the handler adjusts its own lease; a client that leaves still commits",
        async () => {
          let finished!: () => void;
          const committed = new Promise<void>((r) => (finished = r));
          const seen: boolean[] = [];
          const app = serve(withRateLimit(async (req) => {
            await getLease(req)!.adjust({ tpm: 200 });
            return new Response(slowBody(Array.from({ length: 1000 }, () => "x".repeat(1000))));
          }, {
            limiter,
            key: () => ({ entityId: "key-e", resource: "chat", limits, consume: { tpm: 100 } }),
            reconcile: (_res, _lease, { completed }) => {
              seen.push(completed);
              setTimeout(finished, 50); // the commit follows reconcile
              return undefined;
            },
            onError,
          }));
          try {
            const ctl = new AbortController();
            const res = await fetch(app.url, { signal: ctl.signal });
            const reader = res.body!.getReader();
            await reader.read();
            ctl.abort();
            await reader.cancel().catch(() => {});
            await committed;
            assert.deepEqual(seen, [false]);
            assert.deepEqual(await available("key-e"), { rpm: 2, tpm: 700 });
          } finally {
            await app.stop();
          }
        },
      );

      await t.step("a handler that throws gives its tokens back", async () => {
        const app = serve(withRateLimit(() => {
          throw new Error("upstream down");
        }, {
          limiter,
          key: () => ({
            entityId: "key-f",
            resource: "chat",
            limits,
            consume: { rpm: 1, tpm: 400 },
          }),
          onError,
        }));
        try {
          const res = await fetch(app.url);
          assert.equal(res.status, 500);
          assert.equal(await res.text(), "handler failed: upstream down");
          assert.deepEqual(await available("key-f"), { rpm: 2, tpm: 1000 });
        } finally {
          await app.stop();
        }
      });

      await t.step("key() returning null skips limiting; bodiless responses commit", async () => {
        const app = serve(withRateLimit(
          (req) => new Response(null, { status: req.method === "HEAD" ? 204 : 200 }),
          {
            limiter,
            key: (req) =>
              new URL(req.url).pathname === "/health"
                ? null
                : { entityId: "key-g", resource: "chat", limits, consume: { rpm: 1 } },
            reconcile: () => ({ tpm: 50 }),
          },
        ));
        try {
          const health = await fetch(`${app.url}/health`);
          await health.body?.cancel();
          assert.equal(health.status, 200);
          assert.equal(health.headers.get("RateLimit"), null);
          const head = await fetch(app.url, { method: "HEAD" });
          assert.equal(head.status, 204);
          assert.equal(head.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=1000;t=0`);
          assert.deepEqual(await available("key-g"), { rpm: 1, tpm: 950 });
        } finally {
          await app.stop();
        }
      });

      await t.step("cascade: the parent's limits are named after it", async () => {
        await limiter.createEntity({ entityId: "proj-h" });
        await limiter.createEntity({ entityId: "key-h", parentId: "proj-h" });
        const app = serve(withRateLimit(() => new Response("ok"), {
          limiter,
          key: () => ({
            entityId: "key-h",
            resource: "chat",
            limits: [tpm],
            consume: { tpm: 250 },
            cascade: true,
          }),
          headers: { openai: { tpm: "tokens" } },
        }));
        try {
          await (await fetch(app.url)).body?.cancel();
          const res = await fetch(app.url);
          await res.body?.cancel();
          assert.equal(
            res.headers.get("RateLimit-Policy"),
            `"tpm";q=1000;w=60, "proj-h/tpm";q=1000;w=60`,
          );
          assert.equal(res.headers.get("RateLimit"), `"tpm";r=500;t=30, "proj-h/tpm";r=500;t=30`);
          assert.equal(res.headers.get("x-ratelimit-remaining-tokens"), "500");
        } finally {
          await app.stop();
        }
      });

      await t.step("DynamoDB unreachable with FAIL_CLOSED: 503", async () => {
        const dead = new RateLimiter({
          tableName: "unreachable",
          endpoint: "http://127.0.0.1:9",
          timeoutMs: 300,
        });
        const app = serve(withRateLimit(() => new Response("ok"), {
          limiter: dead,
          key: () => ({ entityId: "key-i", resource: "chat", limits, consume: { rpm: 1 } }),
        }));
        try {
          const res = await fetch(app.url);
          assert.equal(res.status, 503);
          assert.equal(res.headers.get("Retry-After"), "1");
          assert.equal((await res.json()).error, "rate_limiter_unavailable");
        } finally {
          await app.stop();
          await dead.close();
        }
      });

      await t.step("Hono middleware: headers, lease in the context, 429", async () => {
        const hono = new Hono<RateLimitEnv>();
        hono.use(
          "/v1/*",
          rateLimit({
            limiter,
            key: async (c) => {
              const { estimate } = await c.req.json<{ estimate: number }>();
              return {
                entityId: c.req.header("x-api-key") ?? "anonymous",
                resource: "chat",
                limits,
                consume: { rpm: 1, tpm: estimate },
              };
            },
            onError,
          }),
        );
        hono.post("/v1/chat", async (c) => {
          const { estimate } = await c.req.json<{ estimate: number }>();
          await c.get("lease").adjust({ tpm: 150 - estimate }); // the "real" usage was 150
          return c.json({ usage: 150 });
        });
        hono.get("/open", (c) => c.text("free"));
        const app = serve(hono.fetch);
        const post = (estimate: number) =>
          fetch(`${app.url}/v1/chat`, {
            method: "POST",
            headers: { "x-api-key": "key-j", "content-type": "application/json" },
            body: JSON.stringify({ estimate }),
          });
        try {
          const ok = await post(400);
          assert.equal(ok.status, 200);
          assert.deepEqual(await ok.json(), { usage: 150 });
          assert.equal(ok.headers.get("content-type"), "application/json");
          assert.equal(ok.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=600;t=24`);
          assert.deepEqual(await available("key-j"), { rpm: 1, tpm: 850 });

          await (await post(100)).text();
          const refused = await post(100);
          assert.equal(refused.status, 429);
          assert.equal(refused.headers.get("Retry-After"), "30");
          assert.equal(refused.headers.get("RateLimit"), `"rpm";r=0;t=60, "tpm";r=700;t=18`);
          assert.equal((await refused.json()).limits[0].exceeded, true);

          const open = await fetch(`${app.url}/open`);
          assert.equal(await open.text(), "free");
          assert.equal(open.headers.get("RateLimit"), null);
        } finally {
          await app.stop();
        }
      });

      await t.step("Hono middleware: streamed reconcile, rollback on handler error", async () => {
        const hono = new Hono<RateLimitEnv>();
        let usage = 0;
        hono.use(
          "*",
          rateLimit({
            limiter,
            key: (c) => ({
              entityId: c.req.path === "/fail" ? "key-k2" : "key-k",
              resource: "chat",
              limits,
              consume: { rpm: 1, tpm: 300 },
            }),
            reconcile: (
              _c,
              _lease,
              { completed },
            ) => (completed ? { tpm: usage - 300 } : undefined),
            onError,
          }),
        );
        hono.get("/stream", (c) => c.body(slowBody(["x", "y"], () => void (usage = 420))));
        hono.get("/fail", () => {
          throw new Error("model crashed");
        });
        hono.onError((err, c) => c.text(`failed: ${err.message}`, 502));
        const app = serve(hono.fetch);
        try {
          const res = await fetch(`${app.url}/stream`);
          assert.equal(res.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=700;t=18`);
          assert.equal(await res.text(), "xy");
          assert.deepEqual(await available("key-k"), { rpm: 1, tpm: 580 });

          const failed = await fetch(`${app.url}/fail`);
          assert.equal(failed.status, 502);
          assert.equal(await failed.text(), "failed: model crashed");
          assert.deepEqual(await available("key-k2"), { rpm: 2, tpm: 1000 });
        } finally {
          await app.stop();
        }
      });

      await t.step("rateLimitedResponse stands alone for custom flows", async () => {
        const err = await limiter.acquire({
          entityId: "key-l",
          resource: "chat",
          limits,
          consume: { rpm: 3 },
        }).then(() => undefined, (e) => e);
        assert.ok(err instanceof RateLimitExceeded);
        const res = rateLimitedResponse(err, { headers: { ietf: false, openai: true } });
        assert.equal(res.status, 429);
        assert.equal(res.headers.get("RateLimit"), null);
        assert.equal(res.headers.get("x-ratelimit-limit-requests"), "2");
        assert.deepEqual(await res.json(), err.asDict());
      });

      assert.deepEqual(errors, [], "no error after a response");
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
