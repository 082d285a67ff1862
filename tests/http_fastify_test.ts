/**
 * The Fastify plugin on a real Fastify 5 server, over real HTTP, with a limiter on DynamoDB
 * Local: the scenarios shared with Express (`./_http_adapter_cases.ts`), then Fastify's scopes
 * and its `hook` option.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify";
import { ValidationError } from "../mod.ts";
import { getLease, rateLimit } from "../src/http/fastify.ts";
import { type AdapterDriver, adapterSuite, limits } from "./_http_adapter_cases.ts";

const delay = () => new Promise((r) => setTimeout(r, 5));

const fastifyDriver: AdapterDriver<FastifyRequest, FastifyReply> = {
  async serve(options, routes, { readsBody = false } = {}) {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(rateLimit, readsBody ? { ...options, hook: "preHandler" } : options);
    const { chat, stream, endless, failing, text } = routes;
    if (chat) app.post("/v1/chat", (request) => chat(request));
    if (stream) {
      const { parts, onEnd } = stream;
      app.get("/stream", (request, reply) => {
        async function* answer() {
          for (const part of parts) {
            await delay();
            yield part;
          }
          onEnd(request);
        }
        return reply.type("text/event-stream").send(Readable.from(answer()));
      });
    }
    if (endless) {
      const { onStop } = endless;
      app.get("/endless", (_request, reply) => {
        async function* forever() {
          try {
            for (;;) {
              await delay();
              yield "x".repeat(1000);
            }
          } finally {
            onStop();
          }
        }
        return reply.send(Readable.from(forever()));
      });
    }
    if (failing) {
      app.get("/throws", () => {
        throw new Error("upstream down");
      });
      app.get("/gone", () => {
        throw Object.assign(new Error("no such model"), { statusCode: 404 });
      });
      app.get("/ok", () => "fine");
    }
    if (text !== undefined) app.get("/*", () => text);
    await app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = app.server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}`, stop: () => app.close() };
  },
  path: (request) => request.url.split("?", 1)[0],
  header: (request, name) => {
    const value = request.headers[name];
    return typeof value === "string" ? value : undefined;
  },
  query: (request, name) => (request.query as Record<string, string | undefined>)[name],
  body: (request) => request.body,
  getLease,
  failures: [
    {
      path: "/throws",
      status: 500,
      check: async (res) => assert.equal((await res.json()).message, "upstream down"),
    },
    // A thrown error with a 4xx status still rolls the lease back.
    { path: "/gone", status: 404, check: async (res) => await res.body?.cancel() },
  ],
};

adapterSuite(
  "Fastify plugin on DynamoDB Local",
  fastifyDriver,
  async (t, { limiter, available, onError }) => {
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
  },
);
