/**
 * The calendar: quota resets (monthly, weekly, daily in a time zone, or `resetAfter` a first
 * use), their text form, and schedules of time windows, exact across DST changes. Pure, with
 * no I/O and no clock.
 *
 * The foundation for quotas and schedules (issue #16); not yet used by `acquire` and not
 * exported from the package.
 *
 * @example
 * ```ts
 * import { parseReset, windowAt } from "./mod.ts";
 * const r = parseReset("month@Europe/Berlin");
 * if (r.kind === "calendar") {
 *   const w = windowAt(r.reset, Date.UTC(2026, 1, 14));
 *   console.assert(w.startMs === Date.UTC(2026, 0, 31, 23));
 * }
 * ```
 *
 * @module
 */

export * from "./reset.ts";
export * from "./schedule.ts";
export * from "./text.ts";
export { instantOf, offsetMs, validateTimeZone, wallMs, type Weekday, WEEKDAYS } from "./zone.ts";
