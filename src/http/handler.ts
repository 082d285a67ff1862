/**
 * {@link withRateLimit}: rate limiting for any fetch handler (`Deno.serve`, `Bun.serve`, Deno
 * Deploy, Cloudflare-style workers), plus the pieces it is made of, shared with the Hono
 * middleware.
 *
 * @module
 */

import {
  ConfigurationError,
  EntityDisabledError,
  RateLimiterUnavailable,
  RateLimitExceeded,
  ValidationError,
} from "../errors.ts";
import type { Lease } from "../lease.ts";
import type { AcquireOptions } from "../limiter.ts";
import {
  type RateLimitHeaderOptions,
  setRateLimitHeaders,
  setShadowRefusedHeader,
} from "./headers.ts";
import {
  disabledResponse,
  type ErrorHandler,
  type InvalidKey,
  invalidKey,
  invalidKeyResponse,
  logError,
  misconfiguredResponse,
  rateLimitedResponse,
  type RefusalOptions,
  unavailableResponse,
} from "./responses.ts";

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
   * unlimited (health checks, static files). When it throws, or returns options the limiter
   * refuses (an entity id from a header that breaks the entity id rule), the request is the
   * client's fault: it gets `onInvalidKey`'s answer, a 400 by default. For client addresses use
   * `ipKey` (same module).
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
   * Answers a request whose key is invalid (see `key`), e.g. with a 401 at a gateway.
   * @default {@link invalidKeyResponse}: 400 with a JSON body naming the field and the rule
   */
  onInvalidKey?: (invalid: InvalidKey, request: Request) => Response | Promise<Response>;
  /**
   * Told about what the client does not see in full: an invalid key, a misconfigured limiter
   * (the client gets a 500), headers that could not be built, a failed reconcile, commit or
   * rollback. @default {@link logError}: one bounded line, no stack
   */
  onError?: ErrorHandler;
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

/** The outcome of {@link admit}: a lease to go on with, or the response to send instead. */
export type Admission =
  | { lease: Lease; response?: undefined; unlimited?: false }
  | { lease?: undefined; response: Response; unlimited?: false }
  | { lease?: undefined; response?: undefined; unlimited: true };

/** What {@link admit} answers with, besides the lease. */
export interface AdmitOptions extends RefusalOptions {
  /** Builds the 429. @default {@link rateLimitedResponse} */
  onRateLimited?: (error: RateLimitExceeded) => Response | Promise<Response>;
  /** Builds the answer to an invalid key. @default {@link invalidKeyResponse} (400) */
  onInvalidKey?: (invalid: InvalidKey) => Response | Promise<Response>;
  /** Told about invalid keys, misconfigurations and header failures. @default {@link logError} */
  onError?: ErrorHandler;
}

/**
 * Runs `key` and acquires for a request: a lease; `unlimited` when `key` returned `null` or
 * `undefined`; or the response to send instead:
 *
 * - 429 when a limit refused ({@link rateLimitedResponse}, or `onRateLimited`);
 * - 403 when the entity, its parent or the resource is disabled ({@link disabledResponse});
 * - 503 when DynamoDB is unavailable and the failure mode is FAIL_CLOSED;
 * - 400 ({@link invalidKeyResponse}, or `onInvalidKey`) when `key` threw or the limiter refused
 *   what it returned (a `ValidationError`, e.g. an entity id from a header that breaks the
 *   entity id rule): that is the client's input, not a server error;
 * - 500 ({@link misconfiguredResponse}) on a `ConfigurationError`, in both failure modes.
 *
 * The last two are also told to `onError` (one log line by default). Other errors are thrown.
 *
 * @example
 * ```ts ignore
 * const { lease, response } = await admit(limiter, () => options, { onRateLimited });
 * if (response) return response;
 * ```
 */
export async function admit(
  limiter: LeaseAcquirer,
  key: () => AcquireOptions | null | undefined | Promise<AcquireOptions | null | undefined>,
  options: AdmitOptions = {},
): Promise<Admission> {
  const { onRateLimited, onInvalidKey = invalidKeyResponse, onError = logError } = options;
  const invalid = async (err: unknown): Promise<Admission> => {
    onError(err, "key");
    return { response: await onInvalidKey(invalidKey(err)) };
  };
  let acquire: AcquireOptions | null | undefined;
  try {
    acquire = await key();
  } catch (err) {
    return await invalid(err);
  }
  if (acquire === null || acquire === undefined) return { unlimited: true };
  try {
    return { lease: await limiter.acquire(acquire) };
  } catch (err) {
    if (err instanceof RateLimitExceeded) {
      if (onRateLimited) return { response: await onRateLimited(err) };
      try {
        return { response: rateLimitedResponse(err, options) };
      } catch (headerError) {
        // A refused request keeps its 429 even when a custom header option fails.
        onError(headerError, "headers");
        return { response: rateLimitedResponse(err, { headers: { ietf: false } }) };
      }
    }
    if (err instanceof EntityDisabledError) return { response: disabledResponse(err) };
    if (err instanceof RateLimiterUnavailable) return { response: unavailableResponse(err) };
    if (err instanceof ConfigurationError) {
      onError(err, "configuration");
      return { response: misconfiguredResponse(err) };
    }
    if (err instanceof ValidationError) return await invalid(err);
    throw err;
  }
}

