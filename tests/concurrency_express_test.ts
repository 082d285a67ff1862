// A concurrent limit through the Express middleware: a streamed response holds its slot until the
// body ends, and frees it when the client disconnects mid-stream (DynamoDB Local).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { Limit, RateLimiter } from "../mod.ts";
import { rateLimit } from "../src/http/express.ts";
import { Repository } from "../src/repository.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

dynamoTest("a concurrent limit through Express, streaming", async (t, { client }) => {
  const tableName = uniqueTableName("conc_express");
  const limiter = new RateLimiter({ tableName, client });
  await limiter.createTable();
  const repo = new Repository({ client, tableName });
  const held = async () => (await repo.getBucket("xp", "llm"))?.limits.get("streams")?.held;
  const until = async (want: bigint) => {
    for (let i = 0; i < 250 && (await held()) !== want; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await held(), want);
  };
  let release!: () => void;
  const app = express();
  app.use(rateLimit({
    limiter,
    key: () => ({
      entityId: "xp",
      resource: "llm",
      limits: [Limit.concurrent("streams", 1)],
      consume: {},
      leaseTimeoutMs: 60_000,
    }),
  }));
  app.get("/", async (_req, res) => {
    const gate = new Promise<void>((r) => (release = r));
    res.write("x".repeat(70_000));
    await gate;
    if (!res.destroyed) res.end("done");
  });
  const server = createServer(app);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await t.step("the slot is held while streaming and freed at the body's end", async () => {
      const res = await fetch(url);
      assert.equal(res.headers.get("ratelimit-policy"), `"streams";q=1;qu="concurrent-requests"`);
      const r = res.body!.getReader();
      await r.read();
      assert.equal(await held(), 1n);
      const busy = await fetch(url);
      assert.equal(busy.status, 429);
      await busy.body?.cancel();
      release();
      while (!(await r.read()).done);
      await until(0n);
    });
    await t.step("a client that disconnects mid-stream frees the slot", async () => {
      const ctl = new AbortController();
      const res = await fetch(url, { signal: ctl.signal });
      const r = res.body!.getReader();
      await r.read();
      assert.equal(await held(), 1n);
      ctl.abort();
      await r.cancel().catch(() => {});
      await until(0n);
      release();
    });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await limiter.close();
  }
});
