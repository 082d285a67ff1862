/**
 * {@link Limit}: a token bucket's capacity and refill rate.
 *
 * @module
 */

import { formatReset, type QuotaReset, validateQuotaReset } from "./calendar/text.ts";
import { ValidationError } from "./error_base.ts";
import { checkObject, validateLimitName } from "./validate.ts";
import { scheduleAt } from "./calendar/schedule.ts";
import type { LimitSchedule } from "./limit_schedule.ts";
import {
  checkAmount,
  checkPeriod,
  checkSchedule,
  checkSoft,
  type ConcurrentLimitOptions,
  type CustomLimitOptions,
  MAX_CONCURRENT,
  type QuotaLimitOptions,
  type QuotaOptions,
  type RateOptions,
} from "./limit_options.ts";

// The option types and constants moved to ./limit_options.ts; re-exported from here unchanged.
export {
  type ConcurrentLimitOptions,
  type CustomLimitOptions,
  isMilliExact,
  MAX_CONCURRENT,
  MAX_PERIOD_SECONDS,
  MAX_TOKENS,
  type QuotaLimitOptions,
  type QuotaOptions,
  type RateOptions,
} from "./limit_options.ts";

/** The nominal window of a calendar reset, in seconds (only a stand-in for a refill period). */
const NOMINAL_SECONDS = { day: 86_400, week: 604_800, month: 2_592_000 } as const;

/**
 * A token-bucket limit: `capacity` tokens at most, refilled continuously at `refillAmount`
 * tokens per `refillPeriodSeconds`. A bucket never used is full.
 *
 * Amounts may have up to three decimals (they are stored as exact integers of thousandths of a
 * token) and periods are whole milliseconds.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * const tpm = Limit.perMinute("tpm", 10_000, { burst: 15_000 });
 * console.assert(tpm.capacity === 15_000 && tpm.refillAmount === 10_000);
 * console.assert(tpm.refillPeriodSeconds === 60);
 * ```
 */
export class Limit {
  /** The limit's name. */
  readonly name: string;
  /** Bucket capacity in tokens (the burst, or the rate when no burst is given). */
  readonly capacity: number;
  /** Tokens refilled per period. */
  readonly refillAmount: number;
  /** The refill period in seconds. */
  readonly refillPeriodSeconds: number;
  /**
   * A soft limit: debited on every admitted request, allowed into debt, never the cause of a
   * refusal; hard limits on the same request still gate it.
   */
  readonly soft: boolean;
  /**
   * The time windows in which other parameters apply, as checked (frozen); `undefined` for a
   * limit whose parameters never change. See {@link Limit.inForceAt}.
   */
  readonly schedule?: LimitSchedule;
  /** The parameters in force over a span of time, kept until the span ends. */
  #inForce?: { startMs: number; endMs: number; limit: Limit };
  /**
   * A quota's reset (see {@link Limit.quota}); `undefined` for a token bucket. A quota's
   * `refillAmount` is its capacity and its `refillPeriodSeconds` a nominal window (30 days for a
   * month): the engine never drips a quota, it refills it in one lump at the reset.
   */
  readonly quota?: QuotaReset;
  /**
   * `true` on a concurrent limit ({@link Limit.concurrent}): `capacity` leases in flight at most,
   * a slot taken by `acquire` and freed by `commit` or `rollback`. `undefined` otherwise.
   */
  readonly concurrent?: true;

  private constructor(
    name: string,
    capacity: number,
    refillAmount: number,
    period: number,
    soft: boolean,
    schedule?: LimitSchedule,
    quota?: QuotaReset,
    concurrent?: true,
  ) {
    this.name = name;
    this.capacity = capacity;
    this.refillAmount = refillAmount;
    this.refillPeriodSeconds = period;
    this.soft = soft;
    if (schedule !== undefined) this.schedule = schedule;
    if (quota) this.quota = quota;
    if (concurrent) this.concurrent = true;
    Object.freeze(this);
  }

