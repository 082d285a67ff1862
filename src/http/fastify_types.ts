/**
 * The Fastify types that the public signatures of `@zae/limiter/http/fastify` mention, under
 * aliases, as `../hono_types.ts` does for Hono: `deno doc --lint` takes a type of another package
 * for a private type of this one (denoland/deno#27364) and skips a type tagged `@internal`.
 * Type-only: the plugin does not load Fastify at run time.
 *
 * @module
 */

import type * as Fastify from "fastify";

/** @internal Fastify's `FastifyRequest`. */
export type FastifyRequest = Fastify.FastifyRequest;

/** @internal Fastify's `FastifyReply`. */
export type FastifyReply = Fastify.FastifyReply;

/** @internal Fastify's `FastifyPluginAsync` with options `O`. */
export type FastifyPluginAsync<O extends Fastify.FastifyPluginOptions> = Fastify.FastifyPluginAsync<
  O
>;
