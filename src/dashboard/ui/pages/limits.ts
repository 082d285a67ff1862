/// <reference lib="dom" />
/**
 * The entity page's stored limits for one resource: every level (this entity for the resource,
 * this entity for every resource, the resource's defaults, the system defaults) with the
 * effective one marked in words, from `GET /api/entities/:id/limits?resource=`. Unless the
 * dashboard is read-only, the entity's two levels get edit forms (src/dashboard/ui/limit_form.ts)
 * and the table is read again after every write.
 *
 * @module
 */

import type { LimitLevel, LimitLevelsView, LimitsWriteResult } from "../../api_types.ts";
import { api, seg } from "../api.ts";
import { h, replaceChildren } from "../dom.ts";
import { limitForm } from "../limit_form.ts";
import { errorBox } from "../status.ts";
import { table } from "../tables.ts";

/** Each level's name on the page. */
export function levelName(level: LimitLevel, resource: string): string {
  switch (level) {
    case "entity-resource":
      return `This entity, for ${resource}`;
    case "entity":
      return "This entity, every resource";
    case "resource":
      return `Defaults of ${resource}`;
    case "system":
      return "System defaults";
  }
}

/** The stored limits of `resource`, with edit forms unless `readOnly`. */
export function limitsSection(
  entityId: string,
  resource: string,
  readOnly: boolean,
  sectionId: string,
): HTMLElement {
  const body = h("div", {}, "Loading…");
  const titleId = `${sectionId}-limits-title`;
  const section = h(
    "section",
    { "aria-labelledby": titleId, "data-testid": `limits-${resource}` },
    h("h3", { id: titleId }, "Stored limits"),
    body,
  );
  const load = async () => {
    try {
      const view = await api<LimitLevelsView>(
        `entities/${seg(entityId)}/limits?resource=${encodeURIComponent(resource)}`,
      );
      replaceChildren(body, levelsTable(view), readOnly ? readOnlyNote() : forms(view));
    } catch (err) {
      replaceChildren(body, errorBox(err));
    }
  };

  // Kept across reloads: which edit panels are open, and what the last write stored.
  const opened = new Set<LimitLevel>();
  let notice: { level: LimitLevel; text: string } | undefined;

  const forms = (view: LimitLevelsView) => {
    return (["entity-resource", "entity"] as const).map((level) => {
      const stored = view.levels.find((l) => l.level === level)?.limits ?? null;
      const target = { entityId, resource: level === "entity" ? "*" : resource, current: stored };
      const saved = (result: LimitsWriteResult) => {
        const text = result.limits?.map((l) => l.text).join("; ") ?? "none";
        notice = { level, text };
        void load();
      };
      const details = h(
        "details",
        { class: "edit", "data-level": level, open: opened.has(level) },
        h("summary", {}, `Edit: ${levelName(level, resource)}`),
        notice?.level === level
          ? h(
            "p",
            { class: "form-status", role: "status", "data-testid": "saved" },
            "Saved. Stored now, read back from the table: ",
            h("span", { class: "stored" }, notice.text),
          )
          : "",
        (stored ?? []).map((limit) => limitForm(target, limit, saved)),
        limitForm(target, undefined, saved),
        stored ? removeButton(target.resource, level) : "",
      );
      details.addEventListener("toggle", () => {
        if (details.open) opened.add(level);
        else opened.delete(level);
      });
      return details;
    });
  };

  const removeButton = (target: string, level: LimitLevel) => {
    const status = h("p", { role: "status", class: "form-status" });
    const button = h("button", { type: "button", class: "danger" }, "Remove these limits");
    button.addEventListener("click", async () => {
      if (!confirm(`Remove the stored limits of "${levelName(level, resource)}"?`)) return;
      try {
        await api<LimitsWriteResult>(
          `entities/${seg(entityId)}/limits?resource=${encodeURIComponent(target)}`,
          { method: "DELETE" },
        );
        await load();
      } catch (err) {
        replaceChildren(status, errorBox(err));
      }
    });
    return h("div", { class: "remove" }, button, status);
  };

  void load();
  return section;
}

function levelsTable(view: LimitLevelsView): HTMLElement {
  return table(
    `Limits of ${view.resource} at each level, most specific first`,
    [{ label: "Level" }, { label: "Stored limits" }, { label: "Used by acquires" }],
    view.levels.map((level) => [
      levelName(level.level, view.resource),
      level.limits === null
        ? h("span", { class: "muted" }, "none stored")
        : h("ul", { class: "plain" }, level.limits.map((l) => h("li", {}, l.text))),
      level.effective ? h("strong", { class: "effective" }, "effective") : "",
    ]),
    { "data-testid": `levels-${view.resource}` },
  );
}

function readOnlyNote(): HTMLElement {
  return h(
    "p",
    { class: "note", "data-testid": "read-only-note" },
    "This dashboard is read-only: limits cannot be changed here.",
  );
}
