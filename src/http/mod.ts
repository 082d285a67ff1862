/**
 * HTTP integration on web-standard `Request` / `Response`: 429 responses with `Retry-After` and
 * the IETF `RateLimit-Policy` / `RateLimit` headers, a wrapper for fetch handlers
 * (`Deno.serve`, `Bun.serve`, Deno Deploy) that reconciles after the response body has been
 * streamed, and the header helpers. The Hono middleware is in `@zae/limiter/http/hono`.
 *
 * ```ts ignore
 * import { Limit, RateLimiter } from "@zae/limiter";
 * import { withRateLimit } from "@zae/limiter/http";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * Deno.serve(withRateLimit(() => new Response("hello"), {
 *   limiter,
 *   key: (req) => ({
 *     entityId: req.headers.get("x-api-key") ?? "anonymous",
 *     resource: "hello",
 *     limits: [Limit.perMinute("rpm", 60)],
 *     consume: { rpm: 1 },
 *   }),
 * }));
 * ```
 *
 * See `./headers.ts` for how a token bucket maps to the draft's `q`, `w`, `r` and `t`.
 *
 * @module
 */

export {
  formatDuration,
  type LimitQuota,
  limitQuotas,
  type RateLimitHeaderOptions,
  rateLimitHeaders,
  setRateLimitHeaders,
} from "./headers.ts";
export {
  type Adjustments,
  getLease,
  type LeaseAcquirer,
  rateLimitedResponse,
  type ReconcileInfo,
  type RefusalOptions,
  unavailableResponse,
  withRateLimit,
  type WithRateLimitOptions,
} from "./handler.ts";
