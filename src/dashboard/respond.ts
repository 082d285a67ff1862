/**
 * The API's answers: JSON with the headers every API answer carries, and each library error as
 * its status and {@link ErrorView}: bad input 400 (naming field, value and rule), a missing entity
 * 404, DynamoDB out of reach 503, a misconfiguration 500 with its message (never a success, never
 * a stack trace, never a credential).
 *
 * @module
 */

import {
  ConfigurationError,
  EntityNotFoundError,
  RateLimiterUnavailable,
  ValidationError,
  ZaeLimiterError,
} from "../errors.ts";
import type { ErrorView } from "./api_types.ts";
import { LimitInputError } from "./limit_view.ts";
import { SECURITY_HEADERS } from "./security.ts";

/** The headers of every API answer: the security headers, JSON, and no caching. */
export const API_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  ...SECURITY_HEADERS,
  "Content-Type": "application/json; charset=utf-8",
  "Cache-Control": "no-store",
});

/**
 * A JSON answer of the API.
 *
 * @example
 * ```ts
 * import { json } from "./respond.ts";
 * const answer = json({ ok: true });
 * console.assert(answer.status === 200 && answer.headers.get("Cache-Control") === "no-store");
 * ```
 */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...API_HEADERS, ...headers } });
}

/**
 * An error answer: `{ error: ErrorView }` with `status`.
 *
 * @example
 * ```ts
 * import { errorAnswer } from "./respond.ts";
 * const answer = errorAnswer(403, { message: "The dashboard is read-only" });
 * console.assert(answer.status === 403);
 * ```
 */
export function errorAnswer(
  status: number,
  error: ErrorView,
  headers: Record<string, string> = {},
): Response {
  return json({ error }, status, headers);
}

/**
 * The answer for an error thrown by a route. Anything that is not a known library error is a 500
 * whose message says no more than that (the details go to `log`).
 *
 * @example
 * ```ts
 * import { ValidationError } from "../errors.ts";
 * import { answerFor } from "./respond.ts";
 * const answer = answerFor(new ValidationError("entityId", "a#b", "must not contain '#'"));
 * console.assert(answer.status === 400);
 * const body = await answer.json();
 * console.assert(body.error.field === "entityId" && body.error.rule === "must not contain '#'");
 * ```
 */
export function answerFor(err: unknown, log: (err: unknown) => void = () => {}): Response {
  if (err instanceof ValidationError) {
    return errorAnswer(400, {
      field: err.field,
      value: err.value,
      rule: err.rule,
      message: err.message,
      ...(err instanceof LimitInputError ? { limitIndex: err.index } : {}),
    });
  }
  if (err instanceof EntityNotFoundError) return errorAnswer(404, { message: err.message });
  if (err instanceof RateLimiterUnavailable) {
    return errorAnswer(503, { message: "DynamoDB cannot be reached; try again" }, {
      "Retry-After": "5",
    });
  }
  if (err instanceof ConfigurationError) {
    // The library's message says what is wrong and what to do; it carries no credential.
    return errorAnswer(500, { message: err.message });
  }
  // Another error of the library (a closed limiter, a change that lost a race): its message.
  if (err instanceof ZaeLimiterError) return errorAnswer(500, { message: err.message });
  log(err);
  return errorAnswer(500, { message: "The dashboard failed to answer; see the server's log" });
}
