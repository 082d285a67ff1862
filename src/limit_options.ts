/**
 * The option types of {@link Limit}'s constructors and the validation of their fields.
 *
 * @module
 */

import type { CalendarReset } from "./calendar/reset.ts";
import { ValidationError } from "./error_base.ts";
import { checkLimitSchedule, type LimitSchedule } from "./limit_schedule.ts";

/** Largest capacity or refill amount accepted, in tokens. Keeps every product exact. */
export const MAX_TOKENS = 1e12;
/** Largest refill period accepted, in seconds (about 31 years). */
export const MAX_PERIOD_SECONDS = 1e9;

/**
 * Options of {@link Limit.perSecond} and its siblings.
 *
 * @example
 * ```ts
 * import { Limit, type RateOptions } from "./limit.ts";
 * const options: RateOptions = { burst: 50 }; // 10 a second on average, 50 at once
 * console.assert(Limit.perSecond("rps", 10, options).capacity === 50);
 * ```
 */
export interface RateOptions {
  /** Bucket capacity: how many tokens can be spent at once. @default the rate */
  burst?: number;
  /**
   * A soft limit: debited on every admitted request, allowed into debt, never the cause of a
   * refusal (see docs/usage.md, "Soft limits"). @default false
   */
  soft?: boolean;
  /**
   * Time windows in which other parameters apply (see docs/usage.md, "Schedules"); outside them,
   * the limit's own. @default none
   */
  schedule?: LimitSchedule;
}

/**
 * The fields of {@link Limit.custom}.
 *
 * @example
 * ```ts
 * import { type CustomLimitOptions, Limit } from "./limit.ts";
 * // 5 jobs at once, one more every 30 seconds.
 * const jobs: CustomLimitOptions = { name: "jobs", capacity: 5, refillAmount: 1,
 *   refillPeriodSeconds: 30 };
 * console.assert(Limit.custom(jobs).refillPeriodSeconds === 30);
 * ```
 */
export interface CustomLimitOptions {
  /** Limit name, e.g. `"tpm"`: a letter, then letters, digits, `_`, `.` or `-`; at most 64. */
  name: string;
  /** Bucket capacity in tokens. */
  capacity: number;
  /** Tokens added every `refillPeriodSeconds`, continuously. */
  refillAmount: number;
  /** The refill period in seconds. */
  refillPeriodSeconds: number;
  /** A soft limit: metered, may go into debt, never refuses. @default false */
  soft?: boolean;
  /** Time windows in which other parameters apply (a window's rate is per this period). */
  schedule?: LimitSchedule;
}

/**
 * The options of {@link Limit.quota}: exactly one of `reset` (a calendar reset, as an object or in
 * its text form, e.g. `"month@Europe/Berlin"`) and `resetAfter` (a window starting at the first
 * use: seconds, or a duration text such as `"30d"`).
 *
 * @example
 * ```ts
 * import { Limit, type QuotaOptions } from "./limit.ts";
 * const monthly: QuotaOptions = { reset: { every: "month", timeZone: "Europe/Berlin" } };
 * console.assert(Limit.quota("tokens", 1_000_000, monthly).quota?.kind === "calendar");
 * ```
 */
export interface QuotaOptions {
  /** A calendar reset: monthly, weekly or daily in a time zone (object or text form). */
  reset?: CalendarReset | string;
  /** A window of this length from the first use: seconds, or a duration text (`"30d"`). */
  resetAfter?: number | string;
  /** A soft quota: metered, may go into debt, never refuses. @default false */
  soft?: boolean;
}

/**
 * A quota's plain data ({@link Limit.toJSON} of a quota; {@link Limit.custom} takes it back):
 * `reset` or `resetAfter` in the text form.
 *
 * @example
 * ```ts
 * import { Limit, type QuotaLimitOptions } from "./limit.ts";
 * const q: QuotaLimitOptions = { name: "tokens", capacity: 500, resetAfter: "30d" };
 * console.assert(Limit.custom(q).quota?.kind === "after");
 * ```
 */
export interface QuotaLimitOptions extends QuotaOptions {
  /** Limit name. */
  name: string;
  /** The amount per window, in tokens. */
  capacity: number;
}

/**
 * A concurrent limit's plain data ({@link Limit.toJSON} of a {@link Limit.concurrent};
 * {@link Limit.custom} takes it back): `capacity` leases in flight at most.
 *
 * @example
 * ```ts
 * import { Limit, type ConcurrentLimitOptions } from "./limit.ts";
 * const c: ConcurrentLimitOptions = { name: "streams", capacity: 5, concurrent: true };
 * console.assert(Limit.custom(c).concurrent === true);
 * ```
 */
export interface ConcurrentLimitOptions {
  /** Limit name. */
  name: string;
  /** Leases in flight at most: a whole number >= 1. */
  capacity: number;
  /** Marks a concurrent limit. */
  concurrent: true;
}

/** The largest `max` of a concurrent limit: one item holds a slot attribute per lease. */
export const MAX_CONCURRENT = 1000;

/** True when `x` is a whole number of thousandths (within float noise). */
export function isMilliExact(x: number): boolean {
  const scaled = x * 1000;
  return Math.abs(scaled - Math.round(scaled)) <= 1e-6 * Math.max(1, Math.abs(scaled));
}

/** Throws unless `x` is a token amount: finite, > 0, at most {@link MAX_TOKENS}, in thousandths. */
export function checkAmount(field: string, x: unknown): void {
  if (typeof x !== "number" || !Number.isFinite(x) || x <= 0) {
    throw new ValidationError(field, x, "must be a finite number > 0");
  }
  if (x > MAX_TOKENS) throw new ValidationError(field, x, `must be <= ${MAX_TOKENS}`);
  if (!isMilliExact(x) || Math.round(x * 1000) === 0) {
    throw new ValidationError(field, x, "must be a multiple of 0.001");
  }
}

/** The `soft` option as a boolean (`false` when missing); throws on anything else. */
export function checkSoft(field: string, x: unknown): boolean {
  if (x === undefined) return false;
  if (typeof x !== "boolean") throw new ValidationError(field, x, "must be a boolean");
  return x;
}

/** A limit's `schedule` option, validated (`undefined` when missing). */
export function checkSchedule(name: string, x: unknown): LimitSchedule | undefined {
  if (x === undefined) return undefined;
  return checkLimitSchedule(x, `limit ${name}: schedule`, checkAmount);
}

/** Throws unless `x` is a refill period: whole milliseconds, > 0, at most {@link MAX_PERIOD_SECONDS}. */
export function checkPeriod(field: string, x: unknown): void {
  if (typeof x !== "number" || !Number.isFinite(x) || x <= 0) {
    throw new ValidationError(field, x, "must be a finite number of seconds > 0");
  }
  if (x > MAX_PERIOD_SECONDS) {
    throw new ValidationError(field, x, `must be <= ${MAX_PERIOD_SECONDS} seconds`);
  }
  if (!isMilliExact(x) || Math.round(x * 1000) === 0) {
    throw new ValidationError(field, x, "must be a whole number of milliseconds");
  }
}
