/**
 * The limits file as data ({@link LimitsFile}), its limit form ({@link LimitSpec}), and
 * {@link LimitsFileError}, which names the file, line and field of every problem.
 *
 * @module
 */

import { showValue, ValidationError } from "../error_base.ts";
import { Limit, type QuotaOptions } from "../limit.ts";
import { formatReset } from "../calendar/text.ts";
import type { LimitSchedule } from "../limit_schedule.ts";
import type { CalendarReset } from "../calendar/reset.ts";

/**
 * A token-bucket limit as the file writes it: `rate` tokens `per` period, holding up to `burst`
 * (default the rate). `per` is `second`, `minute`, `hour`, `day` or a number of seconds.
 *
 * @example
 * ```ts
 * import type { RateLimitSpec } from "./model.ts";
 * const tpm: RateLimitSpec = { name: "tpm", rate: 10_000, per: "minute", burst: 15_000 };
 * console.assert(tpm.per === "minute");
 * ```
 */
export interface RateLimitSpec {
  /** The limit's name, e.g. `tpm`. */
  name: string;
  /** Tokens refilled per period. */
  rate: number;
  /** The period: a unit name, or seconds. */
  per: "second" | "minute" | "hour" | "day" | number;
  /** Bucket capacity. @default the rate */
  burst?: number;
  /** A soft limit: metered, allowed into debt, never refusing. @default false */
  soft?: boolean;
  /** Time windows with other parameters (a window's `rate` is per `per`). @default none */
  schedule?: LimitSchedule;
}

/**
 * A quota as the file writes it: `quota` tokens per window, whole again at the window's end.
 * Exactly one of `reset` (a calendar reset in the CLI's text form, `month@Europe/Berlin`, or as a
 * mapping) and `resetAfter` (a window from the first use: `30d`, or seconds).
 *
 * @example
 * ```ts
 * import type { QuotaSpec } from "./model.ts";
 * const monthly: QuotaSpec = { name: "tokens", quota: 1_000_000, reset: "month@Europe/Berlin" };
 * const trial: QuotaSpec = { name: "requests", quota: 500, resetAfter: "30d" };
 * console.assert(monthly.quota > trial.quota);
 * ```
 */
export interface QuotaSpec {
  /** The limit's name, e.g. `tokens`. */
  name: string;
  /** Tokens per window. */
  quota: number;
  /** A calendar reset: text (`month@Europe/Berlin`, `week:mon 09:00@UTC`) or a mapping. */
  reset?: string | CalendarReset;
  /** A window of this length from the first use: a duration (`30d`, `12h`) or seconds. */
  resetAfter?: string | number;
  /** A soft quota: metered, allowed into debt, never refusing. @default false */
  soft?: boolean;
}

/**
 * A concurrent limit as the file writes it: `concurrent` leases in flight at most.
 *
 * @example
 * ```ts
 * import type { ConcurrentSpec } from "./model.ts";
 * const streams: ConcurrentSpec = { name: "streams", concurrent: 5 };
 * console.assert(streams.concurrent === 5);
 * ```
 */
export interface ConcurrentSpec {
  /** The limit's name, e.g. `streams`. */
  name: string;
  /** Leases in flight at most (a whole number >= 1). */
  concurrent: number;
  /** Never set: a concurrent limit is never soft. */
  soft?: undefined;
}

/**
 * A limit as the file writes it: a token bucket ({@link RateLimitSpec}), a quota
 * ({@link QuotaSpec}, told apart by its `quota` field) or a concurrent limit
 * ({@link ConcurrentSpec}, by its `concurrent` field).
 *
 * @example
 * ```ts
 * import type { LimitSpec } from "./model.ts";
 * const specs: LimitSpec[] = [
 *   { name: "rpm", rate: 60, per: "minute" },
 *   { name: "tokens", quota: 1_000_000, reset: "month@UTC" },
 * ];
 * console.assert(specs.filter((s) => "quota" in s).length === 1);
 * ```
 */
export type LimitSpec = RateLimitSpec | QuotaSpec | ConcurrentSpec;

/**
 * An entity as the file declares it.
 *
 * @example
 * ```ts
 * import { Limit, type QuotaOptions } from "../limit.ts";
import { formatReset } from "../calendar/text.ts";
 * import type { EntitySpec } from "./model.ts";
 * const key: EntitySpec = { parentId: "proj-1", cascade: true,
 *   limits: new Map([["gpt-4", [Limit.perMinute("tpm", 1000)]]]) };
 * console.assert(key.limits.size === 1);
 * ```
 */
