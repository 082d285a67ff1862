/**
 * A limit's schedule: time windows of the week, in a time zone, in which other parameters apply
 * (a higher rate on weekends). The shape and its checks; {@link Limit} resolves the window in
 * force (see docs/design.md, "Schedules").
 *
 * @module
 */

import { ValidationError } from "./error_base.ts";
import { validateSchedule } from "./calendar/schedule.ts";

/**
 * One window of a limit's schedule: on each of `days` from `from` to `to` (local times of the
 * schedule's zone; `to` at or before `from` is the next day's), the limit refills `rate` tokens
 * per its own period and holds up to `burst`.
 *
 * @example
 * ```ts
 * import type { LimitWindow } from "./limit_schedule.ts";
 * const weekend: LimitWindow = { days: ["sat", "sun"], from: "00:00", to: "24:00", rate: 200,
 *   burst: 300 };
 * console.assert(weekend.rate === 200);
 * ```
 */
export interface LimitWindow {
  /** The days of the week on which the window starts, e.g. `["sat", "sun"]`. */
  days: readonly ("mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun")[];
  /** The local start time `"HH:MM"`. */
  from: string;
  /** The local end time `"HH:MM"` (or `"24:00"`); at or before `from`, the next day's. */
  to: string;
  /** Tokens refilled per the limit's period while the window applies. */
  rate: number;
  /** Bucket capacity while the window applies. @default the window's rate */
  burst?: number;
}

/**
 * A limit's schedule: its windows and their time zone. Outside every window the limit's own
 * parameters apply.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import type { LimitSchedule } from "./limit_schedule.ts";
 * const schedule: LimitSchedule = { timeZone: "Europe/Berlin",
 *   windows: [{ days: ["sat", "sun"], from: "00:00", to: "24:00", rate: 200, burst: 300 }] };
 * console.assert(Limit.perMinute("rpm", 100, { schedule }).schedule?.windows.length === 1);
 * ```
 */
export interface LimitSchedule {
  /** The IANA time zone of the windows' days and times, e.g. `"Europe/Berlin"`. */
  timeZone: string;
  /** The windows, which may not overlap. */
  windows: readonly LimitWindow[];
}

const SCHEDULE_KEYS = new Set(["timeZone", "windows"]);
const WINDOW_KEYS = new Set(["days", "from", "to", "rate", "burst"]);

/**
 * Checks a limit's schedule and returns a frozen copy holding only its known fields. The calendar
 * rules (zone, days, times, no overlap: `validateSchedule`), no unknown field, and each window's
 * amounts by `checkAmount` (the limit's own rules), its burst at least its rate. Throws
 * `ValidationError` naming the field (`{field}.windows[1].rate`).
 *
 * @example
 * ```ts
 * import { checkLimitSchedule } from "./limit_schedule.ts";
 * const ok = (_f: string, x: unknown) => { if (typeof x !== "number") throw new Error(); };
 * try {
 *   checkLimitSchedule({ timeZone: "UTC", windows: [{ days: ["sat"], from: "00:00",
 *     to: "24:00", rate: 200, burst: 100 }] }, "schedule", ok);
 *   throw new Error("unreachable");
 * } catch (e) {
 *   console.assert((e as { field: string }).field === "schedule.windows[0].burst");
 * }
 * ```
 */
export function checkLimitSchedule(
  schedule: unknown,
  field: string,
  checkAmount: (field: string, x: unknown) => void,
): LimitSchedule {
  const s = schedule as LimitSchedule;
  validateSchedule(s, field);
  unknownKeys(s as unknown as Record<string, unknown>, SCHEDULE_KEYS, field);
  const windows = s.windows.map((w, i) => {
    const f = `${field}.windows[${i}]`;
    unknownKeys(w as unknown as Record<string, unknown>, WINDOW_KEYS, f);
    checkAmount(`${f}.rate`, w.rate);
    const burst = w.burst ?? w.rate;
    if (w.burst !== undefined) checkAmount(`${f}.burst`, w.burst);
    if (burst < w.rate) {
      throw new ValidationError(`${f}.burst`, w.burst, `must be >= the window's rate (${w.rate})`);
    }
    const copy: LimitWindow = {
      days: Object.freeze([...w.days]),
      from: w.from,
      to: w.to,
      rate: w.rate,
    };
    if (w.burst !== undefined) copy.burst = w.burst;
    return Object.freeze(copy);
  });
  return Object.freeze({ timeZone: s.timeZone, windows: Object.freeze(windows) });
}

function unknownKeys(o: Record<string, unknown>, known: Set<string>, field: string): void {
  for (const k of Object.keys(o)) {
    if (!known.has(k)) {
      throw new ValidationError(
        `${field}.${k}`,
        o[k],
        `is not a field (known: ${[...known].join(", ")})`,
      );
    }
  }
}
