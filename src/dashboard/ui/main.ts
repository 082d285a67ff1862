/// <reference lib="dom" />
/**
 * The dashboard's browser entry point: reads `GET /api/info` (asking for the token when the API
 * answers 401), then shows the page the location hash names and follows `hashchange`.
 *
 * @module
 */

import type { InfoView } from "../api_types.ts";
import { api, ApiError, onUnauthorized, setToken, takeTokenFromFragment } from "./api.ts";
import { destroyCharts } from "./charts.ts";
import { h, replaceChildren, uid } from "./dom.ts";
import { renderEntity } from "./pages/entity.ts";
import { renderOverview } from "./pages/overview.ts";
import { renderTree } from "./pages/tree.ts";
import { parseRoute, type Route } from "./router.ts";
import type { Cleanup } from "./page.ts";
import { errorBox } from "./status.ts";

let info: InfoView | undefined;
let cleanup: Cleanup | undefined;
let asking = false;
/** Counts page changes: a page whose data arrives after the next change is dropped. */
let shown = 0;

function mainEl(): HTMLElement {
  return document.getElementById("main")!;
}

function markCurrent(route: Route): void {
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a[data-page]")) {
    if (link.dataset.page === route.page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function show(route: Route): Promise<void> {
  const seq = ++shown;
  cleanup?.();
  cleanup = undefined;
  destroyCharts();
  markCurrent(route);
  // Each page renders into a container of its own: one left before its data came writes into a
  // detached element, never over the page that followed it.
  const host = h("div", { class: "page" });
  replaceChildren(mainEl(), host);
  const ctx = { info: info!, main: host };
  let stop: Cleanup | undefined;
  if (route.page === "overview") stop = await renderOverview(ctx);
  else if (route.page === "entities") stop = await renderTree(ctx, route.search);
  else if (route.page === "entity") stop = await renderEntity(ctx, route.entityId);
  else {
    replaceChildren(
      host,
      h("h1", {}, "Not found"),
      h("p", {}, "No page here. ", h("a", { href: "#/" }, "Go to the overview"), "."),
    );
    document.title = "Not found · zae-limiter dashboard";
  }
  if (seq === shown && !asking) cleanup = stop;
  else stop?.(); // left already: stop its timers now
}

function route(): void {
  if (asking) return;
  const parsed = parseRoute(location.hash);
  if (parsed) void show(parsed).catch(showError);
}

/** A link followed: show its page and move the focus to it, as a page load would. */
function navigate(): void {
  if (asking || !parseRoute(location.hash)) return;
  route();
  mainEl().focus({ preventScroll: true });
  scrollTo(0, 0);
}

function showError(err: unknown): void {
  if (err instanceof ApiError && err.status === 401) return; // the token form is shown
  replaceChildren(mainEl(), h("h1", {}, "Error"), errorBox(err));
}

/** Replaces the page with a labelled token form; a submitted token starts the page again. */
function askForToken(message?: string): void {
  if (asking) return;
  asking = true;
  shown++; // a page still loading is dropped
  cleanup?.();
  cleanup = undefined;
  destroyCharts();
  const inputId = uid("token");
  const errorId = uid("token-error");
  const input = h("input", {
    id: inputId,
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": errorId,
  });
  const error = h("p", { id: errorId, class: "field-error", role: "alert" }, message ?? "");
  const form = h(
    "form",
    { class: "token-form", "aria-labelledby": "token-title" },
    h("h1", { id: "token-title" }, "Token needed"),
    h(
      "p",
      {},
      "This dashboard's API needs the token it was started with (",
      h("code", {}, "--token"),
      " or ",
      h("code", {}, "ZAE_LIMITER_DASHBOARD_TOKEN"),
      "). It is kept in this tab only, until the tab closes.",
    ),
    h("label", { for: inputId }, "Dashboard token"),
    input,
    error,
    h("button", { type: "submit" }, "Open the dashboard"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    asking = false;
    void boot().catch(showError);
  });
  replaceChildren(mainEl(), form);
  input.focus();
}

async function boot(): Promise<void> {
  try {
    info = await api<InfoView>("info");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the token form is shown
    throw err;
  }
  const meta = document.getElementById("meta");
  if (meta) {
    replaceChildren(
      meta,
      `table ${info.table}`,
      info.namespace ? ` · namespace ${info.namespace}` : "",
      ` · v${info.version}`,
      info.readOnly ? h("strong", { class: "badge" }, "read-only") : "",
    );
  }
  route();
}

function start(): void {
  // A malformed `#token=` must not stop the page: the API's 401 then brings the token form.
  let unread = false;
  try {
    unread = takeTokenFromFragment() === "malformed";
  } catch {
    unread = true;
  }
  onUnauthorized((tokenSent) => {
    setToken(null);
    askForToken(
      tokenSent
        ? "That token was refused: check it and try again."
        : unread
        ? "The token in the address could not be read: type it here."
        : undefined,
    );
    unread = false;
  });
  document.getElementById("skip")?.addEventListener("click", (event) => {
    event.preventDefault();
    mainEl().focus();
  });
  globalThis.addEventListener("hashchange", navigate);
  void boot().catch(showError);
}

start();