export interface EntitySpec {
  /** A display name (compared only when given). */
  name?: string;
  /** The parent; undefined: top-level. */
  parentId?: string;
  /** Whether acquires cascade to the parent. */
  cascade: boolean;
  /** String metadata (compared only when given). */
  metadata?: Record<string, string>;
  /** Limit sets by resource; `*` is the entity-wide set. */
  limits: Map<string, Limit[]>;
}

/**
 * A parsed and checked limits file. `lines` maps a field path (e.g. `entities.key-1.parent`) to
 * its line, for errors found later against the table.
 *
 * @example
 * ```ts
 * import { parseLimitsFile } from "./parse.ts";
 * const file = parseLimitsFile("system:\n  limits:\n    - { name: rpm, rate: 100, per: minute }\n");
 * console.assert(file.system?.[0].refillAmount === 100);
 * ```
 */
export interface LimitsFile {
  /** The file's name, as errors show it. */
  path: string;
  /** System default limits, when declared. */
  system?: Limit[];
  /** Resource default limits by resource. */
  resources: Map<string, Limit[]>;
  /** Entities by id. */
  entities: Map<string, EntitySpec>;
  /** Line of each field path. */
  lines: Map<string, number>;
}

/**
 * One problem of a limits file.
 *
 * @example
 * ```ts
 * import type { FileProblem } from "./model.ts";
 * const p: FileProblem = { line: 3, field: "system.limits[0].rate", value: -1,
 *   rule: "must be a finite number > 0" };
 * console.assert(p.line === 3);
 * ```
 */
export interface FileProblem {
  /** 1-based line. */
  line: number;
  /** The field path. */
  field: string;
  /** The value seen. */
  value: unknown;
  /** The rule broken. */
  rule: string;
}

/**
 * A limits file broke a rule: nothing was written. Each line of the message reads
 * `file:line: field: value (rule)`; `problems` holds them all, `field` is the first one's.
 *
 * @example
 * ```ts
 * import { LimitsFileError } from "./model.ts";
 * const e = new LimitsFileError("limits.yaml", [
 *   { line: 4, field: "entities.k.cascade", value: "yes", rule: "must be a boolean" },
 * ]);
 * console.assert(e.message === 'limits.yaml:4: entities.k.cascade: "yes" (must be a boolean)');
 * ```
 */
export class LimitsFileError extends ValidationError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LimitsFileError";
  /** The file. */
  readonly path: string;
  /** Every problem found, in file order. */
  readonly problems: FileProblem[];

  /**
   * Builds the error; one message line per problem.
   *
   * @param path The file's name.
   * @param problems At least one problem.
   */
  constructor(path: string, problems: FileProblem[]) {
    const first = problems[0];
    super(first.field, first.value, first.rule);
    this.path = path;
    this.problems = problems;
    this.message = problems.map((p) => problemLine(path, p)).join("\n");
  }
}

/** One problem as a message line. */
export function problemLine(path: string, p: FileProblem): string {
  return `${path}:${p.line}: ${p.field}: ${showValue(p.value)} (${p.rule})`;
}

const UNIT_SECONDS: Record<string, number> = { second: 1, minute: 60, hour: 3600, day: 86_400 };
const SECONDS_UNIT: Record<number, RateLimitSpec["per"]> = {
  1: "second",
  60: "minute",
  3600: "hour",
  86400: "day",
};

/**
 * A {@link LimitSpec} as a `Limit`; a bad one throws a `ValidationError` whose field is relative
 * to the spec (`rate`, `burst`, `per`, `name`; a quota's `quota`, `reset`, `resetAfter`).
 *
 * @example
 * ```ts
 * import { specToLimit } from "./model.ts";
 * const l = specToLimit({ name: "tpm", rate: 100, per: "minute", burst: 150 });
 * console.assert(l.capacity === 150 && l.refillPeriodSeconds === 60);
 * const q = specToLimit({ name: "tokens", quota: 1000, reset: "month@UTC" });
 * console.assert(q.resetText === "month@UTC");
 * ```
 */
