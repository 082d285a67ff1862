/// <reference lib="dom" />
/**
 * Hash routing: `#/` (overview), `#/entities` (the tree, `#/entities?search=…`) and
 * `#/entity/<id>` (an entity page). Other fragments (e.g. `#main` of the skip link) leave the
 * page as it is.
 *
 * @module
 */

/** A parsed route. */
export type Route =
  | { page: "overview" }
  | { page: "entities"; search: string }
  | { page: "entity"; entityId: string }
  | { page: "missing"; hash: string };

/** Parses a location hash; `null` when it is not a route (not starting with `#/`). */
export function parseRoute(hash: string): Route | null {
  if (hash === "" || hash === "#") return { page: "overview" };
  if (!hash.startsWith("#/")) return null;
  const [path, query = ""] = hash.slice(1).split("?", 2);
  if (path === "/" || path === "") return { page: "overview" };
  if (path === "/entities") {
    return { page: "entities", search: new URLSearchParams(query).get("search") ?? "" };
  }
  const entity = /^\/entity\/(.+)$/.exec(path);
  if (entity) {
    try {
      return { page: "entity", entityId: decodeURIComponent(entity[1]) };
    } catch {
      return { page: "missing", hash };
    }
  }
  return { page: "missing", hash };
}

/** The hash of an entity's page. */
export function entityHref(entityId: string): string {
  return `#/entity/${encodeURIComponent(entityId)}`;
}
