/**
 * `@zae/limiter/dashboard`: a local web page to see and steer the limits of a table, as a fetch
 * handler to mount in your own server (Deno, Bun, Node, Hono), or run by `zae-limiter dashboard`.
 * The page and its JSON API come from memory (no files); see docs/dashboard.md for the API, the
 * security model and what each page reads.
 *
 * @example
 * ```ts ignore
 * import { RateLimiter } from "@zae/limiter";
 * import { createDashboard } from "@zae/limiter/dashboard";
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * const dashboard = createDashboard({ limiter, readOnly: true });
 * Deno.serve({ hostname: "127.0.0.1", port: 8787 }, dashboard.fetch);
 * ```
 *
 * @module
 */

import type { HonoApp } from "../hono_types.ts";
import { checkToken, DASHBOARD_VERSION, dashboardApp, type DashboardOptions } from "./app.ts";
import { isLoopback } from "./security.ts";
import type { Asset } from "./static.ts";
import { ASSETS } from "./ui/assets_generated.ts";

export type * from "./api_types.ts";
export { CONTENT_SECURITY_POLICY, hostAllowed, isLoopback, loopbackHosts } from "./security.ts";
export { checkToken, DASHBOARD_VERSION };
export type { Asset, DashboardOptions };

/** A dashboard: its fetch handler, and the Hono app underneath for `app.route`. */
export interface Dashboard {
  /** Answers one request: the page, its files, or the JSON API under `/api/`. */
  fetch(request: Request): Promise<Response>;
  /** The Hono app, to mount in another one: `app.route("/", dashboard.app)`. */
  readonly app: HonoApp;
}

/**
 * The dashboard over `limiter`'s table. Nothing is read until a request comes.
 *
 * @throws {ValidationError} When `token` breaks its rule.
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { createDashboard } from "./mod.ts";
 * const dashboard = createDashboard({ limiter: createTestLimiter(), token: "0123456789abcdef" });
 * const denied = await dashboard.fetch(new Request("http://127.0.0.1:8787/api/info"));
 * console.assert(denied.status === 401);
 * const page = await dashboard.fetch(new Request("http://127.0.0.1:8787/"));
 * console.assert(page.status === 200 && page.headers.get("Content-Security-Policy")!.includes("script-src 'self'"));
 * ```
 */
export function createDashboard(options: DashboardOptions): Dashboard {
  const app = dashboardApp({
    limiter: options.limiter,
    readOnly: options.readOnly,
    token: checkToken(options.token),
    allowedHosts: options.allowedHosts,
    log: options.log,
    assets: options.assets ?? ASSETS,
  });
  return {
    app,
    fetch: async (request) => await app.fetch(request),
  };
}

/**
 * Whether serving on `hostname` needs a token: every address but a loopback one.
 *
 * @example
 * ```ts
 * import { tokenNeeded } from "./mod.ts";
 * console.assert(!tokenNeeded("127.0.0.1") && tokenNeeded("0.0.0.0"));
 * ```
 */
export function tokenNeeded(hostname: string): boolean {
  return !isLoopback(hostname);
}
