/// <reference lib="dom" />
/**
 * The entity tree (`#/entities`): projects (entities with no parent) and their API keys, as
 * nested lists of links, with a search box. Read from `GET /api/tree?search=` when the page
 * opens and on each search.
 *
 * @module
 */

import type { TreeNode, TreeView } from "../../api_types.ts";
import { api } from "../api.ts";
import { h, replaceChildren } from "../dom.ts";
import { type Cleanup, type PageContext, setTitle } from "../page.ts";
import { entityHref } from "../router.ts";
import { errorBox, loading } from "../status.ts";
import { empty } from "../tables.ts";

/** Renders the tree into `ctx.main`, filtered by `search`. */
export async function renderTree(
  ctx: PageContext,
  search: string,
): Promise<Cleanup | undefined> {
  setTitle("Entities");
  const input = h("input", {
    id: "tree-search",
    name: "search",
    type: "search",
    value: search,
    autocomplete: "off",
  });
  const results = h("div", { id: "tree-results", "aria-live": "polite" }, loading());
  const form = h(
    "form",
    { class: "search", role: "search" },
    h("label", { for: "tree-search" }, "Search entities (id or name)"),
    input,
    h("button", { type: "submit" }, "Search"),
  );
  replaceChildren(ctx.main, h("h1", {}, "Entities"), form, results);
  const load = async (text: string) => {
    try {
      const query = text ? `?search=${encodeURIComponent(text)}` : "";
      const view = await api<TreeView>(`tree${query}`);
      replaceChildren(results, ...treeBody(view, text));
    } catch (err) {
      replaceChildren(results, errorBox(err));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    const hash = text ? `#/entities?search=${encodeURIComponent(text)}` : "#/entities";
    history.replaceState(null, "", hash);
    void load(text);
  });
  await load(search);
  return undefined;
}

function treeBody(view: TreeView, search: string): HTMLElement[] {
  if (view.roots.length === 0) {
    return [empty(search ? `No entity matches "${search}".` : "No entities yet.")];
  }
  const count = countNodes(view.roots);
  return [
    h(
      "p",
      { class: "note", "data-testid": "tree-count" },
      `${count} ${count === 1 ? "entity" : "entities"}`,
      search ? ` matching "${search}"` : "",
      view.truncated ? " (more exist than one page reads; search to narrow)" : "",
      ".",
    ),
    h("ul", { class: "tree", "data-testid": "tree" }, view.roots.map(treeItem)),
  ];
}

function treeItem(node: TreeNode): HTMLLIElement {
  return h(
    "li",
    { "data-entity": node.entityId },
    h("a", { href: entityHref(node.entityId) }, node.entityId),
    node.name ? h("span", { class: "muted" }, ` ${node.name}`) : "",
    node.disabled ? h("span", { class: "badge" }, "disabled") : "",
    node.children.length > 0 ? h("ul", {}, node.children.map(treeItem)) : "",
  );
}

function countNodes(nodes: TreeNode[]): number {
  return nodes.reduce((n, node) => n + 1 + countNodes(node.children), 0);
}
