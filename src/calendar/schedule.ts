/**
 * Schedules: time windows of the week in a time zone (weekends; 18:00–08:00 on weekdays) and
 * which of them applies at an instant, with the exact instant at which that changes.
 *
 * A window starts on each of its `days` at local time `from` and ends at local time `to`, the
 * same day, or the next day when `to` is not after `from` (`18:00`–`08:00` ends the next
 * morning; `00:00`–`24:00` is the whole day). Its ends map to instants like every local time of
 * this module: a skipped local time to the first instant after the gap, a repeated one to its
 * first occurrence. So a window whose whole span falls in a skipped hour does not apply that
 * day, and a window that holds a repeated hour holds both passes of it.
 *
 * Pure: no I/O, no clock.
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";
import {
  DAY_MS,
  epochDay,
  formatClock,
  instantOf,
  MINUTE_MS,
  parseClock,
  parseWeekday,
  validateInstant,
  validateTimeZone,
  wallMs,
  type Weekday,
  weekdayOf,
  WEEKDAYS,
} from "./zone.ts";

/** One window of a schedule. Other fields (the parameters that apply in it) are carried along. */
export interface ScheduleWindow {
  /** The days of the week on which the window starts, e.g. `["sat", "sun"]`. */
  days: readonly Weekday[];
  /** The local start time `"HH:MM"`. */
  from: string;
  /** The local end time `"HH:MM"` (or `"24:00"`); at or before `from`, the next day's. */
  to: string;
}

/** The windows of a schedule and the time zone of their days and times. */
export interface Schedule<W extends ScheduleWindow = ScheduleWindow> {
  /** The IANA time zone, e.g. `"Europe/Berlin"`. */
  timeZone: string;
  /** The windows, which may not overlap. */
  windows: readonly W[];
}

/** What applies at an instant: a window, or none, and the span over which that holds. */
export interface ScheduleState<W extends ScheduleWindow = ScheduleWindow> {
  /** The window that applies, or `null` when none does. */
  window: W | null;
  /** Its position in `windows`, or -1. */
  index: number;
  /** When this state began: the previous switch. */
  startMs: number;
  /** When it ends: the next switch, the first instant at which another window (or none) applies. */
  endMs: number;
}

const WEEK_MINUTES = 7 * 1440;

interface Checked {
  zone: string;
  windows: { days: boolean[]; from: number; to: number }[];
}

function check(schedule: Schedule, field: string): Checked {
  if (typeof schedule !== "object" || schedule === null) {
    throw new ValidationError(field, schedule, "must be an object { timeZone, windows }");
  }
  const zone = validateTimeZone(schedule.timeZone, `${field}.timeZone`);
  const list = schedule.windows;
  if (!Array.isArray(list) || list.length === 0) {
    throw new ValidationError(`${field}.windows`, list, "must list at least one window");
  }
  const windows = list.map((w: ScheduleWindow, i) => {
    const f = `${field}.windows[${i}]`;
    if (typeof w !== "object" || w === null) {
      throw new ValidationError(f, w, "must be an object { days, from, to }");
    }
    if (!Array.isArray(w.days) || w.days.length === 0) {
      throw new ValidationError(`${f}.days`, w.days, 'must name at least one day, e.g. ["sat"]');
    }
    const days = new Array<boolean>(7).fill(false);
    w.days.forEach((d, j) => {
      const n = parseWeekday(d, `${f}.days[${j}]`);
      if (days[n]) throw new ValidationError(`${f}.days[${j}]`, d, "names a day twice");
      days[n] = true;
    });
    const from = parseClock(w.from, `${f}.from`);
    const to = parseClock(w.to, `${f}.to`, true);
    if (to === from) {
      throw new ValidationError(
        `${f}.to`,
        w.to,
        'must differ from "from": the window would be empty (use 00:00-24:00 for a whole day)',
      );
    }
    return { days, from, to };
  });
  // Overlaps, in local minutes of the week (one local time map to one instant, in order, so
  // windows apart on the clock stay apart in time).
  const spans: { start: number; end: number; i: number }[] = [];
  windows.forEach((w, i) => {
    w.days.forEach((on, d) => {
      if (!on) return;
      const start = d * 1440 + w.from;
      const end = d * 1440 + w.to + (w.to <= w.from ? 1440 : 0);
      if (end <= WEEK_MINUTES) spans.push({ start, end, i });
      else spans.push({ start, end: WEEK_MINUTES, i }, { start: 0, end: end - WEEK_MINUTES, i });
    });
  });
  spans.sort((a, b) => a.start - b.start);
  for (let j = 1; j < spans.length; j++) {
    if (spans[j].start < spans[j - 1].end) {
      const [a, b] = [spans[j - 1], spans[j]].sort((x, y) => x.i - y.i);
      const at = spans[j].start;
      throw new ValidationError(
        `${field}.windows[${b.i}]`,
        list[b.i],
        `overlaps windows[${a.i}] on ${WEEKDAYS[Math.floor(at / 1440)]} at ${
          formatClock(at % 1440)
        }`,
      );
    }
  }
  if (windows.length === 1 && spans.reduce((n, s) => n + s.end - s.start, 0) === WEEK_MINUTES) {
    throw new ValidationError(
      `${field}.windows[0]`,
      list[0],
      "covers the whole week, so it never switches: set the parameters themselves instead",
    );
  }
  return { zone, windows };
}

