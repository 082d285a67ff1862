/// <reference lib="dom" />
/**
 * The entity page's usage charts for one resource, from `GET /api/entities/:id/usage`: requests
 * (admitted and refused) and one chart per limit of the tokens it consumed, hourly or daily.
 *
 * @module
 */

import type { UsageView } from "../../api_types.ts";
import { api, seg } from "../api.ts";
import { limitNames, requestsFigure, tokensFigure } from "../charts.ts";
import { h, replaceChildren } from "../dom.ts";
import { errorBox } from "../status.ts";

/** The usage section of `resource`, with a window choice (hourly by default). */
export function usageSection(entityId: string, resource: string, sectionId: string): HTMLElement {
  const body = h("div", { class: "charts" }, "Loading…");
  const titleId = `${sectionId}-usage-title`;
  const selectId = `${sectionId}-window`;
  const select = h(
    "select",
    { id: selectId, name: "window" },
    h("option", { value: "hourly", selected: true }, "per hour"),
    h("option", { value: "daily" }, "per day"),
  );
  const section = h(
    "section",
    { "aria-labelledby": titleId, "data-testid": `usage-${resource}` },
    h("h3", { id: titleId }, "Usage"),
    h("div", { class: "inline" }, h("label", { for: selectId }, "Window"), select),
    body,
  );
  const load = async () => {
    const window = select.value === "daily" ? "daily" : "hourly";
    try {
      const view = await api<UsageView>(
        `entities/${seg(entityId)}/usage?window=${window}&resource=${encodeURIComponent(resource)}`,
      );
      const points = view.series.find((s) => s.resource === resource)?.points ?? [];
      const per = window === "daily" ? "per day" : "per hour";
      const testId = `${resource}-${window}`;
      replaceChildren(
        body,
        requestsFigure(`${resource}: requests ${per}`, window, points, `requests-${testId}`),
        limitNames(points).map((name) =>
          tokensFigure(`${resource}: ${name} ${per}`, window, points, `tokens-${testId}-${name}`, [
            name,
          ])
        ),
      );
    } catch (err) {
      replaceChildren(body, errorBox(err));
    }
  };
  select.addEventListener("change", () => void load());
  void load();
  return section;
}
