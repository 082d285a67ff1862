/**
 * The scenarios the Express middleware and the Fastify plugin share, written once and run for
 * each over real HTTP with a limiter on DynamoDB Local. A framework's test file supplies a
 * {@link AdapterDriver}: it starts its server with the scenario's routes and reads its request.
 */
import assert from "node:assert/strict";
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { FailureMode, Limit, RateLimiter } from "../mod.ts";
import type { Lease } from "../src/lease.ts";
import type { NodeRateLimitOptions } from "../src/http/mod.ts";
import type { ErrorPhase } from "../src/http/responses.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const T0 = 1_800_000_000_000;

/** The limits every scenario acquires against. */
export const limits = [Limit.perMinute("rpm", 2), Limit.perMinute("tpm", 1_000)];

/** A server listening on a free port. */
export interface TestServer {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Closes the server and its connections. */
  stop(): Promise<void>;
}

/** The routes a scenario needs, behind the adapter; a driver writes them in its framework. */
export interface Routes<Req extends object> {
  /** `POST /v1/chat`: answers `answer(req)`'s result as JSON. */
  chat?: (req: Req) => Promise<unknown>;
  /** `GET /stream`: `text/event-stream`, `parts` 5 ms apart; `onEnd(req)` just before the end. */
  stream?: { parts: string[]; onEnd: (req: Req) => void };
  /** `GET /endless`: 1000 bytes every 5 ms until the client leaves, then `onStop()`. */
  endless?: { onStop: () => void };
  /** `GET /ok` answers `fine`, beside the routes of the driver's `failures`. */
  failing?: true;
  /** Any other `GET` path answers `text`. */
  text?: string;
}

/** A route of the driver's framework whose handler fails, and what the client then gets. */
export interface Failure {
  /** The path, `/throws` for a handler that throws. */
  path: string;
  /** The status the framework answers with. */
  status: number;
  /** Asserts the rest of the answer (and reads its body). */
  check: (res: Response) => Promise<void>;
}

/** What the shared scenarios need of a framework. */
export interface AdapterDriver<Req extends object, Res> {
  /**
   * Starts a server with the adapter under `options` in front of `routes`. With `readsBody`,
   * the JSON body is parsed before `key` runs (Express: `express.json()` first; Fastify:
   * `hook: "preHandler"`).
   */
  serve(
    options: NodeRateLimitOptions<Req, Res>,
    routes: Routes<Req>,
    setup?: { readsBody?: boolean },
  ): Promise<TestServer>;
  /** The request's path, without the query. */
  path(req: Req): string;
  /** A request header. */
  header(req: Req, name: string): string | undefined;
  /** A query parameter. */
  query(req: Req, name: string): string | undefined;
  /** The parsed JSON body (with `readsBody`). */
  body(req: Req): unknown;
  /** The adapter's `getLease`. */
  getLease(req: Req): Lease | undefined;
  /** The framework's failing handlers, `/throws` first (see {@link Failure}). */
  failures: Failure[];
}

