/**
 * The Express types that the public signatures of `@zae/limiter/http/express` mention, under
 * aliases, as `../hono_types.ts` does for Hono: `deno doc --lint` takes a type of another package
 * for a private type of this one (denoland/deno#27364) and skips a type tagged `@internal`.
 * Type-only: the adapter does not load Express at run time.
 *
 * @module
 */

import type * as Express from "express";

/** @internal Express's `Request`. */
export type Request = Express.Request;

/** @internal Express's `Response`. */
export type Response = Express.Response;

/** @internal Express's `NextFunction`. */
export type NextFunction = Express.NextFunction;

/** @internal Express's `RequestHandler`. */
export type RequestHandler = Express.RequestHandler;
