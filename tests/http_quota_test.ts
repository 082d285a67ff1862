/**
 * The IETF headers of a quota, served by `withRateLimit` on DynamoDB Local: `w` is the current
 * window's length and `t` the seconds to its end (a calendar month across a DST change, a
 * `resetAfter` window from the first use), next to a token bucket's usual fields.
 */

import assert from "node:assert/strict";
import { Limit, RateLimiter } from "../mod.ts";
import { withRateLimit } from "../src/http/mod.ts";
import { SOFT_LIMIT_HEADER } from "../src/http/headers.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

/** 2026-03-31 21:00:00 UTC: an hour before April begins in Berlin (23:00 CEST). */
const T0 = Date.UTC(2026, 2, 31, 21, 0, 0);
/** March 2026 in Berlin: 31 days less the hour the clocks skip on the 29th. */
const MARCH_BERLIN = 31 * 86_400 - 3_600;

function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const { port } = server.addr as Deno.NetAddr;
  return { url: `http://127.0.0.1:${port}`, stop: () => server.shutdown() };
}

Deno.test({
  name: "HTTP headers of a quota on DynamoDB Local: w is the window, t its end",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    let now = T0;
    const client = localClient(ddb.endpoint);
    const limiter = new RateLimiter({
      tableName: uniqueTableName("http_quota"),
      client,
      clock: () => now,
      timeoutMs: 10_000,
    });
    const tokens = Limit.quota("tokens", 1_000, { reset: "month@Europe/Berlin" });
    const trial = Limit.quota("trial", 10, { resetAfter: "1d" });
    const rpm = Limit.perMinute("rpm", 2);
    const app = serve(withRateLimit(() => new Response("ok"), {
      limiter,
      key: (req) => ({
        entityId: req.headers.get("x-api-key")!,
        resource: "chat",
        limits: [tokens, trial, rpm, Limit.quota("soft", 100, { resetAfter: 90, soft: true })],
        consume: { tokens: Number(new URL(req.url).searchParams.get("t")), trial: 1, rpm: 1 },
      }),
      headers: { openai: true },
    }));
    const get = (t: number, key = "key-1") =>
      fetch(`${app.url}/?t=${t}`, { headers: { "x-api-key": key } });
    try {
      await limiter.createTable();

      await t.step("admitted: the calendar window and a resetAfter window opened now", async () => {
        const res = await get(400);
        assert.equal(res.status, 200);
        await res.body?.cancel();
        assert.equal(
          res.headers.get("RateLimit-Policy"),
          `"tokens";q=1000;w=${MARCH_BERLIN}, "trial";q=10;w=86400, "rpm";q=2;w=60`,
        );
        assert.equal(
          res.headers.get("RateLimit"),
          `"tokens";r=600;t=3600, "trial";r=9;t=86400, "rpm";r=1;t=30`,
        );
        assert.equal(res.headers.get("x-ratelimit-reset-tokens"), "1h0m0s");
        // A soft quota's t is its window's end too.
        assert.equal(res.headers.get(SOFT_LIMIT_HEADER), `"soft";q=100;r=100;t=90;u=0`);
      });

      await t.step("refused later: t counts down to the window's end, exact", async () => {
        now = T0 + 1_800_500; // 30 min 0.5 s later
        const res = await get(700);
        assert.equal(res.status, 429);
        await res.body?.cancel();
        assert.equal(res.headers.get("Retry-After"), "1800"); // 1799.5 s, rounded up
        assert.equal(
          res.headers.get("RateLimit"),
          `"tokens";r=600;t=1800, "trial";r=9;t=84600, "rpm";r=2;t=0`,
        );
        // A window started by the first use keeps its length.
        assert.match(res.headers.get("RateLimit-Policy")!, /"trial";q=10;w=86400/);
      });

      await t.step("after the reset: April's window, 30 days long, whole again", async () => {
        now = Date.UTC(2026, 2, 31, 22, 0, 0); // 2026-04-01 00:00 CEST
        const res = await get(100);
        assert.equal(res.status, 200);
        await res.body?.cancel();
        assert.match(res.headers.get("RateLimit-Policy")!, /^"tokens";q=1000;w=2592000, /);
        assert.match(res.headers.get("RateLimit")!, /^"tokens";r=900;t=2592000, /);
      });
    } finally {
      await app.stop();
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
