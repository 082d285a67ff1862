/**
 * Quota resets: the window of a calendar reset (monthly, weekly, daily, in a time zone) that
 * holds an instant, and the window of a `resetAfter` quota anchored to its first use.
 *
 * Pure: no I/O, no clock; every instant is passed in as integer epoch milliseconds.
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";
import {
  DAY_MS,
  dayOf,
  daysInMonth,
  epochDay,
  instantOf,
  MINUTE_MS,
  parseClock,
  parseWeekday,
  validateInstant,
  validateTimeZone,
  wallMs,
  type Weekday,
  WEEKDAYS,
  yearMonthOf,
} from "./zone.ts";

/**
 * A reset once a month on `day` (1–31, or `"last"`) at `at` local time. A day past the month's
 * end resets on its last day: day 31 is 30 April and 28 (or 29) February.
 */
export interface MonthlyReset {
  /** Once a month. */
  every: "month";
  /** The day of the month, 1–31 or `"last"`; 1 when left out. */
  day?: number | "last";
  /** The local time `"HH:MM"`; `"00:00"` when left out. */
  at?: string;
  /** The IANA time zone of `day` and `at`, e.g. `"Europe/Berlin"`. */
  timeZone: string;
}

/** A reset once a week on `weekday` at `at` local time. */
export interface WeeklyReset {
  /** Once a week. */
  every: "week";
  /** The day of the week; `"mon"` when left out. */
  weekday?: Weekday;
  /** The local time `"HH:MM"`; `"00:00"` when left out. */
  at?: string;
  /** The IANA time zone of `weekday` and `at`. */
  timeZone: string;
}

/** A reset once a day at `at` local time. */
export interface DailyReset {
  /** Once a day. */
  every: "day";
  /** The local time `"HH:MM"`; `"00:00"` when left out. */
  at?: string;
  /** The IANA time zone of `at`. */
  timeZone: string;
}

/** A calendar reset: monthly, weekly or daily, in a time zone. */
export type CalendarReset = MonthlyReset | WeeklyReset | DailyReset;

/** A span of time `[startMs, endMs)` in integer epoch milliseconds. */
export interface TimeWindow {
  /** The first millisecond of the window. */
  startMs: number;
  /** The first millisecond after the window (the next window's start, for a calendar reset). */
  endMs: number;
}

/** The longest `resetAfter`: 366 days, in milliseconds. */
export const MAX_RESET_AFTER_MS = 366 * DAY_MS;

const FIELDS: Record<CalendarReset["every"], readonly string[]> = {
  month: ["every", "day", "at", "timeZone"],
  week: ["every", "weekday", "at", "timeZone"],
  day: ["every", "at", "timeZone"],
};

/**
 * Checks a calendar reset and returns it with every field present (`day: 1`, `weekday: "mon"`,
 * `at: "00:00"` filled in where left out). Unknown fields are refused, so a misspelt one is
 * not silently ignored.
 *
 * @example
 * ```ts
 * import { validateReset } from "./reset.ts";
 * const r = validateReset({ every: "month", timeZone: "Europe/Berlin" });
 * console.assert(r.every === "month" && r.day === 1 && r.at === "00:00");
 * try {
 *   validateReset({ every: "week", weekday: "mo", timeZone: "UTC" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   console.assert((e as { field: string }).field === "reset.weekday");
 * }
 * ```
 */
export function validateReset(value: unknown, field = "reset"): Required<CalendarReset> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ValidationError(field, value, "must be an object { every, ..., timeZone }");
  }
  const v = value as Record<string, unknown>;
  const every = v.every;
  if (every !== "month" && every !== "week" && every !== "day") {
    throw new ValidationError(`${field}.every`, every, 'must be "month", "week" or "day"');
  }
  for (const key of Object.keys(v)) {
    if (!FIELDS[every].includes(key)) {
      throw new ValidationError(
        `${field}.${key}`,
        v[key],
        `is not a field of a reset every ${every} (${FIELDS[every].join(", ")})`,
      );
    }
  }
  const at = v.at ?? "00:00";
  parseClock(at, `${field}.at`);
  const timeZone = validateTimeZone(v.timeZone, `${field}.timeZone`);
  if (every === "day") return { every, at: at as string, timeZone };
  if (every === "week") {
    const weekday = v.weekday ?? "mon";
    parseWeekday(weekday, `${field}.weekday`);
    return { every, weekday: weekday as Weekday, at: at as string, timeZone };
  }
  const day = v.day ?? 1;
  if (day !== "last" && !(Number.isInteger(day) && (day as number) >= 1 && (day as number) <= 31)) {
    throw new ValidationError(`${field}.day`, day, 'must be an integer from 1 to 31, or "last"');
  }
  return { every, day: day as number | "last", at: at as string, timeZone };
}

/** The instant of the k-th period's reset, and the period holding a local date. */
interface Periods {
  index(day: number): number;
  reset(k: number): number;
}

