/**
 * {@link withRateLimit}: rate limiting for any fetch handler (`Deno.serve`, `Bun.serve`, Deno
 * Deploy, Cloudflare-style workers), plus the pieces it is made of, shared with the Hono
 * middleware.
 *
 * @module
 */

import { RateLimiterUnavailable, RateLimitExceeded } from "../errors.ts";
import type { Lease } from "../lease.ts";
import type { AcquireOptions } from "../limiter.ts";
import { type RateLimitHeaderOptions, setRateLimitHeaders } from "./headers.ts";

/** Anything that acquires leases: a {@link RateLimiter} or a test double of the same shape. */
export interface LeaseAcquirer {
  /** Takes tokens; throws {@link RateLimitExceeded} when some limit lacks them. */
  acquire(options: AcquireOptions): Promise<Lease>;
}

/** Adjustments to record on the lease, by limit name (e.g. `{ tpm: 242 }`); none when void. */
export type Adjustments = Record<string, number> | undefined | void;

/** What {@link ReconcileInfo} says about the end of a response. */
export interface ReconcileInfo {
  /** The request. */
  request: Request;
  /**
   * `true` when the body was sent to the end; `false` when the client went away or the body
   * stream failed part-way.
   */
  completed: boolean;
}

/** Options of the 429 and 503 responses. */
export interface RefusalOptions {
  /** Rate-limit headers to write. @default IETF fields only */
  headers?: RateLimitHeaderOptions;
}

/**
 * Options of {@link withRateLimit}. `Rest` are the handler's arguments after the request, e.g.
 * `Deno.serve`'s `info` (with `remoteAddr`), passed on to `key`.
 */
export interface WithRateLimitOptions<Rest extends unknown[] = unknown[]> {
  /** The limiter. */
  limiter: LeaseAcquirer;
  /**
   * What to acquire for a request: entity, resource, limits, consumption (and `cascade`,
   * `useStoredLimits`, `failureMode`). Return `null` or `undefined` to let the request through
   * unlimited (health checks, static files).
   */
  key: (request: Request, ...rest: Rest) =>
    | AcquireOptions
    | null
    | undefined
    | Promise<
      AcquireOptions | null | undefined
    >;
  /**
   * Called once the response body has been sent (or abandoned), before the lease is committed:
   * return the adjustments to record, e.g. the real token usage minus the estimate. The body
   * has been streamed to the client by then, so read usage from the response's headers or have
   * the handler adjust the lease itself ({@link getLease}).
   */
  reconcile?: (
    response: Response,
    lease: Lease,
    info: ReconcileInfo,
  ) => Adjustments | Promise<Adjustments>;
  /** Rate-limit headers to write on every limited response. @default IETF fields only */
  headers?: RateLimitHeaderOptions;
  /** Builds the refusal; its result is sent as is. @default {@link rateLimitedResponse} */
  onRateLimited?: (error: RateLimitExceeded, request: Request) => Response | Promise<Response>;
  /**
   * Told about errors that cannot reach the client any more: a failed reconcile, adjust or
   * commit after the response started. @default `console.error`
   */
  onError?: (error: unknown, phase: "reconcile" | "rollback") => void;
}

const leases = new WeakMap<Request, Lease>();

/**
 * The lease {@link withRateLimit} acquired for a request, for the handler to `adjust` (or
 * `rollback`) it; `undefined` when the request was not limited.
 *
 * @example
 * ```ts ignore
 * const handler = withRateLimit(async (req) => {
 *   const usage = 742; // from the LLM's answer
 *   await getLease(req)?.adjust({ tpm: usage - 500 });
 *   return new Response("ok");
 * }, { limiter, key: () => ({ entityId: "key-1", resource: "gpt-4", limits, consume: { tpm: 500 } }) });
 * ```
 */
export function getLease(request: Request): Lease | undefined {
  return leases.get(request);
}

/**
 * The 429 response for a refusal: a JSON body ({@link RateLimitExceeded.asDict}),
 * `Retry-After` in whole seconds (left out when the request can never pass) and the
 * rate-limit headers of every limit checked.
 *
 * @example
 * ```ts
 * import { RateLimitExceeded } from "../errors.ts";
 * import { Limit } from "../limit.ts";
 * import { rateLimitedResponse } from "./handler.ts";
 * const err = new RateLimitExceeded([{ entityId: "key-1", resource: "gpt-4", limitName: "tpm",
 *   limit: Limit.perMinute("tpm", 10_000), available: 100, requested: 500, exceeded: true,
 *   retryAfterSeconds: 2.4 }]);
 * const res = rateLimitedResponse(err);
 * console.assert(res.status === 429 && res.headers.get("Retry-After") === "3");
 * console.assert(res.headers.get("RateLimit") === `"tpm";r=100;t=60`);
 * ```
 */
