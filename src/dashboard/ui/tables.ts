/// <reference lib="dom" />
/**
 * Data tables for the pages: a caption, column headers with `scope`, and numeric cells aligned
 * right (class `num`). Every chart is followed by one of these with the same numbers.
 *
 * @module
 */

import { type Child, h } from "./dom.ts";

/** A column: its header, and whether its cells are numbers (aligned right). */
export interface Column {
  /** The header text. */
  label: string;
  /** Numbers: aligned right. */
  numeric?: boolean;
}

/**
 * A table with a caption. The first cell of each row is its header (`<th scope="row">`).
 *
 * @example
 * ```ts ignore
 * table("Most refused", [{ label: "Entity" }, { label: "Refused", numeric: true }], [["k1", "3"]]);
 * ```
 */
export function table(
  caption: string,
  columns: Column[],
  rows: Child[][],
  attrs: Record<string, string> = {},
): HTMLTableElement {
  const cls = (c: Column | undefined) => (c?.numeric ? "num" : undefined);
  return h(
    "table",
    attrs,
    h("caption", {}, caption),
    h(
      "thead",
      {},
      h("tr", {}, columns.map((c) => h("th", { scope: "col", class: cls(c) }, c.label))),
    ),
    h(
      "tbody",
      {},
      rows.map((cells) =>
        h(
          "tr",
          {},
          cells.map((cell, i) =>
            i === 0
              ? h("th", { scope: "row", class: cls(columns[i]) }, cell)
              : h("td", { class: cls(columns[i]) }, cell)
          ),
        )
      ),
    ),
  );
}

/** A paragraph saying a list is empty, e.g. "No refusals in the last 24 hours." */
export function empty(text: string): HTMLParagraphElement {
  return h("p", { class: "empty" }, text);
}
