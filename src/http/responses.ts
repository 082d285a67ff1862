/**
 * The responses the HTTP helpers send instead of the handler's (429, 503, 400, 500) and the one-line
 * log of what went wrong, shared by `withRateLimit` and the Hono middleware.
 *
 * @module
 */

import {
  type ConfigurationError,
  type EntityDisabledError,
  type RateLimiterUnavailable,
  type RateLimitExceeded,
  ValidationError,
} from "../errors.ts";
import { type RateLimitHeaderOptions, setRateLimitHeaders } from "./headers.ts";

/** Options of the 429 and 503 responses. */
export interface RefusalOptions {
  /** Rate-limit headers to write. @default IETF fields only */
  headers?: RateLimitHeaderOptions;
}

/**
 * What went wrong, told to `onError`:
 * - `"key"`: `key()` threw or returned options the limiter refused (the client got a 400 or the
 *   `onInvalidKey` answer);
 * - `"configuration"`: the limiter is set up wrong (a `ConfigurationError`; the client got a 500);
 * - `"headers"`: the rate-limit headers could not be built (the response went out without them);
 * - `"reconcile"`: `reconcile` threw or returned something `adjust` refused (that value was
 *   dropped, the rest committed);
 * - `"commit"`, `"rollback"`: writing the end of the lease failed.
 */
export type ErrorPhase = "key" | "configuration" | "headers" | "reconcile" | "commit" | "rollback";

/** Receives the errors of {@link ErrorPhase}. */
export type ErrorHandler = (error: unknown, phase: ErrorPhase) => void;

/** Why a request's rate-limit key is invalid: given to `onInvalidKey`. */
export interface InvalidKey {
  /** The option at fault, e.g. `"entityId"`, or `"key()"` when `key` threw. */
  field: string;
  /** The rule broken. */
  rule: string;
  /**
   * The start of the value seen, escaped to printable ASCII, at most {@link MAX_ECHO}
   * characters; `undefined` when `key` threw.
   */
  value?: string;
  /** The error thrown, by `key` or by the limiter's validation. */
  error: unknown;
}

/** The longest value echoed in a 400 body or a log line. */
export const MAX_ECHO = 40;

/** The longest line {@link logError} writes. */
export const MAX_LOG_LINE = 400;

/**
 * The 429 response for a refusal: a JSON body ({@link RateLimitExceeded.asDict}),
 * `Retry-After` in whole seconds (left out when the request can never pass) and the
 * rate-limit headers of every limit checked.
 *
 * @example
 * ```ts
 * import { RateLimitExceeded } from "../errors.ts";
 * import { Limit } from "../limit.ts";
 * import { rateLimitedResponse } from "./responses.ts";
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
 * import { unavailableResponse } from "./responses.ts";
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

/**
 * The 403 response for a request refused because its entity, the entity's parent or the resource
 * is switched off ({@link EntityDisabledError}): a JSON body naming what is disabled. Never a 429,
 * and no `Retry-After`: waiting does not help.
 *
 * @example
 * ```ts
 * import { EntityDisabledError } from "../errors.ts";
 * import { disabledResponse } from "./responses.ts";
 * const res = disabledResponse(new EntityDisabledError("key-1", "api", "entity", "key-1"));
 * console.assert(res.status === 403 && res.headers.get("Retry-After") === null);
 * console.assert((await res.json()).disabled === "entity");
 * ```
 */
export function disabledResponse(error: EntityDisabledError): Response {
  return Response.json(error.asDict(), { status: 403 });
}

/**
 * The 500 response sent when the limiter is set up wrong (a `ConfigurationError`: missing table,
 * access denied, bad credentials…), in both failure modes. The body does not repeat the error,
 * which names the table, region and endpoint: that goes to the log.
 *
 * @example
 * ```ts
 * import { ConfigurationError } from "../errors.ts";
 * import { misconfiguredResponse } from "./responses.ts";
 * const res = misconfiguredResponse(new ConfigurationError("table-not-found", "no table"));
 * console.assert(res.status === 500);
 * ```
 */
export function misconfiguredResponse(_error: ConfigurationError): Response {
  return Response.json(
    {
      error: "rate_limiter_misconfigured",
      message: "The rate limiter is misconfigured; the server log says how.",
    },
    { status: 500 },
  );
}

/**
 * The 400 response for a request whose rate-limit key is invalid: a JSON body with `field`,
 * `rule` and (when known) the escaped start of the `value`.
 *
 * @example
 * ```ts
 * import { ValidationError } from "../errors.ts";
 * import { invalidKey, invalidKeyResponse } from "./responses.ts";
 * const res = invalidKeyResponse(invalidKey(new ValidationError("entityId", "a#b", "no #")));
 * console.assert(res.status === 400);
 * const body = await res.json();
 * console.assert(body.field === "entityId" && body.value === '"a#b"');
 * ```
 */
export function invalidKeyResponse(invalid: InvalidKey): Response {
  const { field, rule, value } = invalid;
  return Response.json(
    { error: "invalid_rate_limit_key", message: `Invalid ${field} (${rule})`, field, rule, value },
    { status: 400 },
  );
}

/**
 * Describes an error thrown by `key()` or by the limiter's validation of what `key()` returned.
 *
 * @example
 * ```ts
 * import { invalidKey } from "./responses.ts";
 * console.assert(invalidKey(new Error("boom")).field === "key()");
 * ```
 */
export function invalidKey(error: unknown): InvalidKey {
  if (error instanceof ValidationError) {
    return { field: echo(error.field), rule: error.rule, value: echo(error.value), error };
  }
  return {
    field: "key()",
    rule: "must return the rate-limit options for the request, or null",
    error,
  };
}

/**
 * Escapes `text` to printable ASCII (`\uXXXX` for anything else) and cuts it to `max`
 * characters, ending in `...` when cut: safe to echo in a body or a log line.
 *
 * @example
 * ```ts
 * import { echo } from "./responses.ts";
 * console.assert(echo("a\nb") === "a\\u000ab");
 * console.assert(echo("x".repeat(100)).length === 40);
 * ```
 */
export function echo(text: string, max = MAX_ECHO): string {
  const escaped = text.replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return escaped.length > max ? `${escaped.slice(0, max - 3)}...` : escaped;
}

/**
 * The default `onError`: one line on `console.error`, at most {@link MAX_LOG_LINE} characters,
 * escaped, without a stack, so that a client sending bad keys cannot flood or forge the log.
 *
 * @example
 * ```ts
 * import { logError } from "./responses.ts";
 * logError(new Error("boom\nfake line"), "reconcile"); // zae-limiter: reconcile failed: Error: boom\u000afake line
 * ```
 */
export function logError(error: unknown, phase: ErrorPhase): void {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  console.error(echo(`zae-limiter: ${phase} failed: ${what}`, MAX_LOG_LINE));
}