export function specToLimit(spec: LimitSpec): Limit {
  if ("quota" in spec) return quotaToLimit(spec);
  if ("concurrent" in spec) return concurrentToLimit(spec);
  for (const key of ["reset", "resetAfter"] as const) {
    if (key in spec) {
      throw new ValidationError(
        key,
        (spec as unknown as Record<string, unknown>)[key],
        "only a quota resets (write quota: <amount> instead of rate and per)",
      );
    }
  }
  const period = typeof spec.per === "number" ? spec.per : UNIT_SECONDS[spec.per];
  if (period === undefined) {
    throw new ValidationError(
      "per",
      spec.per,
      "must be second, minute, hour, day or a number of seconds",
    );
  }
  const burst = spec.burst ?? spec.rate;
  const fields: Record<string, string> = {
    capacity: spec.burst === undefined ? "rate" : "burst",
    refillAmount: "rate",
    refillPeriodSeconds: "per",
    name: "name",
    soft: "soft",
  };
  let limit: Limit;
  try {
    limit = Limit.custom({
      name: spec.name,
      capacity: burst,
      refillAmount: spec.rate,
      refillPeriodSeconds: period,
      soft: spec.soft,
      schedule: spec.schedule,
    });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    // A schedule's fields keep their path inside it: `schedule.windows[0].rate`.
    const inSchedule = /: (schedule\b.*)$/.exec(err.field)?.[1];
    if (inSchedule !== undefined) throw new ValidationError(inSchedule, err.value, err.rule);
    const key = /(\w+)$/.exec(err.field)?.[1] ?? "";
    const values: Record<string, unknown> = {
      capacity: burst,
      refillAmount: spec.rate,
      refillPeriodSeconds: spec.per,
      name: spec.name,
      soft: spec.soft,
    };
    throw new ValidationError(fields[key] ?? err.field, values[key], err.rule);
  }
  if (burst < spec.rate) {
    throw new ValidationError("burst", burst, `must be >= the rate (${spec.rate})`);
  }
  return limit;
}

/** A {@link ConcurrentSpec} as a `Limit`; errors name the spec's field (`concurrent`, `name`). */
function concurrentToLimit(spec: ConcurrentSpec): Limit {
  const raw = spec as unknown as Record<string, unknown>;
  for (const key of ["rate", "per", "burst", "schedule", "soft", "reset", "resetAfter"]) {
    if (key in raw) {
      throw new ValidationError(
        key,
        raw[key],
        "is not a field of a concurrent limit (name, concurrent)",
      );
    }
  }
  try {
    return Limit.concurrent(spec.name, spec.concurrent);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    const field = err.field === "limit.name" ? "name" : "concurrent";
    throw new ValidationError(field, err.value, err.rule);
  }
}

/** A {@link QuotaSpec} as a `Limit`; errors name the spec's field (`quota`, `reset.timeZone`). */
function quotaToLimit(spec: QuotaSpec): Limit {
  const raw = spec as unknown as Record<string, unknown>;
  for (const key of ["rate", "per", "burst", "schedule"]) {
    if (key in raw) {
      throw new ValidationError(
        key,
        raw[key],
        "is not a field of a quota (name, quota, reset or resetAfter, soft)",
      );
    }
  }
  const options: QuotaOptions = {};
  if (spec.reset !== undefined) options.reset = spec.reset;
  if (spec.resetAfter !== undefined) options.resetAfter = spec.resetAfter;
  if (spec.soft !== undefined) options.soft = spec.soft;
  try {
    return Limit.quota(spec.name, spec.quota, options);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    // The library names `limit.name`, `limit tokens: amount`, `limit tokens.reset.timeZone`.
    const rest = err.field === "limit.name"
      ? "name"
      : err.field.replace(/^limit [^:.]*(: |\.)/, "");
    // A reset in text form is one field: `reset`, not the part of it that is wrong.
    const field = rest === "amount"
      ? "quota"
      : typeof spec.reset === "string" && rest.startsWith("reset.")
      ? "reset"
      : rest;
    throw new ValidationError(field, fieldValue(raw, field), err.rule);
  }
}

/** The value at a field path such as `reset.timeZone` of a spec. */
function fieldValue(raw: Record<string, unknown>, field: string): unknown {
  let at: unknown = raw;
  for (const step of field.split(".")) {
    if (typeof at !== "object" || at === null) return undefined;
    at = (at as Record<string, unknown>)[step];
  }
  return at;
}