  /**
   * A concurrent limit: at most `max` leases in flight per entity and resource, across
   * processes. `acquire` takes a slot, `commit` or `rollback` frees it; a slot whose lease
   * outlives the call's `leaseTimeoutMs` (required with such a limit) is taken back. It combines
   * with rate limits and quotas in one write; see docs/usage.md, "Concurrency limits".
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const streams = Limit.concurrent("streams", 5);
   * console.assert(streams.capacity === 5 && streams.concurrent === true);
   * ```
   */
  static concurrent(name: string, max: number): Limit {
    validateLimitName(name, "limit.name");
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1 || max > MAX_CONCURRENT) {
      throw new ValidationError(
        `limit ${name}: max`,
        max,
        `must be a whole number from 1 to ${MAX_CONCURRENT}`,
      );
    }
    return new Limit(name, max, max, 1, false, undefined, undefined, true);
  }

  /**
   * A quota: `amount` tokens per window, back to `amount` in one lump when the window resets
   * (never a drip). The window is a calendar one (`reset`: monthly, weekly or daily in a time
   * zone, DST-correct) or starts at the first use (`resetAfter`) and restarts at the first use
   * after it ended. Exactly one of the two; see docs/usage.md, "Quotas".
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const monthly = Limit.quota("tokens", 1_000_000, { reset: "month@Europe/Berlin" });
   * console.assert(monthly.capacity === 1_000_000 && monthly.quota?.kind === "calendar");
   * const trial = Limit.quota("requests", 500, { resetAfter: "30d" });
   * console.assert(trial.quota?.kind === "after");
   * ```
   */
  static quota(name: string, amount: number, options: QuotaOptions): Limit {
    validateLimitName(name, "limit.name");
    checkAmount(`limit ${name}: amount`, amount);
    checkObject(`limit ${name}: options`, options);
    const { reset, resetAfter, soft, ...rest } = options;
    for (const key of Object.keys(rest)) {
      throw new ValidationError(
        `limit ${name}: ${key}`,
        (rest as Record<string, unknown>)[key],
        "is not an option of a quota (reset, resetAfter, soft)",
      );
    }
    const q = validateQuotaReset({ reset, resetAfter }, `limit ${name}`);
    const period = q.kind === "after" ? q.durationMs / 1000 : NOMINAL_SECONDS[q.reset.every];
    return new Limit(
      name,
      amount,
      amount,
      period,
      checkSoft(`limit ${name}: soft`, soft),
      undefined,
      q,
    );
  }

  /**
   * `rate` tokens per second, with an optional larger `burst`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perSecond("rps", 5).capacity === 5);
   * ```
   */
  static perSecond(name: string, rate: number, options?: RateOptions): Limit {
    return Limit.#rate(name, rate, 1, options);
  }

  /**
   * `rate` tokens per minute, with an optional larger `burst`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perMinute("rpm", 100).refillPeriodSeconds === 60);
   * ```
   */
  static perMinute(name: string, rate: number, options?: RateOptions): Limit {
    return Limit.#rate(name, rate, 60, options);
  }

  /**
   * `rate` tokens per hour, with an optional larger `burst`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perHour("rph", 1000).refillPeriodSeconds === 3600);
   * ```
   */
  static perHour(name: string, rate: number, options?: RateOptions): Limit {
    return Limit.#rate(name, rate, 3600, options);
  }

  /**
   * `rate` tokens per day, with an optional larger `burst`.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perDay("rpd", 10_000).refillPeriodSeconds === 86_400);
   * ```
   */
  static perDay(name: string, rate: number, options?: RateOptions): Limit {
    return Limit.#rate(name, rate, 86_400, options);
  }

  /**
   * Any capacity and refill rate.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const l = Limit.custom({ name: "jobs", capacity: 3, refillAmount: 1, refillPeriodSeconds: 20 });
   * console.assert(l.capacity === 3);
   * ```
   */
  static custom(
    options: CustomLimitOptions | QuotaLimitOptions | ConcurrentLimitOptions,
  ): Limit {
    checkObject("limit", options);
    if ("concurrent" in options && options.concurrent !== undefined) {
      const { name, capacity, concurrent, ...rest } = options as ConcurrentLimitOptions;
      validateLimitName(name, "limit.name");
      if (concurrent !== true) {
        throw new ValidationError(`limit ${name}: concurrent`, concurrent, "must be true");
      }
      for (const key of Object.keys(rest)) {
        throw new ValidationError(
          `limit ${name}: ${key}`,
          (rest as Record<string, unknown>)[key],
          "is not an option of a concurrent limit (name, capacity, concurrent)",
        );
      }
      return Limit.concurrent(name, capacity);
    }
    if ("reset" in options || "resetAfter" in options) {
      const { name, capacity, ...rest } = options as QuotaLimitOptions;
      validateLimitName(name, "limit.name");
      return Limit.quota(name, capacity, rest);
    }
    const { name, capacity, refillAmount, refillPeriodSeconds } = options as CustomLimitOptions;
    validateLimitName(name, "limit.name");
    checkAmount(`limit ${name}: capacity`, capacity);
    checkAmount(`limit ${name}: refillAmount`, refillAmount);
    checkPeriod(`limit ${name}: refillPeriodSeconds`, refillPeriodSeconds);
    const soft = checkSoft(`limit ${name}: soft`, (options as CustomLimitOptions).soft);
    const schedule = checkSchedule(name, (options as CustomLimitOptions).schedule);
    return new Limit(name, capacity, refillAmount, refillPeriodSeconds, soft, schedule);
  }

  /** A limit of `rate` tokens per `period` seconds, holding up to `burst` (default `rate`). */
  static #rate(name: string, rate: number, period: number, options?: RateOptions): Limit {
    validateLimitName(name, "limit.name");
    checkAmount(`limit ${name}: rate`, rate);
    const burst = options?.burst ?? rate;
    checkAmount(`limit ${name}: burst`, burst);
    if (burst < rate) {
      throw new ValidationError(`limit ${name}: burst`, burst, `must be >= the rate (${rate})`);
    }
    const soft = checkSoft(`limit ${name}: soft`, options?.soft);
    return new Limit(name, burst, rate, period, soft, checkSchedule(name, options?.schedule));
  }

  /**
   * Capacity in thousandths of a token: the exact integer the buckets store.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perMinute("tpm", 2.5).capacityMilli === 2500n);
   * ```
   */
  get capacityMilli(): bigint {
    return BigInt(Math.round(this.capacity * 1000));
  }
  /**
   * Refill amount in thousandths of a token.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perSecond("rps", 5, { burst: 20 }).refillMilli === 5000n);
   * ```
   */
  get refillMilli(): bigint {
    return BigInt(Math.round(this.refillAmount * 1000));
  }
  /**
   * Refill period in milliseconds.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perHour("rph", 100).periodMs === 3_600_000n);
   * ```
   */
  get periodMs(): bigint {
    return BigInt(Math.round(this.refillPeriodSeconds * 1000));
  }

  /**
   * The same limit, soft (or hard again with `false`).
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const tpm = Limit.perMinute("tpm", 1000).withSoft(true);
   * console.assert(tpm.soft && tpm.capacity === 1000);
   * ```
   */
  withSoft(soft: boolean): Limit {
    if (soft === this.soft) return this;
    if (this.concurrent) {
      throw new ValidationError(
        `limit ${this.name}: soft`,
        soft,
        "a concurrent limit is never soft",
      );
    }
    return new Limit(
      this.name,
      this.capacity,
      this.refillAmount,
      this.refillPeriodSeconds,
      soft,
      this.schedule,
      this.quota,
    );
  }

  /**
   * A quota's reset in its text form (`"month@Europe/Berlin"`, `"after:30d"`); `undefined` for a
   * token bucket.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const q = Limit.quota("tokens", 100, { resetAfter: 86_400 });
   * console.assert(q.resetText === "after:1d");
   * ```
   */
  get resetText(): string | undefined {
    return this.quota ? formatReset(this.quota) : undefined;
  }

  /**
   * The limit as it stands at an instant (epoch ms): the parameters of the schedule's window in
   * force then, or its own outside every window, as a limit without a schedule. A limit without
   * a schedule is itself. The answer is kept until the next switch, so a call within the same
   * window costs a comparison.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const rpm = Limit.perMinute("rpm", 100, { schedule: { timeZone: "UTC",
   *   windows: [{ days: ["sat", "sun"], from: "00:00", to: "24:00", rate: 200, burst: 300 }] } });
   * console.assert(rpm.inForceAt(Date.UTC(2026, 0, 10, 12)).capacity === 300); // a Saturday
   * console.assert(rpm.inForceAt(Date.UTC(2026, 0, 12, 12)).capacity === 100); // a Monday
   * ```
   */
  inForceAt(nowMs: number | bigint): Limit {
    if (this.schedule === undefined) return this;
    const t = Number(nowMs);
    const kept = this.#inForce;
    if (kept !== undefined && kept.startMs <= t && t < kept.endMs) return kept.limit;
    const state = scheduleAt(this.schedule, t);
    const w = state.window;
    const limit = w === null
      ? this.#plain()
      : new Limit(this.name, w.burst ?? w.rate, w.rate, this.refillPeriodSeconds, this.soft);
    this.#inForce = { startMs: state.startMs, endMs: state.endMs, limit };
    return limit;
  }

  /**
   * Every set of parameters the limit can have: its own, then each window's, as limits without a
   * schedule (one element for a limit without a schedule).
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const rpm = Limit.perMinute("rpm", 100, { schedule: { timeZone: "UTC",
   *   windows: [{ days: ["sat"], from: "00:00", to: "24:00", rate: 50 }] } });
   * console.assert(rpm.variants().map((l) => l.capacity).join() === "100,50");
   * ```
   */
  variants(): Limit[] {
    if (this.schedule === undefined) return [this];
    return [
      this.#plain(),
      ...this.schedule.windows.map((w) =>
        new Limit(this.name, w.burst ?? w.rate, w.rate, this.refillPeriodSeconds, this.soft)
      ),
    ];
  }

  /** The limit's own parameters without its schedule. */
  #plain(): Limit {
    return new Limit(
      this.name,
      this.capacity,
      this.refillAmount,
      this.refillPeriodSeconds,
      this.soft,
    );
  }

  /**
   * Whether two limits have the same name, capacity, rate, softness and schedule.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * console.assert(Limit.perMinute("rpm", 60).equals(Limit.perMinute("rpm", 60)));
   * console.assert(!Limit.perMinute("rpm", 60).equals(Limit.perSecond("rpm", 1)));
   * ```
   */
  equals(other: Limit): boolean {
    return other.name === this.name && other.capacity === this.capacity &&
      other.refillAmount === this.refillAmount &&
      other.refillPeriodSeconds === this.refillPeriodSeconds && other.soft === this.soft &&
      JSON.stringify(other.schedule) === JSON.stringify(this.schedule) &&
      other.resetText === this.resetText && other.concurrent === this.concurrent;
  }

  /**
   * Plain data, e.g. for JSON; {@link Limit.custom} takes it back.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * const rpm = Limit.perMinute("rpm", 100);
   * const copy = Limit.custom(JSON.parse(JSON.stringify(rpm)));
   * console.assert(copy.equals(rpm));
   * ```
   */
  toJSON(): CustomLimitOptions | QuotaLimitOptions | ConcurrentLimitOptions {
    if (this.concurrent) return { name: this.name, capacity: this.capacity, concurrent: true };
    if (this.quota) {
      const q: QuotaLimitOptions = { name: this.name, capacity: this.capacity };
      if (this.quota.kind === "after") q.resetAfter = this.resetText!.slice(6);
      else q.reset = this.resetText;
      if (this.soft) q.soft = true;
      return q;
    }
    const json: CustomLimitOptions = {
      name: this.name,
      capacity: this.capacity,
      refillAmount: this.refillAmount,
      refillPeriodSeconds: this.refillPeriodSeconds,
    };
    // Only when set: a hard limit's plain data is as it always was.
    if (this.soft) json.soft = true;
    if (this.schedule !== undefined) json.schedule = this.schedule;
    return json;
  }
}
