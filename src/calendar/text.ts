/**
 * The compact text form of a quota reset, for the CLI and the HTTP headers, and the reading of a
 * quota's `reset` / `resetAfter` options as a user writes them.
 *
 * ```text
 * month@Europe/Berlin              the 1st at 00:00
 * month:15 06:00@UTC               the 15th at 06:00 (a short month: its last day)
 * month:last@Asia/Kolkata          the last day of the month at 00:00
 * week:mon 09:00@America/New_York  Mondays at 09:00
 * day@UTC                          every day at 00:00 (also "day 00:00@UTC")
 * after:30d                        30 days after the first use (units ms, s, m, h, d)
 * ```
 *
 * {@link formatReset} writes the shortest form (the 1st and 00:00 left out, the weekday always
 * written, a duration in its largest whole unit); {@link parseReset} reads that form and the
 * longer ones.
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";
import {
  type CalendarReset,
  MAX_RESET_AFTER_MS,
  validateDurationMs,
  validateReset,
} from "./reset.ts";

/** A quota's reset, checked: a calendar reset, or a window of `durationMs` after first use. */
export type QuotaReset =
  | { kind: "calendar"; reset: Required<CalendarReset> }
  | { kind: "after"; durationMs: number };

const UNITS: readonly [string, number][] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1_000],
  ["ms", 1],
];

const CALENDAR = /^(month|week|day)(?::([a-z0-9]+))?(?: ([0-9]{2}:[0-9]{2}))?@(.+)$/;
const DURATION = /^([0-9]{1,12})(ms|s|m|h|d)$/;

/**
 * Reads a duration `"<integer><unit>"` (units `ms`, `s`, `m`, `h`, `d`) into milliseconds,
 * from 1 ms to 366 days.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./text.ts";
 * console.assert(parseDuration("30d", "resetAfter") === 30 * 86_400_000);
 * console.assert(parseDuration("90m", "resetAfter") === 5_400_000);
 * ```
 */
export function parseDuration(text: unknown, field: string): number {
  const m = typeof text === "string" ? DURATION.exec(text) : null;
  if (!m) {
    throw new ValidationError(field, text, 'must be a duration like "30d", "12h", "90m", "45s"');
  }
  const ms = Number(m[1]) * UNITS.find(([u]) => u === m[2])![1];
  return validateDurationMs(ms, field);
}

/**
 * Writes milliseconds as a duration in the largest unit that divides them exactly.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./text.ts";
 * console.assert(formatDuration(30 * 86_400_000) === "30d");
 * console.assert(formatDuration(5_400_000) === "90m");
 * ```
 */
export function formatDuration(durationMs: number): string {
  validateDurationMs(durationMs, "durationMs");
  const [unit, size] = UNITS.find(([, size]) => durationMs % size === 0)!;
  return `${durationMs / size}${unit}`;
}

/**
 * Reads a reset's text form (see the module's table) into a checked reset.
 *
 * @example
 * ```ts
 * import { parseReset } from "./text.ts";
 * const r = parseReset("week:mon 09:00@America/New_York");
 * console.assert(r.kind === "calendar" && r.reset.every === "week" && r.reset.at === "09:00");
 * const a = parseReset("after:30d");
 * console.assert(a.kind === "after" && a.durationMs === 2_592_000_000);
 * ```
 */
export function parseReset(text: unknown, field = "reset"): QuotaReset {
  if (typeof text === "string" && text.startsWith("after:")) {
    return { kind: "after", durationMs: parseDuration(text.slice(6), field) };
  }
  const m = typeof text === "string" ? CALENDAR.exec(text) : null;
  if (!m) {
    throw new ValidationError(
      field,
      text,
      'must read like "month@Europe/Berlin", "month:15 06:00@UTC", "week:mon 09:00@UTC", ' +
        '"day@UTC" or "after:30d"',
    );
  }
  const [, every, arg, at, timeZone] = m;
  const spec: Record<string, unknown> = { every, timeZone };
  if (at !== undefined) spec.at = at;
  if (arg !== undefined) {
    if (every === "day") {
      throw new ValidationError(field, text, "a daily reset takes no day: day HH:MM@zone");
    }
    if (every === "week") spec.weekday = arg;
    else spec.day = arg === "last" ? "last" : /^[0-9]{1,2}$/.test(arg) ? Number(arg) : arg;
  }
  return { kind: "calendar", reset: validateReset(spec, field) };
}

