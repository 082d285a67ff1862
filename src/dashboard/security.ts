/**
 * The dashboard's defences, each a pure check on a `Request`: the bearer token (compared in
 * constant time), the same-origin check of a mutating call (CSRF), the `Host` check against DNS
 * rebinding, and the headers every answer carries (Content-Security-Policy with no inline script,
 * `nosniff`, no referrer, no framing). See docs/dashboard.md, "Security".
 *
 * @module
 */

/** The Content-Security-Policy of every answer: no inline script, nothing from elsewhere. */
export const CONTENT_SECURITY_POLICY: string = "default-src 'none'; script-src 'self'; " +
  "style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; " +
  "form-action 'self'; frame-ancestors 'none'";

/**
 * The headers every answer carries (pages, assets, the API and its errors).
 *
 * @example
 * ```ts
 * import { SECURITY_HEADERS } from "./security.ts";
 * console.assert(SECURITY_HEADERS["X-Content-Type-Options"] === "nosniff");
 * ```
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
});

/**
 * Checks bearer tokens against one secret in constant time: both sides are hashed with
 * HMAC-SHA-256 under a key made at random for the process, and the digests compared byte by byte
 * without an early exit, so neither the time taken nor the lengths tell anything of the secret.
 *
 * @example
 * ```ts
 * import { TokenCheck } from "./security.ts";
 * const check = new TokenCheck("s3cret-token");
 * console.assert(await check.matches("s3cret-token"));
 * console.assert(!(await check.matches("s3cret-tokem")));
 * console.assert(!(await check.matches(undefined)));
 * ```
 */
export class TokenCheck {
  readonly #key: Promise<CryptoKey>;
  readonly #expected: Promise<Uint8Array>;

  /** @param token The secret every API call must present. */
  constructor(token: string) {
    this.#key = crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    this.#expected = this.#digest(token);
  }