/**
 * Checks a schedule: a known time zone, at least one window, each with at least one day
 * (none twice), times `"HH:MM"`, `from` and `to` different, and no two windows overlapping (a
 * window that ends when another starts is fine). One window that covers the whole week is
 * refused too: it would never switch.
 *
 * @example
 * ```ts
 * import { validateSchedule } from "./schedule.ts";
 * try {
 *   validateSchedule({ timeZone: "UTC", windows: [
 *     { days: ["sat", "sun"], from: "00:00", to: "24:00" },
 *     { days: ["fri"], from: "18:00", to: "08:00" }, // Saturday 00:00-08:00 is the weekend's
 *   ] });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   console.assert((e as { field: string }).field === "schedule.windows[1]");
 * }
 * ```
 */
export function validateSchedule<W extends ScheduleWindow>(
  schedule: Schedule<W>,
  field = "schedule",
): Schedule<W> {
  check(schedule, field);
  return schedule;
}

/**
 * Which window of a schedule applies at an instant, and from when until when that holds
 * (`endMs` is {@link nextSwitchMs}). Back-to-back occurrences of one window (a weekend as
 * Saturday and Sunday 00:00–24:00) are one stretch. A caller can keep the state until `endMs`.
 *
 * @example
 * ```ts
 * import { scheduleAt } from "./schedule.ts";
 * const schedule = { timeZone: "Europe/Berlin", windows: [
 *   { days: ["sat", "sun"] as const, from: "00:00", to: "24:00", rate: 2 },
 * ] };
 * const s = scheduleAt(schedule, Date.UTC(2026, 0, 10, 12)); // Saturday 10 January 2026
 * console.assert(s.window?.rate === 2 && s.index === 0);
 * console.assert(s.startMs === Date.UTC(2026, 0, 9, 23)); // Saturday 00:00 CET
 * console.assert(s.endMs === Date.UTC(2026, 0, 11, 23)); // Monday 00:00 CET
 * console.assert(scheduleAt(schedule, s.endMs).window === null);
 * ```
 */
export function scheduleAt<W extends ScheduleWindow>(
  schedule: Schedule<W>,
  instantMs: number,
): ScheduleState<W> {
  const t = validateInstant(instantMs, "instantMs");
  const { zone, windows } = check(schedule, "schedule");
  const resolved = new Map<number, number>();
  const local = (wall: number) => {
    let r = resolved.get(wall);
    if (r === undefined) resolved.set(wall, r = instantOf(zone, wall));
    return r;
  };
  // The occurrences starting on a local date, in time order, empty ones (in a gap) left out.
  const days = new Map<number, { start: number; end: number; i: number }[]>();
  const on = (day: number) => {
    const known = days.get(day);
    if (known !== undefined) return known;
    const found: { start: number; end: number; i: number }[] = [];
    windows.forEach((w, i) => {
      if (!w.days[weekdayOf(day)]) return;
      const base = day * DAY_MS;
      const start = local(base + w.from * MINUTE_MS);
      const end = local(base + (w.to + (w.to <= w.from ? 1440 : 0)) * MINUTE_MS);
      if (start < end) found.push({ start, end, i });
    });
    days.set(day, found.sort((a, b) => a.start - b.start));
    return found;
  };
  const today = epochDay(wallMs(zone, t));
  // An occurrence holding t started at most a day (plus a DST change) before t's local date.
  for (let day = today - 2; day <= today + 1; day++) {
    const hit = on(day).find((o) => o.start <= t && t < o.end);
    if (hit === undefined) continue;
    let { start, end } = hit;
    // Join back-to-back occurrences of the same window (one window never fills a week).
    for (let d = day - 1; d >= day - 8; d--) {
      const prev = on(d).find((o) => o.i === hit.i && o.end === start);
      if (prev === undefined) break;
      start = prev.start;
    }
    for (let d = day + 1; d <= day + 8; d++) {
      const next = on(d).find((o) => o.i === hit.i && o.start === end);
      if (next === undefined) break;
      end = next.end;
    }
    return { window: schedule.windows[hit.i], index: hit.i, startMs: start, endMs: end };
  }
  // No window applies: from the last end before t to the next start after it. Occurrences that
  // start on later days end later (they do not overlap), so the nearest day with one wins; every
  // window occurs each week, so both lie within nine days.
  let startMs = -Infinity;
  for (let day = today + 1; startMs === -Infinity && day >= today - 9; day--) {
    for (const o of on(day)) if (o.end <= t && o.end > startMs) startMs = o.end;
  }
  let endMs = Infinity;
  for (let day = today - 2; endMs === Infinity && day <= today + 9; day++) {
    for (const o of on(day)) if (o.start > t && o.start < endMs) endMs = o.start;
  }
  return { window: null, index: -1, startMs, endMs };
}

/**
 * The next instant after `instantMs` at which a different window (or none) applies.
 *
 * @example
 * ```ts
 * import { nextSwitchMs } from "./schedule.ts";
 * const schedule = { timeZone: "UTC", windows: [{ days: ["mon"] as const, from: "18:00", to: "08:00" }] };
 * // Monday 5 January 2026 at noon: the window opens at 18:00, then closes Tuesday 08:00.
 * const open = nextSwitchMs(schedule, Date.UTC(2026, 0, 5, 12));
 * console.assert(open === Date.UTC(2026, 0, 5, 18));
 * console.assert(nextSwitchMs(schedule, open) === Date.UTC(2026, 0, 6, 8));
 * ```
 */
export function nextSwitchMs(schedule: Schedule, instantMs: number): number {
  return scheduleAt(schedule, instantMs).endMs;
}