/** What the shared scenarios hand to a test file's own steps. */
export interface AdapterContext {
  /** The limiter on DynamoDB Local, clock fixed at `T0`. */
  limiter: RateLimiter;
  /** The DynamoDB Local client. */
  client: DynamoDBClient;
  /** The tokens left for `entityId` on resource `chat`. */
  available(entityId: string): Promise<Record<string, number>>;
  /** Collects errors told after a response; the suite asserts there were none. */
  onError(err: unknown, phase: ErrorPhase): void;
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

/**
 * Registers a `dynamoTest` named `name` that runs the shared scenarios with `driver` as steps,
 * then `more` (the framework's own steps), and asserts that `onError` was told nothing.
 */
export function adapterSuite<Req extends object, Res>(
  name: string,
  driver: AdapterDriver<Req, Res>,
  more: (t: Deno.TestContext, ctx: AdapterContext) => Promise<void>,
): void {
  dynamoTest(name, async (t, { client }) => {
    const limiter = new RateLimiter({
      tableName: uniqueTableName("http_adapter"),
      client,
      clock: () => T0,
      timeoutMs: 10_000,
    });
    const errors: [ErrorPhase, unknown][] = [];
    const ctx: AdapterContext = {
      limiter,
      client,
      available: (entityId) => limiter.available({ entityId, resource: "chat", limits }),
      onError: (err, phase) => void errors.push([phase, err]),
    };
    await limiter.createTable();
    try {
      await adapterCases(t, driver, ctx);
      await more(t, ctx);
      assert.deepEqual(errors, [], "nothing went wrong after a response");
    } finally {
      await limiter.close();
    }
  });
}

/** Runs the shared scenarios as steps of `t`. */
async function adapterCases<Req extends object, Res>(
  t: Deno.TestContext,
  driver: AdapterDriver<Req, Res>,
  { limiter, client, available, onError }: AdapterContext,
): Promise<void> {
  /** A key for `entityId` that fails open when the query has `open`, closed otherwise. */
  const failingOpenOnQuery = (entityId: string) => (req: Req) => ({
    entityId,
    resource: "chat",
    limits,
    consume: { rpm: 1 },
    failureMode: driver.query(req, "open") ? FailureMode.FAIL_OPEN : FailureMode.FAIL_CLOSED,
  });

  await t.step(
    "key reads the body: admitted with headers, the handler's adjust, then 429",
    async () => {
      let calls = 0;
      const estimate = (req: Req) => (driver.body(req) as { estimate: number }).estimate;
      const server = await driver.serve({
        limiter,
        key: (req) => ({
          entityId: driver.header(req, "x-api-key")!,
          resource: "chat",
          limits,
          consume: { rpm: 1, tpm: estimate(req) },
        }),
        headers: { openai: true },
        onError,
      }, {
        chat: async (req) => {
          calls++;
          await driver.getLease(req)!.adjust({ tpm: 150 - estimate(req) });
          return { usage: 150 };
        },
      }, { readsBody: true });
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
    },
  );

  await t.step("a streamed response is reconciled before its end reaches the client", async () => {
    const usage = new WeakMap<object, number>();
    const seen: boolean[] = [];
    const parts = ["data: 0\n\n", "data: 1\n\n", "data: 2\n\n"];
    const server = await driver.serve({
      limiter,
      key: () => ({ entityId: "key-b", resource: "chat", limits, consume: { rpm: 1, tpm: 500 } }),
      reconcile: (req, _res, lease, { completed }) => {
        seen.push(completed);
        assert.equal(lease.state, "open");
        return { tpm: usage.get(req)! - 500 };
      },
      onError,
    }, {
      // The usage is known once the answer is complete.
      stream: { parts, onEnd: (req) => void usage.set(req, 640) },
    });
    try {
      const res = await fetch(`${server.url}/stream`);
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      assert.equal(res.headers.get("RateLimit"), `"rpm";r=1;t=30, "tpm";r=500;t=30`);
      assert.equal(await res.text(), parts.join(""));
      assert.deepEqual(seen, [true]);
      assert.deepEqual(await available("key-b"), { rpm: 1, tpm: 360 });
    } finally {
      await server.stop();
    }
  });

  await t.step("a client that leaves mid-stream: reconcile with completed: false", async () => {
    const seen: boolean[] = [];
    let stopped = false;
    const server = await driver.serve({
      limiter,
      key: () => ({ entityId: "key-c", resource: "chat", limits, consume: { rpm: 1, tpm: 500 } }),
      // Nothing was delivered in full: give the estimate back, keep the request.
      reconcile: (_req, _res, _lease, { completed }) => {
        seen.push(completed);
        return completed ? undefined : { tpm: -500 };
      },
      onError,
    }, { endless: { onStop: () => void (stopped = true) } });
    try {
      const ctl = new AbortController();
      const res = await fetch(`${server.url}/endless`, { signal: ctl.signal });
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

  await t.step("a handler that fails gives the tokens back, whatever its status", async () => {
    const server = await driver.serve({
      limiter,
      key: (req) => ({
        entityId: `key-${driver.path(req).slice(1)}`,
        resource: "chat",
        limits,
        consume: { rpm: 1, tpm: 400 },
      }),
      reconcile: () => ({ tpm: 100 }),
      onError,
    }, { failing: true });
    try {
      assert.equal(driver.failures[0].path, "/throws");
      for (const { path, status, check } of driver.failures) {
        const failed = await fetch(`${server.url}${path}`);
        assert.equal(failed.status, status, path);
        await check(failed);
        assert.deepEqual(await available(`key-${path.slice(1)}`), { rpm: 2, tpm: 1000 }, path);
      }
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
    const server = await driver.serve({
      limiter,
      key: (req) => {
        const id = driver.header(req, "x-api-key");
        if (driver.path(req) === "/health") return null;
        if (id === "throw") throw new Error("no key");
        return { entityId: id!, resource: "chat", limits, consume: { rpm: 1 } };
      },
      onInvalidKey: (invalid, req) =>
        driver.path(req) === "/gateway"
          ? Response.json({ error: "unauthorized" }, { status: 401 })
          : Response.json({ field: invalid.field }, { status: 400 }),
      onError: (_err, phase) => void keyErrors.push(phase),
    }, { text: "reached" });
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
    const server = await driver.serve({
      limiter: dead,
      key: failingOpenOnQuery("key-d"),
      onError,
    }, { text: "served" });
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
    const server = await driver.serve({
      limiter: missing,
      key: failingOpenOnQuery("key-e"),
      onError: (_err, phase) => void seen.push(phase),
    }, { text: "served" });
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
}
