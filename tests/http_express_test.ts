/**
 * The Express / Connect middleware on a real Express 5 server (and a plain `node:http` one),
 * over real HTTP, with a limiter on DynamoDB Local.
 */
import assert from "node:assert/strict";
import { createServer, type RequestListener } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { FailureMode, Limit, RateLimiter } from "../mod.ts";
import { getLease, rateLimit } from "../src/http/express.ts";
import type { ErrorPhase } from "../src/http/responses.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;
const limits = [Limit.perMinute("rpm", 2), Limit.perMinute("tpm", 1_000)];

/** Listens on a free port; `stop` closes the server and its connections. */
async function listen(app: RequestListener) {
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
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

dynamoTest("Express middleware on DynamoDB Local", async (t, { client }) => {
  const limiter = new RateLimiter({
    tableName: uniqueTableName("http_express"),
    client,
    clock: () => T0,
    timeoutMs: 10_000,
  });
  const available = (entityId: string) => limiter.available({ entityId, resource: "chat", limits });
  const errors: [ErrorPhase, unknown][] = [];
  const onError = (err: unknown, phase: ErrorPhase) => void errors.push([phase, err]);
  await limiter.createTable();
  try {
    await t.step("admitted with headers, the handler's adjust, then 429", async () => {
      let calls = 0;
      const app = express();
      app.use(
        express.json(),
        rateLimit({
          limiter,
          key: (req) => ({
            entityId: req.get("x-api-key")!,
            resource: "chat",
            limits,
            consume: { rpm: 1, tpm: req.body.estimate },
          }),
          headers: { openai: true },
          onError,
        }),
      );
      app.post("/v1/chat", async (req, res) => {
        calls++;
        await getLease(req)!.adjust({ tpm: 150 - req.body.estimate });
        res.json({ usage: 150 });
      });
      const server = await listen(app);
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
        assert.match(ok.headers.get("content-type")!, /^application\/json/);
        assert.equal(ok.headers.get("RateLimit-Policy"), `"rpm";q=2;w=60, "tpm";q=1000;w=60`);
        assert.equal(ok.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=600;t=24`);
        assert.equal(ok.headers.get("x-ratelimit-remaining-requests"), "1");
        assert.equal(ok.headers.get("x-ratelimit-remaining-tokens"), "600");
        assert.equal(ok.headers.get("Retry-After"), null);
        // The response ended after the commit: the handler's adjust is written.
        assert.deepEqual(await available("key-a"), { rpm: 1, tpm: 850 });

        await (await post(100)).text();
        const refused = await post(100);
        assert.equal(refused.status, 429);
        assert.equal(refused.headers.get("content-type"), "application/json; charset=utf-8");
        assert.equal(refused.headers.get("Retry-After"), "30");
        assert.equal(refused.headers.get("RateLimit"), `"rpm";r=0;t=60, "tpm";r=700;t=18`);
        assert.equal(refused.headers.get("x-ratelimit-remaining-requests"), "0");
        const body = await refused.json();
        assert.equal(body.error, "rate_limit_exceeded");
        assert.equal(body.retry_after_seconds, 30);
        assert.equal(calls, 2, "the refused request never reached the handler");
        assert.deepEqual(await available("key-a"), { rpm: 0, tpm: 700 });
      } finally {
        await server.stop();
      }
    });

    await t.step(
      "a streamed response is reconciled before its end reaches the client",
      async () => {
        const seen: boolean[] = [];
        const app = express();
        app.use(rateLimit({
          limiter,
          key: () => ({
            entityId: "key-b",
            resource: "chat",
            limits,
            consume: { rpm: 1, tpm: 500 },
          }),
          reconcile: (_req, res, lease, { completed }) => {
            seen.push(completed);
            assert.equal(lease.state, "open");
            return { tpm: Number(res.locals.usage) - 500 };
          },
          onError,
        }));
        app.get("/stream", (_req, res) => {
          res.setHeader("content-type", "text/event-stream");
          let i = 0;
          const tick = setInterval(() => {
            if (i < 3) res.write(`data: ${i++}\n\n`);
            else {
              clearInterval(tick);
              res.locals.usage = 640; // known once the answer is complete
              res.end();
            }
          }, 5);
        });
        const server = await listen(app);
        try {
          const res = await fetch(`${server.url}/stream`);
          assert.equal(res.headers.get("content-type"), "text/event-stream");
          assert.equal(res.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=500;t=30`);
          assert.equal(await res.text(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
          assert.deepEqual(seen, [true]);
          assert.deepEqual(await available("key-b"), { rpm: 1, tpm: 360 });
        } finally {
          await server.stop();
        }
      },
    );

    await t.step("a client that leaves mid-stream: reconcile with completed: false", async () => {
      const seen: boolean[] = [];
      const app = express();
      app.use(rateLimit({
        limiter,
        key: () => ({ entityId: "key-c", resource: "chat", limits, consume: { rpm: 1, tpm: 500 } }),
        // Nothing was delivered in full: give the estimate back, keep the request.
        reconcile: (_req, _res, _lease, { completed }) => {
          seen.push(completed);
          return completed ? undefined : { tpm: -500 };
        },
        onError,
      }));
      let stopped = false;
      app.get("/stream", (_req, res) => {
        const tick = setInterval(() => res.write("x".repeat(1000)), 5);
        res.on("close", () => {
          clearInterval(tick);
          stopped = true;
        });
      });
      const server = await listen(app);
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
        assert.ok(stopped);
      } finally {
        await server.stop();
      }
    });

    await t.step("a handler that fails gives the tokens back (throw, next(err))", async () => {
      const app = express();
      app.use(rateLimit({
        limiter,
        key: (req) => ({
          entityId: `key-${req.path.slice(1)}`,
          resource: "chat",
          limits,
          consume: { rpm: 1, tpm: 400 },
        }),
        reconcile: () => ({ tpm: 100 }),
        onError,
      }));
      app.get("/throws", () => {
        throw new Error("upstream down");
      });
      app.get("/next", (_req, _res, next) => next(new Error("model crashed")));
      app.get("/ok", (_req, res) => void res.send("fine"));
      app.use(
        (err: Error, req: express.Request, res: express.Response, _next: express.NextFunction) =>
          void res.status(req.path === "/next" ? 502 : 500).send(`failed: ${err.message}`),
      );
      const server = await listen(app);
      try {
        const thrown = await fetch(`${server.url}/throws`);
        assert.equal(thrown.status, 500);
        assert.equal(await thrown.text(), "failed: upstream down");
        assert.deepEqual(await available("key-throws"), { rpm: 2, tpm: 1000 });
        const passed = await fetch(`${server.url}/next`);
        assert.equal(passed.status, 502);
        assert.equal(await passed.text(), "failed: model crashed");
        assert.deepEqual(await available("key-next"), { rpm: 2, tpm: 1000 });
        // The same route succeeding commits, with reconcile's adjustment.
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
      const app = express();
      app.use(rateLimit({
        limiter,
        key: (req) => {
          const id = req.get("x-api-key");
          if (req.path === "/health") return null;
          if (id === "throw") throw new Error("no key");
          return { entityId: id!, resource: "chat", limits, consume: { rpm: 1 } };
        },
        onInvalidKey: (invalid, req) =>
          req.path === "/gateway"
            ? Response.json({ error: "unauthorized" }, { status: 401 })
            : Response.json({ field: invalid.field }, { status: 400 }),
        onError: (_err, phase) => void keyErrors.push(phase),
      }));
      app.get("/{*path}", (_req, res) => void res.send("reached"));
      const server = await listen(app);
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
      const app = express();
      app.use(rateLimit({
        limiter: dead,
        key: (req) => ({
          entityId: "key-d",
          resource: "chat",
          limits,
          consume: { rpm: 1 },
          failureMode: req.query.open ? FailureMode.FAIL_OPEN : FailureMode.FAIL_CLOSED,
        }),
        onError,
      }));
      app.get("/", (_req, res) => void res.send("served"));
      const server = await listen(app);
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

    await t.step("a missing table: 500 in both failure modes", async () => {
      const missing = new RateLimiter({ tableName: uniqueTableName("absent"), client });
      const seen: ErrorPhase[] = [];
      const app = express();
      app.use(rateLimit({
        limiter: missing,
        key: (req) => ({
          entityId: "key-e",
          resource: "chat",
          limits,
          consume: { rpm: 1 },
          failureMode: req.query.open ? FailureMode.FAIL_OPEN : FailureMode.FAIL_CLOSED,
        }),
        onError: (_err, phase) => void seen.push(phase),
      }));
      app.get("/", (_req, res) => void res.send("served"));
      const server = await listen(app);
      try {
        for (const path of ["/", "/?open=1"]) {
          const res = await fetch(`${server.url}${path}`);
          assert.equal(res.status, 500, path);
          assert.equal((await res.json()).error, "rate_limiter_misconfigured");
        }
        assert.deepEqual(seen, ["configuration", "configuration"]);
      } finally {
        await server.stop();
        await missing.close();
      }
    });

    await t.step("Connect-style on a plain node:http server", async () => {
      const limit = rateLimit({
        limiter,
        key: () => ({ entityId: "key-f", resource: "chat", limits, consume: { rpm: 1, tpm: 10 } }),
        onError,
      });
      const server = await listen((req, res) =>
        limit(req as express.Request, res as express.Response, (err?: unknown) => {
          if (err) {
            res.statusCode = 500;
            res.end();
            return;
          }
          res.end("plain");
        })
      );
      try {
        for (const expected of [200, 200, 429]) {
          const res = await fetch(server.url);
          assert.equal(res.status, expected);
          if (expected === 200) {
            assert.equal(await res.text(), "plain");
            assert.match(res.headers.get("RateLimit")!, /^"rpm";r=[01];t=/);
          } else {
            assert.equal((await res.json()).error, "rate_limit_exceeded");
          }
        }
        assert.deepEqual(await available("key-f"), { rpm: 0, tpm: 980 });
      } finally {
        await server.stop();
      }
    });

    assert.deepEqual(errors, [], "nothing went wrong after a response");
  } finally {
    await limiter.close();
  }
});