function periods(spec: Required<CalendarReset>): Periods {
  const at = parseClock(spec.at, "reset.at") * MINUTE_MS;
  const zone = spec.timeZone;
  const local = (day: number) => instantOf(zone, day * DAY_MS + at);
  if (spec.every === "day") return { index: (day) => day, reset: local };
  if (spec.every === "week") {
    const weekday = WEEKDAYS.indexOf(spec.weekday);
    // Week k starts on the Monday that is epoch day 7k - 3 (1970-01-01 was a Thursday).
    return {
      index: (day) => Math.floor((day + 3) / 7),
      reset: (k) => local(7 * k - 3 + weekday),
    };
  }
  const wanted = spec.day;
  return {
    index: (day) => {
      const { year, month } = yearMonthOf(day);
      return year * 12 + month - 1;
    },
    reset: (k) => {
      const year = Math.floor(k / 12);
      const month = k - year * 12 + 1;
      const last = daysInMonth(year, month);
      return local(dayOf(year, month, wanted === "last" ? last : Math.min(wanted, last)));
    },
  };
}

/**
 * The window of a calendar reset that holds an instant: `startMs` is the last reset at or
 * before `instantMs`, `endMs` the first one after it. Windows are contiguous (each one starts
 * where the one before it ends) and exact across DST changes: a reset time that a change skips
 * happens at the first instant after the gap, and one that it repeats happens at its first
 * occurrence.
 *
 * @example
 * ```ts
 * import { windowAt } from "./reset.ts";
 * const spec = { every: "month", timeZone: "Europe/Berlin" } as const;
 * const w = windowAt(spec, Date.UTC(2026, 1, 14, 12)); // 14 February 2026
 * console.assert(w.startMs === Date.UTC(2026, 0, 31, 23)); // 1 February 00:00 CET
 * console.assert(w.endMs === Date.UTC(2026, 1, 28, 23)); // 1 March 00:00 CET
 * ```
 */
export function windowAt(spec: CalendarReset, instantMs: number): TimeWindow {
  const t = validateInstant(instantMs, "instantMs");
  const p = periods(validateReset(spec));
  const seen = new Map<number, number>();
  const reset = (k: number) => {
    let r = seen.get(k);
    if (r === undefined) seen.set(k, r = p.reset(k));
    return r;
  };
  // The period of t's local date, or its neighbours when a DST change moves the reset across
  // a date line; resets only grow with k, so step down to the last one at or before t.
  let k = p.index(epochDay(wallMs(spec.timeZone, t))) + 2;
  while (reset(k) > t) k--;
  let next = k + 1;
  while (reset(next) <= t) next++;
  return { startMs: reset(next - 1), endMs: reset(next) };
}

/**
 * Checks a `resetAfter` duration in milliseconds: an integer from 1 ms to 366 days.
 *
 * @example
 * ```ts
 * import { validateDurationMs } from "./reset.ts";
 * console.assert(validateDurationMs(3_600_000, "resetAfter") === 3_600_000);
 * ```
 */
export function validateDurationMs(value: unknown, field: string): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value <= 0 ||
    value > MAX_RESET_AFTER_MS
  ) {
    throw new ValidationError(
      field,
      value,
      "must be a duration above 0 and at most 366 days, in whole milliseconds",
    );
  }
  return value;
}

/**
 * The window of a `resetAfter` quota at an instant.
 *
 * - `anchorMs` is the start of the entity's current window (its first use), or `undefined`
 *   when it has none yet: then the window starts at `instantMs`.
 * - While `instantMs < anchorMs + durationMs` the window is `[anchorMs, anchorMs + durationMs)`.
 *   A use stamped before the anchor (clock skew between processes) counts in that window.
 * - Once the window has ended, the entity is idle until its next use, and that use starts a
 *   new window `[instantMs, instantMs + durationMs)`. Windows do not follow one another back
 *   to back: the idle time between them belongs to none.
 *
 * @example
 * ```ts
 * import { windowAfter } from "./reset.ts";
 * const hour = 3_600_000;
 * console.assert(windowAfter(undefined, hour, 1_000).startMs === 1_000); // first use
 * console.assert(windowAfter(1_000, hour, 30 * 60_000).endMs === 1_000 + hour); // inside
 * const later = windowAfter(1_000, hour, 5 * hour); // idle past the end: a new window
 * console.assert(later.startMs === 5 * hour && later.endMs === 6 * hour);
 * ```
 */
export function windowAfter(
  anchorMs: number | undefined,
  durationMs: number,
  instantMs: number,
): TimeWindow {
  const t = validateInstant(instantMs, "instantMs");
  const d = validateDurationMs(durationMs, "resetAfter");
  if (anchorMs !== undefined) {
    const a = validateInstant(anchorMs, "anchorMs");
    if (t < a + d) return { startMs: a, endMs: a + d };
  }
  return { startMs: t, endMs: t + d };
}
