/**
 * The page's files, served from memory: the `ASSETS` the build embeds (`ui/assets_generated.ts`),
 * so a compiled binary needs no file beside it. A path with no asset of its own gets the page
 * (`/`), so the client's routes load on a reload; each answer has an ETag (a SHA-256 of its body)
 * and is revalidated, so a new build is never served stale.
 *
 * @module
 */

import { SECURITY_HEADERS } from "./security.ts";

/** One embedded file. */
export interface Asset {
  /** Its `Content-Type`. */
  type: string;
  /** Its body (text). */
  body: string;
}

/**
 * Serves `assets` (keyed by URL path, `/` the page) for GET and HEAD.
 *
 * @example
 * ```ts
 * import { AssetServer } from "./static.ts";
 * const server = new AssetServer({ "/": { type: "text/html; charset=utf-8", body: "<!doctype html>" } });
 * const page = await server.answer(new Request("http://127.0.0.1/entities/key-1"));
 * console.assert(page.status === 200 && (await page.text()) === "<!doctype html>");
 * const again = await server.answer(new Request("http://127.0.0.1/", {
 *   headers: { "If-None-Match": page.headers.get("ETag")! },
 * }));
 * console.assert(again.status === 304);
 * ```
 */
export class AssetServer {
  readonly #assets: Readonly<Record<string, Asset>>;
  readonly #etags = new Map<string, Promise<string>>();

  /** @param assets The files by URL path; `/` is the page. */
  constructor(assets: Readonly<Record<string, Asset>>) {
    this.#assets = assets;
  }

  #etag(path: string, body: string): Promise<string> {
    let tag = this.#etags.get(path);
    if (tag === undefined) {
      tag = crypto.subtle.digest("SHA-256", new TextEncoder().encode(body)).then((d) =>
        `"${
          [...new Uint8Array(d).slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("")
        }"`
      );
      this.#etags.set(path, tag);
    }
    return tag;
  }

  /** The answer to a request for a page path (never an API path). */
  async answer(request: Request): Promise<Response> {
    const headers: Record<string, string> = { ...SECURITY_HEADERS };
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method Not Allowed\n", {
        status: 405,
        headers: { ...headers, Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" },
      });
    }
    const pathname = new URL(request.url).pathname;
    // A file the page asks for by name (it has a dot) is never answered with the page.
    const path = pathname in this.#assets
      ? pathname
      : /\.[A-Za-z0-9]+$/.test(pathname)
      ? undefined
      : "/";
    const asset = path === undefined ? undefined : this.#assets[path];
    if (path === undefined || asset === undefined) {
      return new Response("Not Found\n", {
        status: 404,
        headers: { ...headers, "Content-Type": "text/plain; charset=utf-8" },
      });
    }
    const etag = await this.#etag(path, asset.body);
    headers["ETag"] = etag;
    headers["Cache-Control"] = "no-cache";
    headers["Content-Type"] = asset.type;
    if (request.headers.get("If-None-Match") === etag) {
      return new Response(null, { status: 304, headers });
    }
    return new Response(request.method === "HEAD" ? null : asset.body, { status: 200, headers });
  }
}
