/**
 * The dashboard's Hono app: the security checks in front (the `Host`, the token, read-only, the
 * same-origin check of a change), the JSON API (`/api/...`, the routes of `api_types.ts`), and
 * the page's files for every other path.
 *
 * @module
 */

import { Hono } from "hono";
import { ValidationError } from "../errors.ts";
import { KeySpace } from "../keyspace.ts";
import { limiterState } from "../limiter_admin.ts";
import type { RateLimiter } from "../limiter.ts";
import { validateEntityId, validateResource } from "../validate.ts";
import { LIBRARY_VERSION } from "../version.ts";
import type { InfoView } from "./api_types.ts";
import {
  deleteLimits,
  readAudit,
  readBuckets,
  readEntityPage,
  readLimitLevels,
  readUsage,
  writeLimits,
} from "./entity.ts";
import { readOverview, readTree } from "./overview.ts";
import { answerFor, errorAnswer, json } from "./respond.ts";
import {
  bearerToken,
  crossSiteRefusal,
  hostAllowed,
  loopbackHostRequest,
  TokenCheck,
} from "./security.ts";
import { type Asset, AssetServer } from "./static.ts";

/** The library's version, as `GET /api/info` tells it (src/version.ts). */
export const DASHBOARD_VERSION: string = LIBRARY_VERSION;
/** The largest body a change may send. */
const MAX_BODY_BYTES = 64 * 1024;

/** Options of `createDashboard` (src/dashboard/mod.ts). */
export interface DashboardOptions {
  /** The limiter whose table the dashboard shows and edits. */
  limiter: RateLimiter;
  /** Refuse every change (403); the page shows no edit controls. @default false */
  readOnly?: boolean;
  /**
   * The bearer token every API call must carry (`Authorization: Bearer <token>`), compared in
   * constant time: 16 to 1024 visible ASCII characters. Needed when the server is reachable from
   * other hosts; with one, any `Host` is answered unless `allowedHosts` says otherwise.
   * @default none: the API answers without a token, to loopback host names only
   */
  token?: string;
  /**
   * The `Host` header values to answer; other requests get 403, which stops DNS rebinding. An
   * entry `host:port` is that name on that port (a `Host` with no port is on port 80, or 443 over
   * HTTPS), an entry with no port (`dash.internal`) the name on any port; see
   * `loopbackHosts` for a loopback server's list. Give it to serve a name other than a
   * loopback one without a token (behind a proxy, say).
   * @default with no `token`, loopback names only (`localhost`, `127.x.x.x`, `[::1]`) on any
   * port; with a `token`, any host (a page that rebinds its name has no token to send)
   */
  allowedHosts?: readonly string[];
  /** Where errors that are no library error go (never to the client). @default console.error */
  log?: (err: unknown) => void;
  /** The page's files by URL path. @default the page built into the library */
  assets?: Readonly<Record<string, Asset>>;
}

/** Options of {@link dashboardApp}: those of `createDashboard`, with the page's files given. */
export interface DashboardAppOptions extends DashboardOptions {
  /** The page's files by URL path. */
  assets: Readonly<Record<string, Asset>>;
}

/**
 * Checks the token option: 16 to 1024 visible ASCII characters.
 *
 * @example
 * ```ts
 * import { checkToken } from "./app.ts";
 * console.assert(checkToken(undefined) === undefined && checkToken("0123456789abcdef") === "0123456789abcdef");
 * ```
 */
export function checkToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== "string" || !/^[\x21-\x7e]{16,1024}$/.test(token)) {
    throw new ValidationError(
      "token",
      "(hidden)",
      "must be 16 to 1024 visible ASCII characters (no spaces)",
    );
  }
  return token;
}

/**
 * The dashboard as a Hono app (see {@link DashboardAppOptions}).
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { dashboardApp } from "./app.ts";
 * const app = dashboardApp({ limiter: createTestLimiter(), assets: {}, readOnly: true });
 * const info = await (await app.fetch(new Request("http://127.0.0.1/api/info"))).json();
 * console.assert(info.readOnly === true && info.tokenRequired === false);
 * ```
 */
