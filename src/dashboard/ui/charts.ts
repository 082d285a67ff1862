/// <reference lib="dom" />
/**
 * Usage charts, drawn by uPlot, each followed by a "Show as table" table of the same numbers
 * (the charts' text alternative). Times are UTC, as the usage snapshots' windows are.
 *
 * @module
 */

import uPlot from "uplot";
import type { SeriesPoint } from "../api_types.ts";
import { h } from "./dom.ts";
import { formatNumber, formatWindow } from "./format.ts";
import { table } from "./tables.ts";

/** One line of a chart. */
export interface Line {
  /** The legend's label (and the table's column header). */
  label: string;
  /** One value per point. */
  values: number[];
}

/** Line colours, each with a contrast of at least 4.5:1 on white. */
export const COLOURS: readonly string[] = [
  "#1f5fbf",
  "#b3261e",
  "#2e6b30",
  "#6a3d9a",
  "#8a4b00",
  "#00687a",
];

/** An x-axis label in UTC: `13:00` (`11-30` at midnight) per hour, `11-30` per day. */
export function tickLabel(window: "hourly" | "daily"): (seconds: number) => string {
  return (seconds) => {
    const iso = new Date(seconds * 1000).toISOString();
    const time = iso.slice(11, 16);
    return window === "daily" || time === "00:00" ? iso.slice(5, 10) : time;
  };
}

/** A chart's width: two a row on a wide window, one on a narrow one. */
function chartWidth(): number {
  const main = document.getElementById("main");
  const room = (main?.clientWidth ?? 800) - 48;
  return Math.floor(room >= 900 ? (room - 24) / 2 - 18 : Math.max(300, room - 18));
}

/** The charts drawn on the current page, destroyed when the page changes. */
const live = new Set<uPlot>();

/** Destroys every chart of the page being left. */
export function destroyCharts(): void {
  for (const plot of live) plot.destroy();
  live.clear();
}

/**
 * A figure: a title, a uPlot chart of `lines` over `points`' windows, and a collapsed table of
 * the same numbers. With no points, a sentence says so and no chart is drawn.
 */
export function chartFigure(
  title: string,
  window: "hourly" | "daily",
  starts: string[],
  lines: Line[],
  testId: string,
): HTMLElement {
  const figure = h("figure", { class: "chart", "data-testid": testId }, h("figcaption", {}, title));
  if (starts.length === 0) {
    figure.append(h("p", { class: "empty" }, "No usage snapshots in this period."));
    return figure;
  }
  const plotHost = h("div", {
    class: "plot",
    role: "img",
    "aria-label": `${title}: chart; the same numbers are in the table below it.`,
  });
  figure.append(plotHost);
  const width = chartWidth();
  const plot = new uPlot(
    {
      width,
      height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true } },
      series: [
        { label: "window (UTC)" },
        ...lines.map((line, i) => ({
          label: line.label,
          stroke: COLOURS[i % COLOURS.length],
          width: 2,
          points: { show: starts.length < 60 },
        })),
      ],
      axes: [{ space: 60, values: (_u: uPlot, ticks: number[]) => ticks.map(tickLabel(window)) }, {
        values: (_u: uPlot, ticks: number[]) => ticks.map(formatNumber),
        size: 70,
      }],
    },
    [starts.map((s) => Date.parse(s) / 1000), ...lines.map((line) => line.values)],
    plotHost,
  );
  live.add(plot);
  const rows = starts.map((s, i) => [
    formatWindow(s, window),
    ...lines.map((line) => formatNumber(line.values[i])),
  ]);
  figure.append(
    h(
      "details",
      {},
      h("summary", {}, "Show as table"),
      table(
        title,
        [
          { label: window === "daily" ? "Day (UTC)" : "Hour (UTC)" },
          ...lines.map((l) => ({ label: l.label, numeric: true })),
        ],
        rows,
      ),
    ),
  );
  return figure;
}

/** The limit names found in any point's `consumed`, sorted. */
export function limitNames(points: SeriesPoint[]): string[] {
  const names = new Set<string>();
  for (const p of points) for (const name of Object.keys(p.consumed)) names.add(name);
  return [...names].sort();
}

/**
 * A requests chart of `points`: admitted, and per hour refused (daily snapshots carry no
 * refusals, so a daily chart shows admitted requests only rather than a line of zeros).
 */
export function requestsFigure(
  title: string,
  window: "hourly" | "daily",
  points: SeriesPoint[],
  testId: string,
): HTMLElement {
  const lines: Line[] = [{ label: "requests", values: points.map((p) => p.requests) }];
  if (window === "hourly") lines.push({ label: "refused", values: points.map((p) => p.refused) });
  return chartFigure(title, window, points.map((p) => p.windowStart), lines, testId);
}

/** A tokens chart of `points`: one line per limit name (tokens consumed). */
export function tokensFigure(
  title: string,
  window: "hourly" | "daily",
  points: SeriesPoint[],
  testId: string,
  names: string[] = limitNames(points),
): HTMLElement {
  return chartFigure(
    title,
    window,
    points.map((p) => p.windowStart),
    names.map((name) => ({ label: name, values: points.map((p) => p.consumed[name] ?? 0) })),
    testId,
  );
}
