/// <reference lib="dom" />
/**
 * An entity's page (`#/entity/<id>`): what it is (`GET /api/entities/:id`), its live buckets
 * (read every 3 s), and for each resource its stored limits at every level (editable unless
 * read-only) and usage charts; then its audit events when the table keeps an audit trail.
 *
 * @module
 */

import type { EntityPageView } from "../../api_types.ts";
import { api, ApiError, seg } from "../api.ts";
import { h, replaceChildren } from "../dom.ts";
import { formatInstant } from "../format.ts";
import { type Cleanup, type PageContext, setTitle } from "../page.ts";
import { entityHref } from "../router.ts";
import { errorBox, loading } from "../status.ts";
import { auditSection } from "./audit.ts";
import { bucketsSection } from "./buckets.ts";
import { limitsSection } from "./limits.ts";
import { usageSection } from "./usage.ts";

/** Renders the page of `entityId` into `ctx.main`; the cleanup stops the buckets' refresh. */
export async function renderEntity(
  ctx: PageContext,
  entityId: string,
): Promise<Cleanup | undefined> {
  setTitle(entityId);
  replaceChildren(ctx.main, h("h1", {}, entityId), loading());
  let view: EntityPageView;
  try {
    view = await api<EntityPageView>(`entities/${seg(entityId)}`);
  } catch (err) {
    const text = err instanceof ApiError && err.status === 404
      ? h(
        "p",
        { role: "alert" },
        `No entity "${entityId}". `,
        h("a", { href: "#/entities" }, "See every entity"),
        ".",
      )
      : errorBox(err);
    replaceChildren(ctx.main, h("h1", {}, entityId), text);
    return undefined;
  }
  const buckets = bucketsSection(entityId);
  replaceChildren(
    ctx.main,
    h(
      "p",
      { class: "crumbs" },
      h("a", { href: "#/entities" }, "Entities"),
      view.entity.parentId
        ? [" › ", h("a", { href: entityHref(view.entity.parentId) }, view.entity.parentId)]
        : "",
    ),
    h(
      "h1",
      {},
      entityId,
      view.entity.name ? h("span", { class: "muted" }, ` ${view.entity.name}`) : "",
    ),
    facts(view),
    buckets.section,
    view.resources.map((resource, i) =>
      h(
        "section",
        { "aria-labelledby": `res-${i}-title`, class: "resource", "data-resource": resource },
        h("h2", { id: `res-${i}-title` }, `Resource ${resource}`),
        limitsSection(entityId, resource, ctx.info.readOnly, `res-${i}`),
        usageSection(entityId, resource, `res-${i}`),
      )
    ),
    view.resources.length === 0
      ? h("p", { class: "empty" }, "No resource has buckets or stored limits for this entity yet.")
      : "",
    auditSection(entityId),
  );
  return buckets.stop;
}

function facts(view: EntityPageView): HTMLElement {
  const e = view.entity;
  const yes = (b: boolean) => (b ? "yes" : "no");
  const pairs: [string, Node | string][] = [
    [
      "Parent",
      e.parentId ? h("a", { href: entityHref(e.parentId) }, e.parentId) : "none (a project)",
    ],
    ["Cascade to parent", yes(e.cascade)],
    ["Disabled", yes(e.disabled)],
    ["Bypass", yes(e.bypass)],
    ["Created", formatInstant(e.createdAt)],
  ];
  for (const [key, value] of Object.entries(e.metadata)) pairs.push([`Metadata ${key}`, value]);
  if (view.children.length > 0) {
    pairs.push([
      "API keys",
      h(
        "ul",
        { class: "plain" },
        view.children.map((c) => h("li", {}, h("a", { href: entityHref(c) }, c))),
      ),
    ]);
  }
  return h(
    "dl",
    { class: "facts", "data-testid": "entity-facts" },
    pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}