export function dashboardApp(options: DashboardAppOptions): Hono {
  const { limiter, readOnly = false, allowedHosts, log = (err) => console.error(err) } = options;
  const token = checkToken(options.token);
  const check = token === undefined ? undefined : new TokenCheck(token);
  // With neither a token nor a list, only loopback names: a DNS-rebinding page sends its own.
  const hostServed = allowedHosts !== undefined
    ? (request: Request) => hostAllowed(request, allowedHosts)
    : check === undefined
    ? loopbackHostRequest
    : () => true;
  const assets = new AssetServer(options.assets);
  const clock = limiterState(limiter).parts.clock;
  const app = new Hono();

  app.onError((err) => answerFor(err, log));

  app.use("*", async (c, next) => {
    if (!hostServed(c.req.raw)) {
      return errorAnswer(403, { message: "This dashboard does not answer to that host name" });
    }
    await next();
  });

  app.use("/api/*", async (c, next) => {
    if (check !== undefined && !(await check.matches(bearerToken(c.req.raw)))) {
      return errorAnswer(401, { message: "A valid token is needed (Authorization: Bearer)" }, {
        "WWW-Authenticate": 'Bearer realm="zae-limiter dashboard"',
      });
    }
    const method = c.req.method;
    if (method !== "GET" && method !== "HEAD") {
      if (readOnly) {
        return errorAnswer(403, { message: "The dashboard is read-only: changes are refused" });
      }
      const refusal = crossSiteRefusal(c.req.raw);
      if (refusal !== undefined) return errorAnswer(403, { message: `Refused: ${refusal}` });
    }
    await next();
  });

  const entityId = (id: string | undefined) => validateEntityId(id, "entityId");
  const optionalResource = (r: string | undefined) =>
    r === undefined || r === "" ? undefined : validateResource(r);

  app.get("/api/info", () => {
    const info: InfoView = {
      version: DASHBOARD_VERSION,
      table: limiter.tableName,
      ...(limiter.namespace === KeySpace.DEFAULT.name ? {} : { namespace: limiter.namespace }),
      readOnly,
      tokenRequired: check !== undefined,
    };
    return json(info);
  });
  app.get("/api/overview", async () => json(await readOverview(limiter, clock())));
  app.get("/api/tree", async (c) => json(await readTree(limiter, c.req.query("search") ?? "")));
  app.get(
    "/api/entities/:id",
    async (c) => json(await readEntityPage(limiter, entityId(c.req.param("id")))),
  );
  app.get(
    "/api/entities/:id/buckets",
    async (c) => json(await readBuckets(limiter, entityId(c.req.param("id")))),
  );
  app.get("/api/entities/:id/limits", async (c) => {
    const id = entityId(c.req.param("id"));
    return json(await readLimitLevels(limiter, id, validateResource(c.req.query("resource"))));
  });
  app.put("/api/entities/:id/limits", async (c) => {
    const id = entityId(c.req.param("id"));
    return json(await writeLimits(limiter, id, await bodyOf(c.req.raw)));
  });
  app.delete("/api/entities/:id/limits", async (c) => {
    const id = entityId(c.req.param("id"));
    return json(await deleteLimits(limiter, id, c.req.query("resource")));
  });
  app.get("/api/entities/:id/usage", async (c) => {
    const id = entityId(c.req.param("id"));
    const resource = optionalResource(c.req.query("resource"));
    return json(await readUsage(limiter, id, c.req.query("window"), resource, clock()));
  });
  app.get("/api/entities/:id/audit", async (c) => {
    const id = entityId(c.req.param("id"));
    return json(await readAudit(limiter, id, c.req.query("cursor") || undefined));
  });
  app.all("/api/*", () => errorAnswer(404, { message: "No such API route" }));
  app.all("/api", () => errorAnswer(404, { message: "No such API route" }));
  app.all("*", (c) => assets.answer(c.req.raw));
  return app;
}

/**
 * The JSON body of a change, at most {@link MAX_BODY_BYTES}: reading stops as soon as more has
 * come (a chunked body declares no length), so a huge body is never held.
 */
async function bodyOf(request: Request): Promise<unknown> {
  const declared = Number(request.headers.get("Content-Length") ?? 0);
  const tooLarge = (size: string) => new ValidationError("body", size, "must be at most 64 KB");
  if (declared > MAX_BODY_BYTES) throw tooLarge(`${declared} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_BODY_BYTES) {
        await reader.cancel().catch(() => {});
        throw tooLarge(`more than ${MAX_BODY_BYTES} bytes`);
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  const text = new TextDecoder().decode(bytes);
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError("body", text, "must be JSON");
  }
}
