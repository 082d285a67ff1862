/**
 * The Express / Connect middleware on a real Express 5 server (and a plain `node:http` one),
 * over real HTTP, with a limiter on DynamoDB Local: the scenarios shared with Fastify
 * (`./_http_adapter_cases.ts`), then Connect on `node:http`.
 */
import assert from "node:assert/strict";
import { createServer, type RequestListener } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { getLease, rateLimit } from "../src/http/express.ts";
import {
  type AdapterDriver,
  adapterSuite,
  limits,
  type TestServer,
} from "./_http_adapter_cases.ts";

/** Listens on a free port; `stop` closes the server and its connections. */
async function listen(app: RequestListener): Promise<TestServer> {
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

const expressDriver: AdapterDriver<express.Request, express.Response> = {
  serve(options, routes, { readsBody = false } = {}) {
    const app = express();
    if (readsBody) app.use(express.json());
    app.use(rateLimit(options));
    const { chat, stream, endless, failing, text } = routes;
    if (chat) app.post("/v1/chat", async (req, res) => void res.json(await chat(req)));
    if (stream) {
      app.get("/stream", (req, res) => {
        res.setHeader("content-type", "text/event-stream");
        let i = 0;
        const tick = setInterval(() => {
          if (i < stream.parts.length) res.write(stream.parts[i++]);
          else {
            clearInterval(tick);
            stream.onEnd(req);
            res.end();
          }
        }, 5);
      });
    }
    if (endless) {
      app.get("/endless", (_req, res) => {
        const tick = setInterval(() => res.write("x".repeat(1000)), 5);
        res.on("close", () => {
          clearInterval(tick);
          endless.onStop();
        });
      });
    }
    if (failing) {
      app.get("/throws", () => {
        throw new Error("upstream down");
      });
      app.get("/next", (_req, _res, next) => next(new Error("model crashed")));
      app.get("/ok", (_req, res) => void res.send("fine"));
      app.use(
        (err: Error, req: express.Request, res: express.Response, _next: express.NextFunction) =>
          void res.status(req.path === "/next" ? 502 : 500).send(`failed: ${err.message}`),
      );
    }
    if (text !== undefined) app.get("/{*path}", (_req, res) => void res.send(text));
    return listen(app);
  },
  path: (req) => req.path,
  header: (req, name) => req.get(name),
  query: (req, name) => {
    const value = req.query[name];
    return typeof value === "string" ? value : undefined;
  },
  body: (req) => req.body,
  getLease,
  failures: [
    {
      path: "/throws",
      status: 500,
      check: async (res) => assert.equal(await res.text(), "failed: upstream down"),
    },
    {
      path: "/next",
      status: 502,
      check: async (res) => assert.equal(await res.text(), "failed: model crashed"),
    },
  ],
};

adapterSuite(
  "Express middleware on DynamoDB Local",
  expressDriver,
  async (t, { limiter, available, onError }) => {
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
  },
);
