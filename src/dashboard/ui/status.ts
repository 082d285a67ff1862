/// <reference lib="dom" />
/**
 * Loading and error notes shared by the pages.
 *
 * @module
 */

import { ApiError } from "./api.ts";
import { h } from "./dom.ts";

/** An alert box describing an error (the API's message, or the error's). */
export function errorBox(err: unknown): HTMLElement {
  const text = err instanceof ApiError
    ? `${err.status}: ${err.error.message}`
    : err instanceof Error
    ? err.message
    : String(err);
  return h("p", { class: "error", role: "alert" }, text);
}

/** A "Loading…" note for a section being fetched. */
export function loading(): HTMLElement {
  return h("p", { class: "loading" }, "Loading…");
}
