/**
 * Usage snapshots as chart series: windows of a fixed span ending at the current one, zero-filled,
 * oldest first, each the sum of the snapshots that fall in it. Pure.
 *
 * @module
 */

import type { UsageSnapshot } from "../usage.ts";
import type { SeriesPoint } from "./api_types.ts";

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The windows of a chart. */
export type ChartWindow = "hourly" | "daily";

/** How many windows each chart shows: 48 hours, 30 days. */
export const WINDOWS_SHOWN: Readonly<Record<ChartWindow, number>> = { hourly: 48, daily: 30 };

/**
 * The start of the first window shown at `nowMs`, epoch ms (UTC hours and days, as the
 * aggregator's windows).
 *
 * @example
 * ```ts
 * import { firstWindowStart } from "./series.ts";
 * const now = Date.parse("2026-11-28T13:20:00Z");
 * console.assert(new Date(firstWindowStart("hourly", now)).toISOString() === "2026-11-26T14:00:00.000Z");
 * ```
 */
export function firstWindowStart(window: ChartWindow, nowMs: number): number {
  const span = window === "hourly" ? HOUR : DAY;
  return Math.floor(nowMs / span) * span - (WINDOWS_SHOWN[window] - 1) * span;
}

/**
 * Requests refused in a snapshot: `UsageSnapshot.refused` (hourly windows; written by the limiters
 * that refused them), else 0.
 *
 * @example
 * ```ts
 * import { refusedOf } from "./series.ts";
 * import type { UsageSnapshot } from "../usage.ts";
 * const hour: UsageSnapshot = { entityId: "k", resource: "api", window: "hourly",
 *   windowStart: "2026-11-28T13:00:00Z", windowEnd: "2026-11-28T14:00:00Z", consumed: {},
 *   requests: 0, refused: 3 };
 * console.assert(refusedOf(hour) === 3 && refusedOf({ ...hour, refused: undefined }) === 0);
 * ```
 */
export function refusedOf(snapshot: UsageSnapshot): number {
  return snapshot.refused ?? 0;
}

/**
 * Accumulates snapshots into the zero-filled windows of one chart.
 *
 * @example
 * ```ts
 * import { SeriesBuilder } from "./series.ts";
 * const now = Date.parse("2026-11-28T13:20:00Z");
 * const chart = new SeriesBuilder("hourly", now);
 * chart.add({ entityId: "k", resource: "api", window: "hourly", windowStart: "2026-11-28T13:00:00Z",
 *   windowEnd: "2026-11-28T14:00:00Z", consumed: { rpm: 4 }, requests: 4 });
 * const points = chart.points();
 * console.assert(points.length === 48 && points[47].requests === 4 && points[0].requests === 0);
 * ```
 */
export class SeriesBuilder {
  readonly #first: number;
  readonly #span: number;
  readonly #points: SeriesPoint[];

  /**
   * @param window Hourly or daily windows.
   * @param nowMs The current time: its window is the last one.
   */
  constructor(window: ChartWindow, nowMs: number) {
    this.#span = window === "hourly" ? HOUR : DAY;
    this.#first = firstWindowStart(window, nowMs);
    this.#points = Array.from({ length: WINDOWS_SHOWN[window] }, (_, i) => ({
      windowStart: new Date(this.#first + i * this.#span).toISOString().replace(".000Z", "Z"),
      requests: 0,
      refused: 0,
      consumed: {},
    }));
  }

  /** Adds a snapshot to its window; one outside the chart is left out. */
  add(snapshot: UsageSnapshot): void {
    const point = this.#pointOf(snapshot);
    if (point === undefined) return;
    point.requests += snapshot.requests;
    point.refused += refusedOf(snapshot);
    for (const [name, amount] of Object.entries(snapshot.consumed)) {
      point.consumed[name] = (point.consumed[name] ?? 0) + amount;
    }
  }

  /**
   * Adds only a snapshot's refusals: those of a key whose requests and tokens its project's
   * snapshot already counts (a refusal is counted on the key that asked, never on its project).
   */
  addRefused(snapshot: UsageSnapshot): void {
    const point = this.#pointOf(snapshot);
    if (point !== undefined) point.refused += refusedOf(snapshot);
  }

  /** The chart's window of a snapshot; `undefined` outside the chart. */
  #pointOf(snapshot: UsageSnapshot): SeriesPoint | undefined {
    return this.#points[Math.floor((Date.parse(snapshot.windowStart) - this.#first) / this.#span)];
  }

  /** The windows, oldest first. */
  points(): SeriesPoint[] {
    return this.#points;
  }
}