  async #digest(text: string): Promise<Uint8Array> {
    const key = await this.#key;
    return new Uint8Array(
      await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(text)),
    );
  }

  /** Whether `presented` is the token (`undefined`: none was presented). */
  async matches(presented: string | undefined): Promise<boolean> {
    // A missing token is hashed too, so it takes the time of a wrong one.
    const [expected, got] = await Promise.all([this.#expected, this.#digest(presented ?? "")]);
    let diff = presented === undefined ? 1 : 0;
    for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ got[i];
    return diff === 0;
  }
}

/**
 * The token of an `Authorization: Bearer <token>` header; `undefined` when there is none.
 *
 * @example
 * ```ts
 * import { bearerToken } from "./security.ts";
 * const request = new Request("http://127.0.0.1/api/info", { headers: { Authorization: "Bearer abc" } });
 * console.assert(bearerToken(request) === "abc");
 * console.assert(bearerToken(new Request("http://127.0.0.1/")) === undefined);
 * ```
 */
export function bearerToken(request: Request): string | undefined {
  const header = request.headers.get("Authorization");
  const m = header === null ? null : /^Bearer +(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

/**
 * Why a mutating call (PUT, DELETE) is refused as cross-site, or `undefined` when it may go on:
 * its `Origin` must be the request's own origin (or, with no `Origin`, `Sec-Fetch-Site` must be
 * `same-origin`), and its `Content-Type` `application/json` (which a plain HTML form cannot send;
 * a `DELETE`, which has no body, may send none).
 *
 * @example
 * ```ts
 * import { crossSiteRefusal } from "./security.ts";
 * const put = (headers: Record<string, string>) =>
 *   new Request("http://127.0.0.1:8787/api/entities/k/limits", { method: "PUT", headers });
 * const json = { "Content-Type": "application/json" };
 * console.assert(crossSiteRefusal(put({ ...json, Origin: "http://127.0.0.1:8787" })) === undefined);
 * console.assert(crossSiteRefusal(put({ ...json, Origin: "https://evil.example" })) !== undefined);
 * console.assert(crossSiteRefusal(put({ Origin: "http://127.0.0.1:8787" })) !== undefined);
 * console.assert(crossSiteRefusal(put(json)) !== undefined);
 * ```
 */
export function crossSiteRefusal(request: Request): string | undefined {
  const own = new URL(request.url).origin;
  const origin = request.headers.get("Origin");
  if (origin !== null) {
    if (origin !== own) {
      return `a change must come from the dashboard's own origin (${own}), not ${
        JSON.stringify(origin.slice(0, 100))
      }`;
    }
  } else if (request.headers.get("Sec-Fetch-Site") !== "same-origin") {
    return "a change needs an Origin header (or Sec-Fetch-Site: same-origin)";
  }
  // A body must be JSON (a form's body never is). A DELETE carries none, and no form or simple
  // cross-site request can send one: its Origin above is the check.
  const type = request.headers.get("Content-Type");
  if (
    (request.method !== "DELETE" || type !== null) &&
    !/^application\/json\s*(;|$)/i.test(type ?? "")
  ) {
    return "a change must be sent as Content-Type: application/json";
  }
  return undefined;
}

/**
 * A request's `Host` split into its name (lower case; an IPv6 address keeps its brackets) and
 * port; a `Host` with no port gets the default port of the request's scheme (443 for `https:`,
 * else 80), as a browser leaves it out there. `undefined` when the `Host` is malformed.
 *
 * @example
 * ```ts
 * import { requestHost } from "./security.ts";
 * const host = (h: string) => requestHost(new Request("http://x/", { headers: { Host: h } }));
 * console.assert(host("LocalHost:8787")?.name === "localhost" && host("localhost:8787")?.port === 8787);
 * console.assert(host("[::1]")?.name === "[::1]" && host("[::1]")?.port === 80);
 * console.assert(host("::1") === undefined && host("a:b") === undefined);
 * ```
 */
export function requestHost(request: Request): { name: string; port: number } | undefined {
  const url = new URL(request.url);
  return splitHost(request.headers.get("Host") ?? url.host, url.protocol === "https:" ? 443 : 80);
}

/** `name[:port]` or `[v6][:port]` split, the port defaulted; `undefined` when malformed. */
function splitHost(text: string, defaultPort: number): { name: string; port: number } | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/i.exec(text.trim());
  if (!m) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  return port > 65_535 ? undefined : { name: m[1].toLowerCase(), port };
}

/**
 * Whether a request's `Host` is one of `allowed` (compared without case). An entry `host:port`
 * matches that name on that port (a `Host` without a port is on its scheme's default port, 80 or
 * 443); an entry with no port (`dash.internal`, `[::1]`) matches the name on any port. A
 * DNS-rebinding page, whose requests carry its own host name, gets nothing.
 *
 * @example
 * ```ts
 * import { hostAllowed } from "./security.ts";
 * const allowed = ["127.0.0.1:8787", "localhost:8787", "dash.internal"];
 * const at = (host: string) => new Request("http://127.0.0.1/", { headers: { Host: host } });
 * console.assert(hostAllowed(at("localhost:8787"), allowed));
 * console.assert(hostAllowed(at("dash.internal:9000"), allowed));
 * console.assert(!hostAllowed(at("evil.example:8787"), allowed));
 * console.assert(hostAllowed(at("localhost"), ["localhost:80"]));
 * ```
 */
export function hostAllowed(request: Request, allowed: readonly string[]): boolean {
  const host = requestHost(request);
  if (host === undefined) return false;
  return allowed.some((entry) => {
    const want = splitHost(entry, -1);
    return want !== undefined && want.name === host.name &&
      (want.port === -1 || want.port === host.port);
  });
}

/**
 * Whether a request's `Host` names a loopback address (`localhost`, `127.x.x.x`, `[::1]`) on any
 * port: what the dashboard answers to when it has neither a token nor `allowedHosts`, so a
 * DNS-rebinding page (whose requests carry its own name) can neither read nor write.
 *
 * @example
 * ```ts
 * import { loopbackHostRequest } from "./security.ts";
 * const at = (host: string) => new Request("http://127.0.0.1/", { headers: { Host: host } });
 * console.assert(loopbackHostRequest(at("localhost:3000")) && loopbackHostRequest(at("[::1]")));
 * console.assert(!loopbackHostRequest(at("evil.example:8787")));
 * ```
 */
export function loopbackHostRequest(request: Request): boolean {
  const host = requestHost(request);
  return host !== undefined && isLoopback(host.name);
}

/**
 * The `Host` values a server bound to `hostname` on `port` answers to: for a loopback address,
 * its loopback names (`127.0.0.1`, `localhost`, `[::1]`) and the address itself (`127.0.0.2`);
 * `undefined` for another address (the token guards it instead). On port 80 a browser sends no
 * port: {@link hostAllowed} takes that as port 80.
 *
 * @example
 * ```ts
 * import { loopbackHosts } from "./security.ts";
 * console.assert(loopbackHosts("127.0.0.1", 8787)?.includes("localhost:8787"));
 * console.assert(loopbackHosts("127.0.0.2", 8787)?.includes("127.0.0.2:8787"));
 * console.assert(loopbackHosts("0.0.0.0", 8787) === undefined);
 * ```
 */
export function loopbackHosts(hostname: string, port: number): string[] | undefined {
  if (!isLoopback(hostname)) return undefined;
  const bound = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  const names = ["127.0.0.1", "localhost", "[::1]", bound.includes(":") ? `[${bound}]` : bound];
  return [...new Set(names)].map((h) => `${h}:${port}`);
}

/**
 * Whether `hostname` is a loopback address or name (`127.0.0.0/8`, `::1`, `localhost`).
 *
 * @example
 * ```ts
 * import { isLoopback } from "./security.ts";
 * console.assert(isLoopback("127.0.0.1") && isLoopback("::1") && isLoopback("localhost"));
 * console.assert(!isLoopback("0.0.0.0") && !isLoopback("192.168.1.4"));
 * ```
 */
export function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