export function rateLimitedResponse(
  error: RateLimitExceeded,
  options: RefusalOptions = {},
): Response {
  const headers = new Headers({ "content-type": "application/json; charset=utf-8" });
  if (error.retryAfterHeader !== "") headers.set("Retry-After", error.retryAfterHeader);
  setRateLimitHeaders(headers, error.statuses, options.headers);
  return new Response(JSON.stringify(error.asDict()), { status: 429, headers });
}

/**
 * The 503 response sent when DynamoDB could not answer within the limiter's deadline and the
 * failure mode is FAIL_CLOSED. (With FAIL_OPEN the request is let through instead.)
 *
 * @example
 * ```ts
 * import { RateLimiterUnavailable } from "../errors.ts";
 * import { unavailableResponse } from "./handler.ts";
 * const res = unavailableResponse(new RateLimiterUnavailable("acquire"));
 * console.assert(res.status === 503);
 * ```
 */
export function unavailableResponse(error: RateLimiterUnavailable): Response {
  return Response.json(
    { error: "rate_limiter_unavailable", message: error.message },
    { status: 503, headers: { "Retry-After": "1" } },
  );
}

/** The outcome of {@link admit}: a lease to go on with, or the response to send instead. */
export type Admission = { lease: Lease; response?: undefined } | {
  lease?: undefined;
  response: Response;
};

/**
 * Acquires for a request: a lease, or the 429 (refused) or 503 (DynamoDB unavailable,
 * FAIL_CLOSED) response to send. Other errors, such as a `ValidationError` from bad `key`
 * output, are thrown: they are bugs of the caller.
 *
 * @example
 * ```ts ignore
 * const { lease, response } = await admit(limiter, options, { onRateLimited });
 * if (response) return response;
 * ```
 */
export async function admit(
  limiter: LeaseAcquirer,
  options: AcquireOptions,
  refusal: RefusalOptions & {
    onRateLimited?: (error: RateLimitExceeded) => Response | Promise<Response>;
  } = {},
): Promise<Admission> {
  try {
    return { lease: await limiter.acquire(options) };
  } catch (err) {
    if (err instanceof RateLimitExceeded) {
      return {
        response: refusal.onRateLimited
          ? await refusal.onRateLimited(err)
          : rateLimitedResponse(err, refusal),
      };
    }
    if (err instanceof RateLimiterUnavailable) return { response: unavailableResponse(err) };
    throw err;
  }
}

/**
 * Returns `response` with the lease's rate-limit headers, and with its body wrapped so that
 * `finish(completed)` runs once when the body has been read to the end (`true`) or cancelled or
 * failed (`false`). A response without a body finishes before this returns. While the body
 * ends normally the stream waits for `finish` before closing, so a client that has read the
 * whole body knows the reconciliation is written.
 *
 * @example
 * ```ts ignore
 * return await finishResponse(res, lease, { headers: {} }, (completed) => lease.commit());
 * ```
 */
export async function finishResponse(
  response: Response,
  lease: Lease,
  headerOptions: RateLimitHeaderOptions | undefined,
  finish: (completed: boolean) => Promise<void>,
): Promise<Response> {
  // A protocol switch (WebSocket) must be returned untouched.
  if (response.status === 101) {
    await finish(true);
    return response;
  }
  const headers = new Headers(response.headers);
  setRateLimitHeaders(headers, lease.statuses, headerOptions);
  const init = { status: response.status, statusText: response.statusText, headers };
  if (response.body === null) {
    await finish(true);
    return new Response(null, init);
  }
  const reader = response.body.getReader();
  let finished: Promise<void> | undefined;
  const once = (completed: boolean) => (finished ??= finish(completed));
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        await once(false);
        controller.error(err);
        return;
      }
      if (chunk.done) {
        await once(true);
        controller.close();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    async cancel(reason) {
      // Settle first: cancelling the reader ends a pending read as if the body were complete.
      const settled = once(false);
      try {
        await reader.cancel(reason);
      } finally {
        await settled;
      }
    },
  });
  return new Response(body, init);
}

