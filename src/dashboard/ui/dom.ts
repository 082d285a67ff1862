/// <reference lib="dom" />
/**
 * A small element builder for the dashboard's pages: `h("a", { href }, "text")`. Attributes are
 * set with `setAttribute` (never a `style` attribute: the page's Content-Security-Policy refuses
 * inline styles), `on…` keys add event listeners, and children may be nodes, text or numbers.
 *
 * @module
 */

/** What {@link h} takes as a child: `null`, `undefined` and `false` are left out. */
export type Child = Node | string | number | null | undefined | false;

/** Attribute values: `true` sets an empty attribute, `false`/`undefined` leave it out. */
export type Attrs = Record<
  string,
  string | number | boolean | undefined | ((event: Event) => void)
>;

/**
 * Creates an element with attributes, listeners and children.
 *
 * @example
 * ```ts ignore
 * const link = h("a", { href: "#/entities" }, "Entities");
 * ```
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") throw new Error("inline styles are refused by the page's CSP");
    if (typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) el.setAttribute(key, "");
    else if (value !== false && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, ...children);
  return el;
}

/** Appends children (text, numbers or nodes; arrays flattened; empty ones skipped). */
export function append(parent: Node, ...children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/** Removes every child of `el` and appends `children`. */
export function replaceChildren(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, ...children);
}

let idSeq = 0;
/** A fresh element id with a readable prefix, for `for`/`aria-describedby` pairs. */
export function uid(prefix: string): string {
  return `${prefix}-${++idSeq}`;
}
