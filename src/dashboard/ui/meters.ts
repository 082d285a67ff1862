/// <reference lib="dom" />
/**
 * A bucket's level: a `<meter>` of available tokens against capacity, with the numbers as text
 * beside it (`available / capacity`), so the value is never shown by colour or length alone.
 *
 * @module
 */

import { h } from "./dom.ts";
import { formatNumber, percentAvailable } from "./format.ts";

/** A meter and its text, `label` naming the bucket for screen readers. */
export function meterCell(available: number, capacity: number, label: string): HTMLElement {
  const text = `${formatNumber(available)} / ${formatNumber(capacity)}`;
  return h(
    "span",
    { class: "level" },
    h("meter", {
      min: 0,
      max: capacity,
      low: capacity * 0.2,
      high: capacity * 0.5,
      optimum: capacity,
      value: Math.max(0, available),
      "aria-label": `${label}: ${text} available (${percentAvailable(available, capacity)} %)`,
    }),
    h("span", { class: "level-text" }, text),
  );
}
