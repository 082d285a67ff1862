/**
 * Rate limiting for Fastify 5, as a plugin: the semantics of `withRateLimit`
 * (`@zae/limiter/http`) in Fastify's hooks. Same 429 / 503 / 403 / 400 / 500 answers, same
 * rate-limit headers, rollback when the handler fails, and the lease committed with
 * `reconcile`'s adjustments once the response has been written, a streamed one included.
 * Fastify is used for its types only.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { ValidationError } from "../errors.ts";
import type { Lease } from "../lease.ts";
import { admitter, type NodeRateLimitOptions } from "./adapter.ts";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "./fastify_types.ts";
import { nodeLease, responseParts, trackResponse } from "./node.ts";
import { logError } from "./responses.ts";

/**
 * Options of the {@link rateLimit} plugin: those of `NodeRateLimitOptions`, on Fastify's
 * `FastifyRequest` and `FastifyReply`, and the `hook` that acquires. `request.body` is parsed in
 * `key` only with `hook: "preHandler"`; for client addresses pass `request.ip` to `ipKey`.
 * `reconcile` can read a usage header with `reply.getHeader(...)`; handlers can also adjust
 * {@link getLease}`(request)` themselves.
 */
export interface FastifyRateLimitOptions
  extends NodeRateLimitOptions<FastifyRequest, FastifyReply> {
  /**
   * The hook that acquires: `"onRequest"` refuses before the body is read; `"preHandler"` runs
   * after the body is parsed and validated, for a `key` that reads `request.body`.
   * @default "onRequest"
   */
  hook?: "onRequest" | "preHandler";
}

/**
 * The lease the {@link rateLimit} plugin acquired for a request, for the handler to `adjust` with
 * the real usage; `undefined` when the request was not limited.
 *
 * @example
 * ```ts ignore
 * app.post("/v1/chat", async (request) => {
 *   const answer = await callModel(request.body);
 *   await getLease(request)?.adjust({ tpm: answer.usage.total_tokens - 500 });
 *   return answer;
 * });
 * ```
 */
export function getLease(request: FastifyRequest): Lease | undefined {
  return nodeLease(request.raw);
}

function plugin(
  fastify: Parameters<FastifyPluginAsync<FastifyRateLimitOptions>>[0],
  options: FastifyRateLimitOptions,
): Promise<void> {
  const { key, hook = "onRequest", reconcile, headers, onError = logError } = options;
  const admit = admitter(options);
  const failed = new WeakSet<FastifyRequest>();
  const limit = async (request: FastifyRequest, reply: FastifyReply) => {
    const { lease, response } = await admit(request, () => key(request, reply));
    if (response) {
      const parts = await responseParts(response);
      return reply.code(parts.status).headers(parts.headers).send(Buffer.from(parts.body));
    }
    if (lease) {
      trackResponse(request.raw, reply.raw, lease, {
        headers,
        reconcile: reconcile && ((completed) => reconcile(request, reply, lease, { completed })),
        failed: () => failed.has(request),
        onError,
      });
    }
  };
  if (hook === "preHandler") fastify.addHook("preHandler", limit);
  else if (hook === "onRequest") fastify.addHook("onRequest", limit);
  else {
    return Promise.reject(
      new ValidationError("hook", hook, 'must be "onRequest" or "preHandler"'),
    );
  }
  fastify.addHook("onError", (request, _reply, _error, done) => {
    failed.add(request);
    done();
  });
  return Promise.resolve();
}

/**
 * A Fastify 5 plugin that rate-limits the routes of the scope it is registered in (it is not
 * encapsulated, like plugins wrapped in `fastify-plugin`: register it inside
 * `app.register(async (scope) => …)` to limit only that scope's routes).
 *
 * - A refused request gets the 429 of `rateLimitedResponse` (JSON body, `Retry-After`,
 *   `RateLimit-Policy`, `RateLimit`) and never reaches the handler. A disabled entity or resource
 *   gets a 403; an unavailable DynamoDB a 503 with FAIL_CLOSED (with FAIL_OPEN the request goes
 *   on); an invalid key a 400 (or `onInvalidKey`'s answer); a `ConfigurationError` a 500 in both
 *   failure modes.
 * - An admitted request gets its rate-limit headers (soft-limit and shadow headers included) and
 *   its lease in {@link getLease}.
 * - When the response is ended, the end waits for the lease, so a client that has read the body
 *   knows it is written: a handler that threw (Fastify's `onError` hook) or a 5xx status rolls it
 *   back, anything else commits it with `reconcile`'s adjustments. A client that goes away first
 *   commits it with `completed: false`.
 *
 * @example
 * ```ts ignore
 * import Fastify from "fastify";
 * import { Limit, RateLimiter } from "@zae/limiter";
 * import { getLease, rateLimit } from "@zae/limiter/http/fastify";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * const app = Fastify();
 * await app.register(rateLimit, {
 *   limiter,
 *   key: (request) => ({
 *     entityId: String(request.headers["x-api-key"] ?? "anonymous"),
 *     resource: "gpt-4",
 *     limits: [Limit.perMinute("rpm", 60), Limit.perMinute("tpm", 10_000)],
 *     consume: { rpm: 1, tpm: 500 },
 *   }),
 * });
 * app.post("/v1/chat", async (request) => {
 *   await getLease(request)?.adjust({ tpm: 742 - 500 }); // the real usage
 *   return { ok: true };
 * });
 * await app.listen({ port: 3000 });
 * ```
 */
export const rateLimit: FastifyPluginAsync<FastifyRateLimitOptions> = Object.assign(plugin, {
  // What `fastify-plugin` sets: the hooks apply to the scope that registers the plugin.
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "@zae/limiter",
});
