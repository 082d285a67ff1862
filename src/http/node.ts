/**
 * The Node `http` side of the Express and Fastify adapters: writing a refusal on a
 * `ServerResponse`, and ending a lease with the response it limits (commit with `reconcile`'s
 * adjustments when the body has been written, rollback when the handler failed, commit with
 * `completed: false` when the client went away). Built on the pieces of `withRateLimit`
 * (`./handler.ts`), so the three behave alike.
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Lease } from "../lease.ts";
import { type Adjustments, giveBack, leaseHeaders, settle } from "./handler.ts";
import type { RateLimitHeaderOptions } from "./headers.ts";
import type { ErrorHandler } from "./responses.ts";

const leases = new WeakMap<IncomingMessage, Lease>();

/** The lease {@link trackResponse} recorded for a Node request; `undefined` when not limited. */
export function nodeLease(request: IncomingMessage): Lease | undefined {
  return leases.get(request);
}

/** A web `Response` taken apart for a Node or Fastify reply. */
export interface ResponseParts {
  /** The status code. */
  status: number;
  /** The headers, `set-cookie` as a list. */
  headers: Record<string, string | string[]>;
  /** The whole body. */
  body: Uint8Array;
}

/**
 * Reads a (small) web `Response`, such as the 429 of `rateLimitedResponse`, into its status,
 * headers and body bytes.
 */
export async function responseParts(response: Response): Promise<ResponseParts> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of response.headers) {
    if (name !== "set-cookie") headers[name] = value;
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  return { status: response.status, headers, body: new Uint8Array(await response.arrayBuffer()) };
}

/** Writes a web `Response` (a refusal) as the whole answer on a Node `ServerResponse`. */
export async function sendResponse(res: ServerResponse, response: Response): Promise<void> {
  const { status, headers, body } = await responseParts(response);
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.setHeader("content-length", body.byteLength);
  res.end(body);
}

/** How {@link trackResponse} ends a lease. */
export interface TrackOptions {
  /** Rate-limit headers to write. @default IETF fields only */
  headers?: RateLimitHeaderOptions;
  /** The adjustments to record before the commit; `completed` as in `withRateLimit`. */
  reconcile?: (completed: boolean) => Adjustments | Promise<Adjustments>;
  /** Whether the framework saw the handler fail (besides a 5xx status, which always counts). */
  failed?: () => boolean;
  /** Told about header, reconcile, commit and rollback failures. */
  onError: ErrorHandler;
}

/**
 * Limits one admitted Node response: records the lease for {@link nodeLease}, sets its
 * rate-limit headers now (before the handler writes its head), and ends the lease once:
 *
 * - when the handler ends the response, the end waits for the lease: rolled back when the status
 *   is 5xx or `failed()` says so, otherwise committed with `reconcile(true)`'s adjustments. As
 *   with `withRateLimit`, a client that has read the whole body knows the lease is written;
 * - when the connection closes before that (the client went away, or the handler's stream broke
 *   part-way), committed with `reconcile(false)`'s, or rolled back on a failure as above.
 */
export function trackResponse(
  req: IncomingMessage,
  res: ServerResponse,
  lease: Lease,
  options: TrackOptions,
): void {
  const { headers, reconcile, failed, onError } = options;
  leases.set(req, lease);
  for (const [name, value] of leaseHeaders(lease, headers, onError)) res.setHeader(name, value);
  let ended: Promise<void> | undefined;
  const end = (completed: boolean): Promise<void> =>
    ended ??= res.statusCode >= 500 || failed?.()
      ? giveBack(lease, onError)
      : settle(lease, reconcile && (() => reconcile(completed)), onError);
  const original = res.end;
  // The last write waits for the lease, as the last chunk of `withRateLimit`'s body does.
  res.end = function (...args: unknown[]) {
    void end(true).then(() => {
      try {
        (original as (...a: unknown[]) => ServerResponse).apply(res, args);
      } catch (err) {
        res.destroy(err as Error);
      }
    });
    return res;
  } as ServerResponse["end"];
  res.once("close", () => {
    if (!res.writableEnded) void end(false);
  });
}
