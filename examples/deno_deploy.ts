/**
 * A Deno Deploy–style fetch handler: a small public API limited per client IP with
 * `withRateLimit`, 10 requests at once and 1 a second after that (a per-second limit with a
 * burst), plus 300 an hour. It fails open: if DynamoDB cannot answer within 500 ms the request
 * is served anyway, so an outage of the limiter never takes the API down.
 *
 * ```sh
 * # Deno Deploy / `deno serve` use the default export; AWS credentials come from the environment.
 * ZAE_LIMITER_TABLE=rate_limits deno serve -A examples/deno_deploy.ts
 * # Locally against DynamoDB Local (the table is created when an endpoint is given):
 * ZAE_LIMITER_ENDPOINT=http://localhost:8000 deno serve -A examples/deno_deploy.ts
 * # A short scripted run, then exit (CI):
 * ZAE_LIMITER_ENDPOINT=http://localhost:8000 deno run -A examples/deno_deploy.ts --smoke
 * ```
 *
 * In an application, import from the package: `@zae/limiter` and `@zae/limiter/http`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { FailureMode, Limit, RateLimiter } from "../mod.ts";
import { withRateLimit } from "../src/http/mod.ts";

const endpoint = Deno.env.get("ZAE_LIMITER_ENDPOINT");
const limiter = new RateLimiter({
  tableName: Deno.env.get("ZAE_LIMITER_TABLE") ?? "rate_limits",
  endpoint,
  createTable: endpoint !== undefined, // in production the table comes from the CLI's deploy
  failureMode: FailureMode.FAIL_OPEN,
  timeoutMs: 500,
});

/** Per client: a burst of 10, then 1 a second; and 300 an hour. */
export const LIMITS: Limit[] = [
  Limit.perSecond("rps", 1, { burst: 10 }),
  Limit.perHour("rph", 300),
];

const QUOTES = [
  "Premature optimization is the root of all evil.",
  "Simplicity is prerequisite for reliability.",
  "Make it work, make it right, make it fast.",
];

/** The API itself, unaware of rate limiting. */
function api(req: Request): Response {
  const { pathname } = new URL(req.url);
  if (pathname === "/health") return new Response("ok");
  if (pathname === "/quote") {
    return Response.json({ quote: QUOTES[Math.floor(Math.random() * QUOTES.length)] });
  }
  return new Response("not found", { status: 404 });
}

/** The client's address: the proxy's `x-forwarded-for` first hop, or the socket's. */
function clientIp(req: Request, info?: Deno.ServeHandlerInfo): string {
  const forwarded = req.headers.get("x-forwarded-for")?.split(",")[0].trim();
  const addr = info?.remoteAddr as Deno.NetAddr | undefined;
  const ip = forwarded || addr?.hostname || "unknown";
  return `ip-${ip.replace(/[^A-Za-z0-9_.:@-]/g, "_")}`; // an entity id allows _ . - : @
}

/** The rate-limited handler. */
export const handler: (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> =
  withRateLimit<[info?: Deno.ServeHandlerInfo]>(api, {
    limiter,
    key: (req, info) =>
      new URL(req.url).pathname === "/health"
        ? null // never limit the health check
        : {
          entityId: clientIp(req, info),
          resource: "public-api",
          limits: LIMITS,
          consume: { rps: 1, rph: 1 },
        },
  });

/** For `deno serve` and Deno Deploy. */
export default { fetch: handler } satisfies Deno.ServeDefaultExport;

async function smokeRun(): Promise<void> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
  try {
    const client = `198.51.100.${Math.floor(Math.random() * 200)}`;
    const get = (path: string) => fetch(url + path, { headers: { "x-forwarded-for": client } });
    const statuses: number[] = [];
    let last!: Response;
    for (let i = 0; i < 12; i++) {
      last = await get("/quote");
      statuses.push(last.status);
      if (last.status === 200) console.log(`${last.status} ${last.headers.get("RateLimit")}`);
      await last.body?.cancel();
    }
    console.log(`12 quick requests: ${statuses.join(" ")}`);
    console.log(`refused with Retry-After ${last.headers.get("Retry-After")} s`);
    // 10 in the burst, maybe one more refilled meanwhile; the 12th cannot pass that fast.
    assert.ok(statuses.slice(0, 10).every((s) => s === 200));
    assert.equal(last.status, 429);
    assert.equal(last.headers.get("Retry-After"), "1");
    const health = await get("/health");
    assert.equal(await health.text(), "ok");
    assert.equal(health.headers.get("RateLimit"), null);
    console.log("smoke run passed");
  } finally {
    await server.shutdown();
    await limiter.close();
  }
}

if (import.meta.main && Deno.args.includes("--smoke")) await smokeRun();
