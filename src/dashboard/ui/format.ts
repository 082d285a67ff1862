/**
 * How the pages write numbers, times and durations. Pure functions (unit-tested in
 * tests/dashboard_assets_test.ts); every number shown is an integer count as the API gives it.
 *
 * @module
 */

const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 });

/** A count with thousands separators, e.g. `12,500`. */
export function formatNumber(n: number): string {
  return GROUPED.format(n);
}

/**
 * Time until a bucket is full, from milliseconds: `full`, `full in 12 s`, `full in 3 min 5 s`,
 * `full in 2 h 10 min`. Seconds are rounded up, so the page never says full too early.
 */
export function formatUntilFull(ms: number): string {
  if (!(ms > 0)) return "full";
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `full in ${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `full in ${min} min${s % 60 ? ` ${s % 60} s` : ""}`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `full in ${hours} h${min % 60 ? ` ${min % 60} min` : ""}`;
  return `full in ${Math.floor(hours / 24)} d${hours % 24 ? ` ${hours % 24} h` : ""}`;
}

/** An ISO 8601 window start as UTC, e.g. `2026-11-28 13:00`. */
export function formatWindow(iso: string, window: "hourly" | "daily"): string {
  const text = new Date(iso).toISOString();
  return window === "daily" ? text.slice(0, 10) : `${text.slice(0, 10)} ${text.slice(11, 16)}`;
}

/** An ISO 8601 instant as UTC to the second, e.g. `2026-11-28 13:05:09 UTC`. */
export function formatInstant(iso: string): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const text = new Date(t).toISOString();
  return `${text.slice(0, 10)} ${text.slice(11, 19)} UTC`;
}

/** The share of capacity available, 0..100, rounded down. */
export function percentAvailable(available: number, capacity: number): number {
  if (!(capacity > 0)) return 0;
  return Math.max(0, Math.floor((available / capacity) * 100));
}

/**
 * A form field's text as the API should see it: a number when it is a plain decimal (`12`,
 * `0.5`), `null` when empty, else the text itself (`0x10`, `1e3`, `-5`, `1,000`), which the API
 * refuses naming the field and the value, rather than a number read some other way saved.
 */
export function numberField(text: string): number | string | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  return /^\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed;
}
