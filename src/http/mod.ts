/**
 * HTTP integration on web-standard `Request` / `Response`: 429 responses with `Retry-After` and
 * the IETF `RateLimit-Policy` / `RateLimit` headers, a wrapper for fetch handlers
 * (`Deno.serve`, `Bun.serve`, Deno Deploy) that reconciles after the response body has been
 * streamed, the header helpers, and {@link ipKey} for limiting by client address. The Hono middleware is in `@zae/limiter/http/hono`.
 * The framework middlewares (`@zae/limiter/http/hono`, `/express`, `/fastify`) share the options
 * {@link RateLimitAdapterOptions} (and {@link NodeRateLimitOptions} on Node's `http`).
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

export { type NodeRateLimitOptions, type RateLimitAdapterOptions } from "./adapter.ts";
export {
  defaultPolicyName,
  formatDuration,
  type LimitQuota,
  limitQuotas,
  MAX_POLICY_NAME,
  MAX_SF_INTEGER,
  type RateLimitHeaderOptions,
  rateLimitHeaders,
  setRateLimitHeaders,
  setShadowRefusedHeader,
  SHADOW_REFUSED_HEADER,
  SOFT_LIMIT_HEADER,
} from "./headers.ts";
export {
  type Adjustments,
  getLease,
  type LeaseAcquirer,
  type ReconcileInfo,
  withRateLimit,
  type WithRateLimitOptions,
} from "./handler.ts";
export { ipKey, type IpKeyOptions } from "./ip.ts";
export {
  disabledResponse,
  echo,
  type ErrorHandler,
  type ErrorPhase,
  type InvalidKey,
  invalidKeyResponse,
  logError,
  misconfiguredResponse,
  rateLimitedResponse,
  type RefusalOptions,
  unavailableResponse,
} from "./responses.ts";
