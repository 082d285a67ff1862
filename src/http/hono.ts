/**
 * A Hono middleware (npm `hono`) over the fetch-handler integration of `@zae/limiter/http`: same
 * 429 / 503 responses, same `RateLimit` headers, same reconciliation after the response body
 * has been streamed. The lease is stored in the context as `lease`.
 *
 * @module
 */

import type { Context, MiddlewareHandler } from "../hono_types.ts";
import type { Lease } from "../lease.ts";
import type { AcquireOptions } from "../limiter.ts";
import { admitter, type RateLimitAdapterOptions } from "./adapter.ts";
import { type Adjustments, finishResponse, giveBack, settle } from "./handler.ts";
import { logError } from "./responses.ts";

/** The context variables the middleware sets: `c.get("lease")`. */
export type RateLimitVariables = {
  /** The lease of the request; adjust it with the real usage, or roll it back. */
  lease: Lease;
};

/** A Hono `Env` with {@link RateLimitVariables}, for `new Hono<RateLimitEnv>()`. */
export type RateLimitEnv = { Variables: RateLimitVariables };

/** Options of {@link rateLimit}: those of `RateLimitAdapterOptions`, on Hono's `Context`. */
export interface RateLimitMiddlewareOptions extends RateLimitAdapterOptions<Context<RateLimitEnv>> {
  /**
   * What to acquire for the request; `null` or `undefined` lets it through unlimited. It may
   * read the body (`await c.req.json()`): Hono caches it for the handler. When it throws, or
   * returns options the limiter refuses (an invalid entity id), the request gets
   * `onInvalidKey`'s answer, a 400 by default. For client addresses use `ipKey` from
   * `@zae/limiter/http`.
   */
  key: (c: Context<RateLimitEnv>) =>
    | AcquireOptions
    | null
    | undefined
    | Promise<
      AcquireOptions | null | undefined
    >;
  /**
   * Called once the response body has been sent (`completed: true`) or abandoned
   * (`completed: false`), before the lease is committed: return the adjustments to record.
   * Handlers can also adjust `c.get("lease")` themselves before their body ends.
   */
  reconcile?: (
    c: Context<RateLimitEnv>,
    lease: Lease,
    info: { completed: boolean },
  ) => Adjustments | Promise<Adjustments>;
}

/**
 * Rate-limits the routes it is applied to. A refused request gets the 429 of
 * `rateLimitedResponse` (JSON body, `Retry-After`, `RateLimit-Policy`, `RateLimit`); an
 * unavailable DynamoDB with FAIL_CLOSED gets a 503; an invalid key a 400 (or `onInvalidKey`'s
 * answer); a `ConfigurationError` a 500, in both failure modes. When a handler throws (Hono hands the
 * error to `app.onError`), the lease is rolled back. Otherwise the lease is committed after the
 * response body has been sent, with `reconcile`'s adjustments.
 *
 * @example
 * ```ts ignore
 * import { Hono } from "hono";
 * import { Limit, RateLimiter } from "@zae/limiter";
 * import { rateLimit, type RateLimitEnv } from "@zae/limiter/http/hono";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * const app = new Hono<RateLimitEnv>();
 * app.use("/v1/*", rateLimit({
 *   limiter,
 *   key: (c) => ({
 *     entityId: c.req.header("x-api-key") ?? "anonymous",
 *     resource: "gpt-4",
 *     limits: [Limit.perMinute("rpm", 60), Limit.perMinute("tpm", 10_000)],
 *     consume: { rpm: 1, tpm: 500 },
 *   }),
 * }));
 * app.post("/v1/chat", async (c) => {
 *   await c.get("lease").adjust({ tpm: 742 - 500 }); // the real usage
 *   return c.json({ ok: true });
 * });
 * ```
 */
export function rateLimit(options: RateLimitMiddlewareOptions): MiddlewareHandler<RateLimitEnv> {
  const { key, reconcile, headers, onError = logError } = options;
  const admit = admitter(options);
  return async (c, next) => {
    const { lease, response: refused } = await admit(c, () => key(c));
    if (refused) return refused;
    if (!lease) return await next();
    c.set("lease", lease);
    try {
      await next();
    } catch (err) {
      await giveBack(lease, onError);
      throw err;
    }
    if (c.error) {
      await giveBack(lease, onError);
      return;
    }
    const response = await finishResponse(
      c.res,
      lease,
      headers,
      (completed) =>
        settle(lease, reconcile && (() => reconcile(c, lease, { completed })), onError),
      onError,
    );
    c.res = undefined;
    c.res = response;
  };
}
