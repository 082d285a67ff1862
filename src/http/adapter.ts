/**
 * What the framework adapters (`./hono.ts`, `./express.ts`, `./fastify.ts`) have in common: the
 * options they take, stated once for a framework's request type, and the admission step that
 * hands the request to `onRateLimited` and `onInvalidKey`.
 *
 * @module
 */

import type { RateLimitExceeded } from "../errors.ts";
import type { Lease } from "../lease.ts";
import type { AcquireOptions } from "../limiter.ts";
import { type Adjustments, type Admission, admit, type LeaseAcquirer } from "./handler.ts";
import type { RateLimitHeaderOptions } from "./headers.ts";
import { type ErrorHandler, type InvalidKey, logError } from "./responses.ts";

/**
 * The options every framework middleware takes besides `key` and `reconcile`, for a framework
 * whose request is `Req` (Hono's `Context`, Express's `Request`, Fastify's `FastifyRequest`).
 */
export interface RateLimitAdapterOptions<Req> {
  /** The limiter. */
  limiter: LeaseAcquirer;
  /** Rate-limit headers to write. @default IETF fields only */
  headers?: RateLimitHeaderOptions;
  /**
   * Builds the 429 as a web `Response`, sent as is.
   * @default `rateLimitedResponse`: JSON body, `Retry-After` and the rate-limit headers
   */
  onRateLimited?: (error: RateLimitExceeded, request: Req) => Response | Promise<Response>;
  /**
   * Answers a request whose key is invalid as a web `Response`, e.g. a 401 at a gateway.
   * @default a 400 with a JSON body naming the field and the rule (`invalidKeyResponse`)
   */
  onInvalidKey?: (invalid: InvalidKey, request: Req) => Response | Promise<Response>;
  /**
   * Told about invalid keys, a misconfigured limiter (the client gets a 500), headers that could
   * not be built, failed reconciles, commits and rollbacks. @default one bounded log line
   */
  onError?: ErrorHandler;
}

/**
 * The options of a middleware on Node's `http` (Express, Fastify): `key` and `reconcile` see the
 * framework's request `Req` and response `Res`.
 */
export interface NodeRateLimitOptions<Req, Res> extends RateLimitAdapterOptions<Req> {
  /**
   * What to acquire for the request; `null` or `undefined` lets it through unlimited. When it
   * throws, or returns options the limiter refuses (an invalid entity id), the request gets
   * `onInvalidKey`'s answer, a 400 by default. For client addresses use `ipKey` from
   * `@zae/limiter/http`.
   */
  key: (
    request: Req,
    response: Res,
  ) => AcquireOptions | null | undefined | Promise<AcquireOptions | null | undefined>;
  /**
   * Called once the handler has ended the response (`completed: true`, before the last bytes go
   * out) or the connection closed first (`completed: false`), before the lease is committed:
   * return the adjustments to record, e.g. from a usage header of the response. Handlers can
   * also adjust the adapter's `getLease(request)` themselves.
   */
  reconcile?: (
    request: Req,
    response: Res,
    lease: Lease,
    info: { completed: boolean },
  ) => Adjustments | Promise<Adjustments>;
}

/**
 * {@link admit} for an adapter, its options read once: the function returned acquires for a
 * request, giving `onRateLimited` and `onInvalidKey` that request besides what `admit` tells
 * them; `onError` defaults to {@link logError}.
 */
export function admitter<Req>(
  options: RateLimitAdapterOptions<Req>,
): (
  request: Req,
  key: () => AcquireOptions | null | undefined | Promise<AcquireOptions | null | undefined>,
) => Promise<Admission> {
  const { limiter, headers, onRateLimited, onInvalidKey, onError = logError } = options;
  return (request, key) =>
    admit(limiter, key, {
      headers,
      onRateLimited: onRateLimited && ((error) => onRateLimited(error, request)),
      onInvalidKey: onInvalidKey && ((invalid) => onInvalidKey(invalid, request)),
      onError,
    });
}
