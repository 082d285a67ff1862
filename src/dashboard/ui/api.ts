/// <reference lib="dom" />
/**
 * The pages' client of the dashboard's JSON API (src/dashboard/api_types.ts). The bearer token,
 * when the dashboard has one, is kept in `sessionStorage` only (gone when the tab closes) and
 * sent as `Authorization: Bearer …`; a `#token=…` fragment is taken once and removed from the
 * address bar.
 *
 * @module
 */

import type { ErrorView } from "../api_types.ts";

const TOKEN_KEY = "zae-limiter-dashboard-token";

/** An answer other than 2xx: its status and the API's error body. */
export class ApiError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** The API's `{ error }` body (or one made up when the body was not JSON). */
  readonly error: ErrorView;
  /** Builds the error from a status and an error body. */
  constructor(status: number, error: ErrorView) {
    super(error.message);
    this.name = "ApiError";
    this.status = status;
    this.error = error;
  }
}

/** The stored token, or `null`. */
export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Stores the token for this tab (or forgets it, with `null`). */
export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * Takes a `#token=…` fragment, stores the token and replaces the address with the overview's,
 * so the token is neither shown nor kept in the history. Says whether it found one (`"taken"`),
 * none (`"none"`), or one that is not percent-encoding (`"malformed"`, e.g. `#token=%`): that one
 * is dropped from the address too, and nothing is stored.
 */
export function takeTokenFromFragment(): "taken" | "none" | "malformed" {
  const match = /^#token=([^&]*)$/.exec(location.hash);
  if (!match) return "none";
  let token: string | undefined;
  try {
    token = decodeURIComponent(match[1]);
  } catch {
    token = undefined;
  }
  if (token) setToken(token);
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  return token ? "taken" : "malformed";
}

/** Listeners told when the API answers 401 (the page then asks for the token). */
const unauthorizedListeners: ((tokenSent: boolean) => void)[] = [];

/** Calls `listener` whenever the API answers 401, saying whether a token had been sent. */
export function onUnauthorized(listener: (tokenSent: boolean) => void): void {
  unauthorizedListeners.push(listener);
}

/**
 * Calls the API: `path` under `/api/`, JSON in and out. Throws {@link ApiError} on any answer
 * but 2xx.
 */
export async function api<T>(
  path: string,
  init: { method?: string; body?: unknown; signal?: AbortSignal } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`/api/${path}`, {
    method: init.method ?? "GET",
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: init.signal,
    credentials: "same-origin",
  });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const error = (parsed as { error?: ErrorView } | undefined)?.error ??
      { message: `${res.status} ${res.statusText || "error"}` };
    if (res.status === 401) {
      for (const listener of unauthorizedListeners) listener(token !== null);
    }
    throw new ApiError(res.status, error);
  }
  return parsed as T;
}

/** `encodeURIComponent` for a path segment (entity ids may hold `/`, `#` or spaces). */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