/**
 * A `Limit` in the file's form.
 *
 * @example
 * ```ts
 * import { Limit, type QuotaOptions } from "../limit.ts";
import { formatReset } from "../calendar/text.ts";
 * import { limitToSpec } from "./model.ts";
 * const spec = limitToSpec(Limit.perHour("rph", 10, { burst: 20 }));
 * console.assert("per" in spec && spec.per === "hour" && spec.burst === 20);
 * const quota = limitToSpec(Limit.quota("tokens", 500, { resetAfter: "30d" }));
 * console.assert("quota" in quota && quota.resetAfter === "30d");
 * ```
 */
export function limitToSpec(limit: Limit): LimitSpec {
  if (limit.concurrent) return { name: limit.name, concurrent: limit.capacity };
  if (limit.quota) {
    const q: QuotaSpec = { name: limit.name, quota: limit.capacity };
    if (limit.quota.kind === "after") q.resetAfter = limit.resetText!.slice("after:".length);
    else q.reset = limit.resetText;
    if (limit.soft) q.soft = true;
    return q;
  }
  const spec: RateLimitSpec = {
    name: limit.name,
    rate: limit.refillAmount,
    per: SECONDS_UNIT[limit.refillPeriodSeconds] ?? limit.refillPeriodSeconds,
  };
  if (limit.capacity !== limit.refillAmount) spec.burst = limit.capacity;
  if (limit.soft) spec.soft = true;
  if (limit.schedule !== undefined) spec.schedule = limit.schedule;
  return spec;
}

/**
 * A limit on one line, e.g. `tpm 10000/minute burst 15000`, a quota `tokens 1000/month@UTC`.
 *
 * @example
 * ```ts
 * import { Limit, type QuotaOptions } from "../limit.ts";
import { formatReset } from "../calendar/text.ts";
 * import { showLimit } from "./model.ts";
 * console.assert(showLimit(Limit.perMinute("rpm", 100)) === "rpm 100/minute");
 * console.assert(showLimit(Limit.perMinute("tpm", 9, { soft: true })) === "tpm 9/minute soft");
 * console.assert(showLimit(Limit.quota("tok", 5, { reset: "day@UTC" })) === "tok 5/day@UTC");
 * ```
 */
export function showLimit(limit: Limit): string {
  const spec = limitToSpec(limit);
  const schedule = "schedule" in spec && spec.schedule ? ` ${showSchedule(spec.schedule)}` : "";
  return `${spec.name} ${showSpec(spec)}${schedule}`;
}

/**
 * A limit's parameters on one line, without its name: `10000/minute burst 15000`, a quota's
 * `1000000/month@Europe/Berlin` or `500/after:30d`; ` soft` after a soft one.
 *
 * @example
 * ```ts
 * import { showSpec } from "./model.ts";
 * console.assert(showSpec({ name: "tok", quota: 9, resetAfter: "1d", soft: true }) === "9/after:1d soft");
 * console.assert(showSpec({ name: "streams", concurrent: 5 }) === "5/concurrent");
 * ```
 */
export function showSpec(spec: LimitSpec): string {
  if ("concurrent" in spec) return `${spec.concurrent}/concurrent`;
  const soft = spec.soft ? " soft" : "";
  if ("quota" in spec) {
    const reset = spec.resetAfter !== undefined
      ? `after:${spec.resetAfter}`
      : typeof spec.reset === "string"
      ? spec.reset
      : formatReset(spec.reset!);
    return `${spec.quota}/${reset}${soft}`;
  }
  const per = typeof spec.per === "number" ? `${spec.per}s` : spec.per;
  return `${spec.rate}/${per}${spec.burst === undefined ? "" : ` burst ${spec.burst}`}${soft}`;
}

/** A schedule on one line, e.g. `schedule@Europe/Berlin[sat,sun 00:00-24:00 200 burst 300]`. */
function showSchedule(schedule: LimitSchedule): string {
  const windows = schedule.windows.map((w) =>
    `${w.days.join(",")} ${w.from}-${w.to} ${w.rate}${
      w.burst === undefined ? "" : ` burst ${w.burst}`
    }`
  );
  return `schedule@${schedule.timeZone}[${windows.join("; ")}]`;
}
