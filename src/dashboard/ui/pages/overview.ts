/// <reference lib="dom" />
/**
 * The overview (`#/`): requests and tokens per hour (48 hours) and per day (30 days), every
 * entity summed; the entities with the most refusals in the last 24 hours; the buckets closest
 * to their limits. Read from `GET /api/overview` when the page opens and on "Refresh".
 *
 * @module
 */

import type { OverviewView } from "../../api_types.ts";
import { api } from "../api.ts";
import { destroyCharts, requestsFigure, tokensFigure } from "../charts.ts";
import { h, replaceChildren } from "../dom.ts";
import { formatInstant, formatNumber } from "../format.ts";
import { meterCell } from "../meters.ts";
import { type Cleanup, type PageContext, setTitle } from "../page.ts";
import { entityHref } from "../router.ts";
import { errorBox, loading } from "../status.ts";
import { empty, table } from "../tables.ts";

/** Renders the overview into `ctx.main`. */
export async function renderOverview(ctx: PageContext): Promise<Cleanup | undefined> {
  setTitle("Overview");
  const body = h("div", {}, loading());
  const refresh = h("button", { type: "button" }, "Refresh");
  replaceChildren(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), refresh),
    body,
  );
  const load = async () => {
    try {
      const view = await api<OverviewView>("overview");
      destroyCharts();
      replaceChildren(body, ...overviewSections(view));
    } catch (err) {
      replaceChildren(body, errorBox(err));
    }
  };
  refresh.addEventListener("click", () => void load());
  await load();
  return undefined;
}

function overviewSections(view: OverviewView): HTMLElement[] {
  return [
    h(
      "p",
      { class: "note", "data-testid": "overview-generated" },
      `As of ${formatInstant(view.generatedAt)}, from ${
        formatNumber(view.entitiesScanned)
      } entities`,
      view.truncated ? " (more exist: the figures cover only those read)" : "",
      ".",
    ),
    h(
      "section",
      { "aria-labelledby": "hourly-title" },
      h("h2", { id: "hourly-title" }, "Last 48 hours, per hour"),
      h(
        "div",
        { class: "charts" },
        requestsFigure("Requests per hour", "hourly", view.hourly, "requests-hourly"),
        tokensFigure("Tokens per hour, by limit", "hourly", view.hourly, "tokens-hourly"),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "daily-title" },
      h("h2", { id: "daily-title" }, "Last 30 days, per day"),
      h(
        "div",
        { class: "charts" },
        requestsFigure("Requests per day", "daily", view.daily, "requests-daily"),
        tokensFigure("Tokens per day, by limit", "daily", view.daily, "tokens-daily"),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "refused-title" },
      h("h2", { id: "refused-title" }, "Most refused, last 24 hours"),
      view.mostRefused.length === 0 ? empty("No refusals in the last 24 hours.") : table(
        "Entities with the most refused requests",
        [{ label: "Entity" }, { label: "Refused", numeric: true }, {
          label: "Requests admitted",
          numeric: true,
        }],
        view.mostRefused.map((r) => [
          h("a", { href: entityHref(r.entityId) }, r.entityId),
          formatNumber(r.refused),
          formatNumber(r.requests),
        ]),
        { "data-testid": "most-refused" },
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "close-title" },
      h("h2", { id: "close-title" }, "Closest to their limits now"),
      view.closeToLimit.length === 0 ? empty("No buckets yet.") : table(
        "Buckets with the smallest share of their capacity available",
        [{ label: "Entity" }, { label: "Resource" }, { label: "Limit" }, {
          label: "Available / capacity",
        }],
        view.closeToLimit.map((b) => [
          h("a", { href: entityHref(b.entityId) }, b.entityId),
          b.resource,
          b.limit,
          meterCell(b.available, b.capacity, `${b.entityId} ${b.resource} ${b.limit}`),
        ]),
        { "data-testid": "close-to-limit" },
      ),
    ),
  ];
}