/**
 * Writes a reset in its shortest text form; {@link parseReset} reads it back to the same reset.
 *
 * @example
 * ```ts
 * import { formatReset } from "./text.ts";
 * console.assert(formatReset({ every: "month", timeZone: "Europe/Berlin" }) === "month@Europe/Berlin");
 * console.assert(formatReset({ every: "month", day: 15, at: "06:00", timeZone: "UTC" }) === "month:15 06:00@UTC");
 * console.assert(formatReset({ durationMs: 86_400_000 }) === "after:1d");
 * ```
 */
export function formatReset(reset: CalendarReset | { durationMs: number } | QuotaReset): string {
  if ("kind" in reset) {
    return reset.kind === "after" ? formatReset({ durationMs: reset.durationMs }) : formatReset(
      reset.reset,
    );
  }
  if ("durationMs" in reset) return `after:${formatDuration(reset.durationMs)}`;
  const r = validateReset(reset);
  const at = r.at === "00:00" ? "" : ` ${r.at}`;
  const arg = r.every === "week"
    ? `:${r.weekday}`
    : r.every === "month" && r.day !== 1
    ? `:${r.day}`
    : "";
  return `${r.every}${arg}${at}@${r.timeZone}`;
}

/**
 * Reads a quota's reset options: exactly one of `reset` (a calendar reset, as an object or in
 * text form) and `resetAfter` (seconds, a whole number of milliseconds, or a duration text such
 * as `"30d"`).
 *
 * @example
 * ```ts
 * import { validateQuotaReset } from "./text.ts";
 * const r = validateQuotaReset({ reset: "month@Europe/Berlin" });
 * console.assert(r.kind === "calendar" && r.reset.timeZone === "Europe/Berlin");
 * const a = validateQuotaReset({ resetAfter: 3600 });
 * console.assert(a.kind === "after" && a.durationMs === 3_600_000);
 * try {
 *   validateQuotaReset({ reset: "day@UTC", resetAfter: "1d" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   console.assert((e as { field: string }).field === "quota.resetAfter");
 * }
 * ```
 */
export function validateQuotaReset(
  options: { reset?: CalendarReset | string; resetAfter?: number | string },
  field = "quota",
): QuotaReset {
  const { reset, resetAfter } = options ?? {};
  if (reset !== undefined && resetAfter !== undefined) {
    throw new ValidationError(
      `${field}.resetAfter`,
      resetAfter,
      "a quota takes either reset or resetAfter, not both",
    );
  }
  if (resetAfter !== undefined) {
    const f = `${field}.resetAfter`;
    if (typeof resetAfter === "string") {
      return { kind: "after", durationMs: parseDuration(resetAfter, f) };
    }
    const ms = typeof resetAfter === "number" ? Math.round(resetAfter * 1000) : NaN;
    if (
      !Number.isFinite(ms) || Math.abs(ms - resetAfter * 1000) > 1e-6 || ms <= 0 ||
      ms > MAX_RESET_AFTER_MS
    ) {
      throw new ValidationError(
        f,
        resetAfter,
        "must be seconds above 0 and at most 366 days, in whole milliseconds",
      );
    }
    return { kind: "after", durationMs: ms };
  }
  if (reset === undefined) {
    throw new ValidationError(
      `${field}.reset`,
      reset,
      "a quota needs a reset (a calendar reset) or resetAfter (a duration), or it never resets",
    );
  }
  const f = `${field}.reset`;
  if (typeof reset === "string") {
    const parsed = parseReset(reset, f);
    if (parsed.kind === "after") {
      throw new ValidationError(f, reset, 'is a calendar reset; write "after:…" as resetAfter');
    }
    return parsed;
  }
  return { kind: "calendar", reset: validateReset(reset, f) };
}