/**
 * The end of a limited request: apply `reconcile`'s adjustments (if the lease is still open)
 * and commit. Never throws: failures go to `onError`.
 */
export async function settle(
  lease: Lease,
  reconcile: (() => Adjustments | Promise<Adjustments>) | undefined,
  onError: (error: unknown, phase: "reconcile" | "rollback") => void,
): Promise<void> {
  try {
    if (reconcile && lease.state === "open") {
      const adjustments = await reconcile();
      if (adjustments && lease.state === "open") await lease.adjust(adjustments);
    }
    await lease.commit();
  } catch (err) {
    onError(err, "reconcile");
  }
}

/** Gives the lease back after a failed handler; failures go to `onError`. */
export async function giveBack(
  lease: Lease,
  onError: (error: unknown, phase: "reconcile" | "rollback") => void,
): Promise<void> {
  try {
    await lease.rollback();
  } catch (err) {
    onError(err, "rollback");
  }
}

/** The default `onError`: log. */
export function logError(error: unknown, phase: "reconcile" | "rollback"): void {
  console.error(`zae-limiter: ${phase} after the response failed:`, error);
}

/**
 * Wraps a fetch handler with rate limiting.
 *
 * For each request: `key(request, ...rest)` says what to acquire (or `null` to skip limiting). A refused
 * request gets a 429 ({@link rateLimitedResponse}) without reaching the handler; when DynamoDB
 * is unavailable and the failure mode is FAIL_CLOSED it gets a 503. An admitted request reaches
 * the handler, which can find its lease with {@link getLease}; the response gets the
 * `RateLimit-Policy` / `RateLimit` headers of the quota left after the acquire.
 *
 * - **Reconciliation after streaming.** The response body is passed through; when it has been
 *   sent to the end, `reconcile` (if given) returns the adjustments, which are recorded, and the
 *   lease is committed — so an LLM answer streamed token by token is charged its real size.
 *   The handler may also call `getLease(request).adjust(...)` at any time before its body ends.
 *   If the client disconnects, the same happens with `completed: false`.
 * - **Handler errors.** When the handler throws, the lease is rolled back (the request did not
 *   happen, so it costs nothing) and the error is rethrown for the server's own error handling
 *   (`Deno.serve`'s `onError`, Bun's `error`), just as `limiter.acquire(options, fn)` does. A
 *   handler that wants a failure to cost the tokens can catch and return its own response.
 * - Responses with a status of 101 (WebSocket upgrades) are returned untouched and committed.
 *
 * @example
 * ```ts ignore
 * import { Limit, RateLimiter } from "@zae/limiter";
 * import { getLease, withRateLimit } from "@zae/limiter/http";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * const limits = [Limit.perMinute("rpm", 60), Limit.perMinute("tpm", 10_000)];
 * Deno.serve(withRateLimit(async (req) => {
 *   const answer = await callModel(await req.json());
 *   await getLease(req)?.adjust({ tpm: answer.usage.total_tokens - 500 });
 *   return Response.json(answer);
 * }, {
 *   limiter,
 *   key: (req) => ({
 *     entityId: req.headers.get("x-api-key") ?? "anonymous",
 *     resource: "gpt-4",
 *     limits,
 *     consume: { rpm: 1, tpm: 500 },
 *   }),
 * }));
 * ```
 */
export function withRateLimit<Rest extends unknown[]>(
  handler: (request: Request, ...rest: Rest) => Response | Promise<Response>,
  options: WithRateLimitOptions<Rest>,
): (request: Request, ...rest: Rest) => Promise<Response> {
  const { limiter, key, reconcile, headers, onRateLimited, onError = logError } = options;
  return async (request, ...rest) => {
    const acquire = await key(request, ...rest);
    if (acquire === null || acquire === undefined) return await handler(request, ...rest);
    const { lease, response: refused } = await admit(limiter, acquire, {
      headers,
      onRateLimited: onRateLimited && ((err) => onRateLimited(err, request)),
    });
    if (refused) return refused;
    leases.set(request, lease);
    let response: Response;
    try {
      response = await handler(request, ...rest);
    } catch (err) {
      await giveBack(lease, onError);
      throw err;
    }
    return await finishResponse(response, lease, headers, (completed) =>
      settle(
        lease,
        reconcile && (() => reconcile(response, lease, { request, completed })),
        onError,
      ));
  };
}
