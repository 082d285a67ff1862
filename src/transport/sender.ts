/**
 * The lean transport's senders: what puts one signed request on the wire and returns its answer.
 * The default is the HTTP/1.1 socket client (`http1.ts`), about half the client CPU of `fetch` a
 * call; `fetch` is kept where it does what the sockets cannot (a proxy from the environment) or
 * where the caller asked for it (an option, or a `fetch` replaced by a mock or an instrumentation).
 * See "Client CPU" in docs/design.md.
 *
 * @module
 */

import process from "node:process";
import type { Http1Client } from "./http1.ts";

/** One signed POST, as a {@link LeanSender} gets it. */
export interface LeanRequest {
  /** The endpoint's URL. */
  url: string;
  /** The signed headers, without `host` (the sender sets it from the URL). */
  headers: Record<string, string>;
  /** The JSON body. */
  body: string;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** An answer, whatever its status. */
export interface LeanAnswer {
  /** The HTTP status. */
  status: number;
  /** A header's value, or null (names are case-insensitive). */
  header(name: string): string | null;
  /** The body. */
  text: string;
}

/**
 * Sends one request and resolves with its answer; rejects on a network failure (with node's
 * `code`, when it has one) or an abort (the signal's reason). Never retries.
 */
export type LeanSender = (request: LeanRequest) => Promise<LeanAnswer>;

/** A sender that calls `fetchFn`. */
export function fetchSender(fetchFn: typeof fetch): LeanSender {
  return async ({ url, headers, body, signal }) => {
    const response = await fetchFn(url, { method: "POST", headers, body, signal });
    const text = await response.text();
    return { status: response.status, header: (name) => response.headers.get(name), text };
  };
}

/** `fetch` as this module found it: a different one later is a mock or an instrumentation. */
const NATIVE_FETCH = globalThis.fetch;

/**
 * A sender over `client`'s sockets; while `globalThis.fetch` is not the one this module was
 * loaded with (a test's mock, an instrumentation wrapping it), that `fetch` instead, so that
 * what the caller installed still sees the calls.
 */
export function socketSender(client: Http1Client): LeanSender {
  return async (request) => {
    if (globalThis.fetch !== NATIVE_FETCH) return await fetchSender(globalThis.fetch)(request);
    const { url, headers, body, signal } = request;
    const answer = await client.post({ url, headers, body, signal });
    const got = answer.headers;
    return {
      status: answer.status,
      header: (name) => got.get(name.toLowerCase()) ?? null,
      text: answer.text,
    };
  };
}

const PROXY_VARS = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"];

/**
 * Whether the environment names a proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, either
 * case): Deno's and Bun's `fetch` honour them, the socket client does not.
 */
export function proxyConfigured(): boolean {
  try {
    return PROXY_VARS.some((name) => Boolean(process.env[name] || process.env[name.toLowerCase()]));
  } catch {
    return true; // the environment cannot be read here; fetch reads it, so keep fetch
  }
}
