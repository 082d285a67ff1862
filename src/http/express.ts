/**
 * Rate limiting for Express 5 and any Connect-style `(req, res, next)` stack, Node's own
 * `http.createServer` included: the semantics of `withRateLimit` (`@zae/limiter/http`) on Node's
 * `ServerResponse`. Same 429 / 503 / 403 / 400 / 500 answers, same rate-limit headers, rollback
 * when the handler fails, and the lease committed with `reconcile`'s adjustments once the
 * response has been written, a streamed one included. Express is used for its types only.
 *
 * @module
 */

import type { Lease } from "../lease.ts";
import { admitter, type NodeRateLimitOptions } from "./adapter.ts";
import type { NextFunction, Request, RequestHandler, Response } from "./express_types.ts";
import { nodeLease, sendResponse, trackResponse } from "./node.ts";
import { logError } from "./responses.ts";

/**
 * Options of {@link rateLimit}: those of `NodeRateLimitOptions`, on Express's `Request` and
 * `Response`. To read `req.body` in `key`, put a body parser (`express.json()`) before the
 * middleware; for client addresses pass `req.socket.remoteAddress` to `ipKey`. `reconcile` can
 * read a usage header with `res.getHeader(...)`; handlers can also adjust {@link getLease}`(req)`
 * themselves.
 */
export interface ExpressRateLimitOptions extends NodeRateLimitOptions<Request, Response> {}

/**
 * The lease {@link rateLimit} acquired for a request, for the handler to `adjust` with the real
 * usage; `undefined` when the request was not limited.
 *
 * @example
 * ```ts ignore
 * app.post("/v1/chat", async (req, res) => {
 *   const answer = await callModel(req.body);
 *   await getLease(req)?.adjust({ tpm: answer.usage.total_tokens - 500 });
 *   res.json(answer);
 * });
 * ```
 */
export function getLease(req: Request): Lease | undefined {
  return nodeLease(req);
}

/**
 * An Express 5 / Connect middleware that rate-limits the routes after it.
 *
 * - A refused request gets the 429 of `rateLimitedResponse` (JSON body, `Retry-After`,
 *   `RateLimit-Policy`, `RateLimit`) and never reaches the handler. A disabled entity or resource
 *   gets a 403; an unavailable DynamoDB a 503 with FAIL_CLOSED (with FAIL_OPEN the request goes
 *   on); an invalid key a 400 (or `onInvalidKey`'s answer); a `ConfigurationError` a 500 in both
 *   failure modes.
 * - An admitted request gets its rate-limit headers (soft-limit and shadow headers included)
 *   before the handler runs, and its lease in {@link getLease}.
 * - When the handler ends the response, the end waits for the lease, so a client that has read
 *   the body knows it is written: a 5xx status (Express's answer to an error passed to `next`
 *   or thrown) rolls it back, anything else commits it with `reconcile`'s adjustments. A client
 *   that goes away first commits it with `completed: false`.
 *
 * @example
 * ```ts ignore
 * import express from "express";
 * import { Limit, RateLimiter } from "@zae/limiter";
 * import { getLease, rateLimit } from "@zae/limiter/http/express";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * const app = express();
 * app.use("/v1", express.json(), rateLimit({
 *   limiter,
 *   key: (req) => ({
 *     entityId: req.get("x-api-key") ?? "anonymous",
 *     resource: "gpt-4",
 *     limits: [Limit.perMinute("rpm", 60), Limit.perMinute("tpm", 10_000)],
 *     consume: { rpm: 1, tpm: 500 },
 *   }),
 * }));
 * app.post("/v1/chat", async (req, res) => {
 *   await getLease(req)?.adjust({ tpm: 742 - 500 }); // the real usage
 *   res.json({ ok: true });
 * });
 * app.listen(3000);
 * ```
 */
export function rateLimit(options: ExpressRateLimitOptions): RequestHandler {
  const { key, reconcile, headers, onError = logError } = options;
  const admit = admitter(options);
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    let admission;
    try {
      admission = await admit(req, () => key(req, res));
      if (admission.response) {
        await sendResponse(res, admission.response);
        return;
      }
    } catch (err) {
      next(err);
      return;
    }
    const { lease } = admission;
    if (lease) {
      trackResponse(req, res, lease, {
        headers,
        reconcile: reconcile && ((completed) => reconcile(req, res, lease, { completed })),
        onError,
      });
    }
    next();
  };
}
