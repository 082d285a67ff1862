/**
 * Local wall-clock time in an IANA time zone, from `Intl.DateTimeFormat` alone: the offset at an
 * instant, and the instant of a local time, with fixed rules for the local times a DST change
 * skips or repeats. The base of the reset and schedule math (`reset.ts`, `schedule.ts`).
 *
 * Wall-clock times are handled as "wall milliseconds": the local date and time written as if it
 * were UTC (`Date.UTC(y, m - 1, d, h, mi)`), so that calendar arithmetic is plain integers.
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";

/** Milliseconds in a minute. */
export const MINUTE_MS = 60_000;
/** Milliseconds in a (wall-clock) day. */
export const DAY_MS = 86_400_000;
/** The earliest instant the calendar accepts: 1900-01-01T00:00:00Z. */
export const MIN_INSTANT_MS = -2_208_988_800_000;
/** The latest instant the calendar accepts: 9000-01-01T00:00:00Z. */
export const MAX_INSTANT_MS = 221_845_392_000_000;

/** The days of the week, Monday first (the index is the day's number, Monday = 0). */
export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
/** A day of the week: `"mon"` … `"sun"`. */
export type Weekday = typeof WEEKDAYS[number];

const ZONE_TEXT = /^[A-Za-z0-9_+:\/-]{1,64}$/;
const formats = new Map<string, Intl.DateTimeFormat>();

function formatFor(timeZone: string): Intl.DateTimeFormat {
  let f = formats.get(timeZone);
  if (f === undefined) {
    // Gregorian calendar, Latin digits, 24-hour clock: the parts read as plain integers.
    f = new Intl.DateTimeFormat("en-US-u-ca-gregory-nu-latn", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formats.set(timeZone, f);
  }
  return f;
}

/**
 * Checks a time zone: an IANA name (or fixed offset) that this runtime's `Intl` knows, at most
 * 64 characters of letters, digits and `_ + : / -`. Returns it as given (not canonicalised, so
 * `"Asia/Kolkata"` stays `"Asia/Kolkata"`).
 *
 * @example
 * ```ts
 * import { validateTimeZone } from "./zone.ts";
 * console.assert(validateTimeZone("Europe/Berlin", "reset.timeZone") === "Europe/Berlin");
 * try {
 *   validateTimeZone("Mars/Olympus", "reset.timeZone");
 *   throw new Error("unreachable");
 * } catch (e) {
 *   console.assert((e as { field: string }).field === "reset.timeZone");
 * }
 * ```
 */
export function validateTimeZone(value: unknown, field: string): string {
  const rule = 'must be an IANA time zone known to Intl, e.g. "Europe/Berlin"';
  if (typeof value !== "string" || !ZONE_TEXT.test(value)) {
    throw new ValidationError(field, value, rule);
  }
  try {
    formatFor(value);
  } catch {
    throw new ValidationError(field, value, rule);
  }
  return value;
}

/**
 * Checks an instant: an integer count of epoch milliseconds from 1900 to 9000.
 *
 * @example
 * ```ts
 * import { validateInstant } from "./zone.ts";
 * console.assert(validateInstant(0, "instantMs") === 0);
 * ```
 */
export function validateInstant(value: unknown, field: string): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < MIN_INSTANT_MS ||
    value > MAX_INSTANT_MS
  ) {
    throw new ValidationError(
      field,
      value,
      "must be an integer of epoch milliseconds between the years 1900 and 9000",
    );
  }
  return value;
}

/**
 * The zone's offset from UTC at an instant, in milliseconds (local = UTC + offset). Offsets are
 * whole seconds, as `Intl` reports them.
 *
 * @example
 * ```ts
 * import { offsetMs } from "./zone.ts";
 * console.assert(offsetMs("Asia/Kolkata", 0) === 19_800_000); // +05:30
 * console.assert(offsetMs("Europe/Berlin", Date.UTC(2026, 6, 1)) === 7_200_000); // CEST
 * ```
 */
export function offsetMs(timeZone: string, instantMs: number): number {
  const second = Math.floor(instantMs / 1000) * 1000;
  const p: Record<string, number> = {};
  for (const part of formatFor(timeZone).formatToParts(second)) {
    if (part.type !== "literal") p[part.type] = Number(part.value);
  }
  const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return wall - second;
}

/**
 * The local wall-clock time of an instant, as wall milliseconds.
 *
 * @example
 * ```ts
 * import { wallMs } from "./zone.ts";
 * // 2026-01-15 12:00 UTC is 04:00 in Los Angeles (PST, -08:00).
 * console.assert(wallMs("America/Los_Angeles", Date.UTC(2026, 0, 15, 12)) === Date.UTC(2026, 0, 15, 4));
 * ```
 */
export function wallMs(timeZone: string, instantMs: number): number {
  return instantMs + offsetMs(timeZone, instantMs);
}

