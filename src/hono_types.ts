/**
 * The Hono types that the public signatures of `@zae/limiter/http/hono` and
 * `@zae/limiter/dashboard` mention, under aliases.
 *
 * Each alias is Hono's own type. They exist for the docs, like those of `../aws_types.ts`:
 * `deno doc --lint` takes a type of another package for a private type of this one
 * (denoland/deno#27364), and it skips a reference to a type tagged `@internal`.
 *
 * @module
 */

import type * as Hono from "hono";

/** @internal Hono's `Context` of a request, for an app with environment `E`. */
export type Context<E extends Hono.Env> = Hono.Context<E>;

/** @internal Hono's `MiddlewareHandler`, for an app with environment `E`. */
export type MiddlewareHandler<E extends Hono.Env> = Hono.MiddlewareHandler<E>;

/** @internal Hono's app class (`new Hono()`), as `@zae/limiter/dashboard` hands it out. */
export type HonoApp = Hono.Hono;
