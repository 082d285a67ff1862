/// <reference lib="dom" />
/**
 * The entity page's audit events (`GET /api/entities/:id/audit`), newest first, with "Load
 * more" while the API gives a cursor. Hidden when the table keeps no audit trail.
 *
 * @module
 */

import type { AuditView } from "../../api_types.ts";
import { api, seg } from "../api.ts";
import { h, replaceChildren } from "../dom.ts";
import { formatInstant } from "../format.ts";
import { errorBox } from "../status.ts";
import { empty, table } from "../tables.ts";

/** The audit section, filled once the first page of events is read. */
export function auditSection(entityId: string): HTMLElement {
  const body = h("div", {}, "Loading…");
  const section = h(
    "section",
    { "aria-labelledby": "audit-title", "data-testid": "audit" },
    h("h2", { id: "audit-title" }, "Audit events"),
    body,
  );
  const events: AuditView["events"] = [];
  let loading = false;
  const load = async (cursor?: string, button?: HTMLButtonElement) => {
    // One page at a time: a second click while one is read would add its events twice.
    if (loading) return;
    loading = true;
    if (button) {
      button.disabled = true;
      button.textContent = "Loading…";
    }
    try {
      const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
      const view = await api<AuditView>(`entities/${seg(entityId)}/audit${query}`);
      if (!view.available) {
        section.hidden = true;
        return;
      }
      events.push(...view.events);
      const more = view.cursor ? h("button", { type: "button" }, "Load more") : "";
      if (more) more.addEventListener("click", () => void load(view.cursor, more));
      replaceChildren(
        body,
        events.length === 0 ? empty("No audit events for this entity.") : table(
          "Changes to this entity, newest first",
          [{ label: "When (UTC)" }, { label: "Who" }, { label: "Action" }, { label: "Scope" }, {
            label: "Change",
          }],
          events.map((e) => [formatInstant(e.at), e.principal, e.action, e.scope, e.summary]),
          { "data-testid": "audit-table" },
        ),
        more,
      );
    } catch (err) {
      replaceChildren(body, errorBox(err));
    } finally {
      loading = false;
    }
  };
  void load();
  return section;
}