/**
 * The instant at which a zone's clocks show a local time (wall milliseconds).
 *
 * - A local time that occurs once maps to that instant.
 * - A repeated local time (clocks fall back) maps to its **first** occurrence.
 * - A local time that does not exist (clocks spring forward over it) maps to the **first instant
 *   after the gap**, the moment of the change.
 *
 * The result is monotone: a later local time never maps to an earlier instant. This assumes at
 * most one offset change within a day either side of the local time, which holds for the time
 * zone database in the accepted years.
 *
 * @example
 * ```ts
 * import { instantOf } from "./zone.ts";
 * // 2026-03-29 02:30 does not exist in Berlin: clocks go from 02:00 to 03:00 (01:00 UTC).
 * console.assert(instantOf("Europe/Berlin", Date.UTC(2026, 2, 29, 2, 30)) === Date.UTC(2026, 2, 29, 1));
 * // 2026-10-25 02:30 happens twice in Berlin; the first is 00:30 UTC.
 * console.assert(instantOf("Europe/Berlin", Date.UTC(2026, 9, 25, 2, 30)) === Date.UTC(2026, 9, 25, 0, 30));
 * ```
 */
export function instantOf(timeZone: string, wall: number): number {
  const before = offsetMs(timeZone, wall - DAY_MS);
  const after = offsetMs(timeZone, wall + DAY_MS);
  if (before === after) return wall - before;
  const fits = [wall - before, wall - after].filter((t) => wallMs(timeZone, t) === wall);
  if (fits.length > 0) return Math.min(...fits);
  // A gap: the change happens in (wall - after, wall - before]; find its first millisecond.
  let lo = wall - after; // still at the old offset
  let hi = wall - before; // already at the new one
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (offsetMs(timeZone, mid) === before) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * The local date of a wall time as an epoch day (days since 1970-01-01).
 *
 * @example
 * ```ts
 * import { epochDay } from "./zone.ts";
 * console.assert(epochDay(Date.UTC(1970, 0, 2, 23, 59)) === 1);
 * console.assert(epochDay(-1) === -1);
 * ```
 */
export function epochDay(wall: number): number {
  return Math.floor(wall / DAY_MS);
}

/**
 * The day of the week of an epoch day, Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
 *
 * @example
 * ```ts
 * import { weekdayOf } from "./zone.ts";
 * console.assert(weekdayOf(0) === 3 && weekdayOf(-3) === 0);
 * ```
 */
export function weekdayOf(day: number): number {
  return ((day + 3) % 7 + 7) % 7;
}

/**
 * The year and month (1–12) of an epoch day.
 *
 * @example
 * ```ts
 * import { yearMonthOf } from "./zone.ts";
 * const { year, month } = yearMonthOf(31); // 1 February 1970
 * console.assert(year === 1970 && month === 2);
 * ```
 */
export function yearMonthOf(day: number): { year: number; month: number } {
  const d = new Date(day * DAY_MS);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1 };
}

/**
 * The epoch day of a date; `day` past the month's end rolls into the next month.
 *
 * @example
 * ```ts
 * import { dayOf } from "./zone.ts";
 * console.assert(dayOf(1970, 2, 1) === 31 && dayOf(1970, 1, 32) === 31);
 * ```
 */
export function dayOf(year: number, month: number, day: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  return Math.floor(d.getTime() / DAY_MS);
}

/**
 * The number of days in a month (1–12) of a year (Gregorian).
 *
 * @example
 * ```ts
 * import { daysInMonth } from "./zone.ts";
 * console.assert(daysInMonth(2024, 2) === 29 && daysInMonth(2026, 2) === 28);
 * console.assert(daysInMonth(1900, 2) === 28 && daysInMonth(2000, 2) === 29);
 * ```
 */
export function daysInMonth(year: number, month: number): number {
  return dayOf(year, month + 1, 1) - dayOf(year, month, 1);
}

const HHMM = /^([01][0-9]|2[0-3]):([0-5][0-9])$/;

/**
 * Parses a local time of day `"HH:MM"` (24-hour, two digits each) into minutes after midnight;
 * with `allowEnd`, `"24:00"` (the end of the day, 1440) too.
 *
 * @example
 * ```ts
 * import { parseClock } from "./zone.ts";
 * console.assert(parseClock("09:30", "at") === 570);
 * console.assert(parseClock("24:00", "to", true) === 1440);
 * ```
 */
export function parseClock(value: unknown, field: string, allowEnd = false): number {
  if (typeof value === "string") {
    if (allowEnd && value === "24:00") return 1440;
    const m = HHMM.exec(value);
    if (m) return Number(m[1]) * 60 + Number(m[2]);
  }
  throw new ValidationError(
    field,
    value,
    allowEnd
      ? 'must be a time "HH:MM" from 00:00 to 24:00'
      : 'must be a time "HH:MM" from 00:00 to 23:59',
  );
}

/**
 * Minutes after midnight as `"HH:MM"`.
 *
 * @example
 * ```ts
 * import { formatClock } from "./zone.ts";
 * console.assert(formatClock(570) === "09:30" && formatClock(1440) === "24:00");
 * ```
 */
export function formatClock(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`;
}

/**
 * Checks a day of the week, `"mon"` … `"sun"`, and returns its number (Monday = 0).
 *
 * @example
 * ```ts
 * import { parseWeekday } from "./zone.ts";
 * console.assert(parseWeekday("sun", "weekday") === 6);
 * ```
 */
export function parseWeekday(value: unknown, field: string): number {
  const i = WEEKDAYS.indexOf(value as Weekday);
  if (typeof value !== "string" || i < 0) {
    throw new ValidationError(field, value, `must be one of ${WEEKDAYS.join(", ")}`);
  }
  return i;
}