/**
 * The rate-limit headers of an admitted request: those of {@link setRateLimitHeaders} for the
 * lease's statuses (soft limits included) and, for a shadow-mode lease that would have been
 * refused, {@link setShadowRefusedHeader}'s. When they cannot be built (a custom `policyName`
 * that throws), none are returned and `onError` is told.
 *
 * @example
 * ```ts ignore
 * for (const [name, value] of leaseHeaders(lease, { openai: true })) res.setHeader(name, value);
 * ```
 */
export function leaseHeaders(
  lease: Lease,
  headerOptions: RateLimitHeaderOptions | undefined,
  onError: ErrorHandler = logError,
): Headers {
  const limited = new Headers();
  try {
    setRateLimitHeaders(limited, lease.statuses, headerOptions);
    const primary = lease.statuses[0]?.entityId ?? lease.shadowRefusals[0]?.entityId;
    setShadowRefusedHeader(
      limited,
      lease.shadowRefusals,
      primary,
      headerOptions,
      lease.statuses[0]?.resource,
    );
  } catch (err) {
    onError(err, "headers");
    return new Headers();
  }
  return limited;
}

/**
 * Returns `response` with the lease's rate-limit headers, and with its body wrapped so that
 * `finish(completed)` runs once when the body has been read to the end (`true`) or cancelled or
 * failed (`false`). A response without a body finishes before this returns. While the body
 * ends normally the stream waits for `finish` before closing, so a client that has read the
 * whole body knows the reconciliation is written. When the headers cannot be built (a custom
 * `policyName` that throws), the response goes out without them and `onError` is told.
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
  onError: ErrorHandler = logError,
): Promise<Response> {
  // A protocol switch (WebSocket) must be returned untouched.
  if (response.status === 101) {
    await finish(true);
    return response;
  }
  const headers = new Headers(response.headers);
  for (const [name, value] of leaseHeaders(lease, headerOptions, onError)) headers.set(name, value);
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
 * and commit. Never throws: failures go to `onError`. A `reconcile` that throws, or returns
 * something that is not an object of amounts, adds nothing; each amount `adjust` refuses (`NaN`,
 * a string, an unknown limit) is dropped alone. Either way the lease is committed with every
 * other adjustment, the handler's own included.
 */
export async function settle(
  lease: Lease,
  reconcile: (() => Adjustments | Promise<Adjustments>) | undefined,
  onError: ErrorHandler,
): Promise<void> {
  if (reconcile && lease.state === "open") {
    let adjustments: unknown;
    try {
      adjustments = await reconcile();
    } catch (err) {
      onError(err, "reconcile");
    }
    if (adjustments !== undefined && adjustments !== null && lease.state === "open") {
      if (typeof adjustments !== "object" || Array.isArray(adjustments)) {
        onError(
          new ValidationError(
            "reconcile()",
            adjustments,
            "must return an object of limit name to amount, or nothing",
          ),
          "reconcile",
        );
      } else {
        for (const [name, amount] of Object.entries(adjustments)) {
          try {
            await lease.adjust({ [name]: amount });
          } catch (err) {
            onError(err, "reconcile");
          }
        }
      }
    }
  }
  try {
    await lease.commit();
  } catch (err) {
    onError(err, "commit");
  }
}

/** Gives the lease back after a failed handler; failures go to `onError`. */
export async function giveBack(lease: Lease, onError: ErrorHandler): Promise<void> {
  try {
    await lease.rollback();
  } catch (err) {
    onError(err, "rollback");
  }
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
 * - **Client errors are not server errors.** A `key` that throws or returns an invalid entity id
 *   gets a 400 (or `onInvalidKey`'s answer); a `ConfigurationError` (missing table, access
 *   denied) gets a 500 in both failure modes, never a pass. Each is one line in the log.
 * - **A failing `reconcile` costs only its own value**: the lease is committed with every other
 *   adjustment, and `onError` is told.
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
  const { limiter, key, reconcile, headers, onRateLimited, onInvalidKey, onError = logError } =
    options;
  return async (request, ...rest) => {
    const { lease, response: refused } = await admit(limiter, () => key(request, ...rest), {
      headers,
      onRateLimited: onRateLimited && ((err) => onRateLimited(err, request)),
      onInvalidKey: onInvalidKey && ((invalid) => onInvalidKey(invalid, request)),
      onError,
    });
    if (refused) return refused;
    if (!lease) return await handler(request, ...rest);
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
      ), onError);
  };
}
