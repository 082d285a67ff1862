/**
 * The CLI's limit syntax: `name:rate[/sec|/min|/hour|/day][:burst][:soft]`, e.g.
 * `tpm:10000/min:15000`, or `tpm:10000/min:soft` for a soft limit; a quota is
 * `name:amount/reset[:soft]` with the reset's text form: `tokens:1000000/month@Europe/Berlin`,
 * `requests:500/after:30d`; a concurrent limit is `name:max/concurrent`: `streams:5/concurrent`.
 *
 * @module
 */

import { Limit } from "../mod.ts";

/** A command-line input that does not follow its syntax (exit code 2). */
export class UsageError extends Error {
  /** @param message One line: the option, the value and the rule. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const UNITS: Record<string, number> = {
  s: 1,
  sec: 1,
  second: 1,
  m: 60,
  min: 60,
  minute: 60,
  h: 3600,
  hour: 3600,
  d: 86400,
  day: 86400,
};

/** The rule of the syntax, as error messages quote it. */
export const LIMIT_SYNTAX =
  "name:rate[/sec|/min|/hour|/day][:burst][:soft], e.g. tpm:10000/min:15000";

/**
 * Parses one limit. The period defaults to `/min`; the burst (bucket capacity) to the rate. A
 * final `:soft` makes a soft limit (metered, never refusing).
 *
 * @example
 * ```ts
 * import { parseLimitSpec } from "./limits.ts";
 * const tpm = parseLimitSpec("tpm:10000/min:15000");
 * console.assert(tpm.capacity === 15000 && tpm.refillAmount === 10000);
 * console.assert(tpm.refillPeriodSeconds === 60);
 * console.assert(parseLimitSpec("tpm:1000/min:soft").soft);
 * ```
 */
export function parseLimitSpec(text: string): Limit {
  const bad = (rule: string) => new UsageError(`Invalid limit ${JSON.stringify(text)}: ${rule}`);
  const concurrent = /^([^:/]+):([^:/]+)\/concurrent$/i.exec(text);
  if (concurrent) {
    const max = Number(concurrent[2]);
    try {
      return Limit.concurrent(concurrent[1], /^\d+$/.test(concurrent[2]) ? max : NaN);
    } catch (err) {
      throw bad(err instanceof Error ? err.message : String(err));
    }
  }
  const quota = QUOTA.exec(text);
  if (quota) {
    const [, name, amountText, reset, soft] = quota;
    const amount = parseAmount(amountText);
    if (amount === undefined) {
      throw bad(`amount ${JSON.stringify(amountText)} must be a number > 0`);
    }
    try {
      const options = reset.startsWith("after:") ? { resetAfter: reset.slice(6) } : { reset };
      return Limit.quota(name, amount, { ...options, soft: soft ? true : undefined });
    } catch (err) {
      throw bad(err instanceof Error ? err.message : String(err));
    }
  }
  const parts = text.split(":");
  const soft = parts.length > 2 && parts.at(-1)!.toLowerCase() === "soft";
  if (soft) parts.pop();
  if (parts.length < 2 || parts.length > 3) {
    throw bad(`expected ${LIMIT_SYNTAX}`);
  }
  const [name, rateText, burstText] = parts;
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    throw bad(
      `name ${JSON.stringify(name)} must be a letter, then letters, digits, _ . -; at most 64`,
    );
  }
  const [amountText, unitText, ...extra] = rateText.split("/");
  if (extra.length > 0) throw bad(`rate ${JSON.stringify(rateText)} has more than one "/"`);
  const rate = parseAmount(amountText);
  if (rate === undefined || rate <= 0) {
    throw bad(`rate ${JSON.stringify(amountText)} must be a number > 0`);
  }
  let period = 60;
  if (unitText !== undefined) {
    const unit = UNITS[unitText.toLowerCase()];
    if (unit === undefined) {
      throw bad(`period ${JSON.stringify(unitText)} must be one of sec, min, hour, day`);
    }
    period = unit;
  }
  let burst = rate;
  if (burstText !== undefined) {
    const b = parseAmount(burstText);
    if (b === undefined || b < rate) {
      throw bad(`burst ${JSON.stringify(burstText)} must be a number >= the rate (${rate})`);
    }
    burst = b;
  }
  try {
    return Limit.custom({
      name,
      capacity: burst,
      refillAmount: rate,
      refillPeriodSeconds: period,
      soft: soft || undefined,
    });
  } catch (err) {
    throw bad(err instanceof Error ? err.message : String(err));
  }
}

/** `name:amount/reset[:soft]`: a quota (a calendar reset with its `@zone`, or `after:…`). */
const QUOTA = /^([^:/]+):([^:/]+)\/((?:month|week|day)[^@/]*@[^:]+|after:[^:]+)(:soft)?$/i;

function parseAmount(text: string): number | undefined {
  if (!/^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(text.replaceAll("_", ""))) return undefined;
  const n = Number(text.replaceAll("_", ""));
  return Number.isFinite(n) ? n : undefined;
}

/**
 * A limit in the CLI's syntax (the inverse of {@link parseLimitSpec} for limits it can express).
 *
 * @example
 * ```ts
 * import { formatLimit, parseLimitSpec } from "./limits.ts";
 * console.assert(formatLimit(parseLimitSpec("rpm:100/min")) === "rpm:100/min");
 * console.assert(formatLimit(parseLimitSpec("tpm:10/min:20:soft")) === "tpm:10/min:20:soft");
 * console.assert(formatLimit(parseLimitSpec("tok:1000/month@UTC")) === "tok:1000/month@UTC");
 * console.assert(formatLimit(parseLimitSpec("streams:5/concurrent")) === "streams:5/concurrent");
 * ```
 */
export function formatLimit(limit: Limit): string {
  if (limit.concurrent) return `${limit.name}:${limit.capacity}/concurrent`;
  if (limit.quota) {
    const q = `${limit.name}:${limit.capacity}/${limit.resetText}`;
    return limit.soft ? `${q}:soft` : q;
  }
  const names: Record<number, string> = { 1: "sec", 60: "min", 3600: "hour", 86400: "day" };
  const unit = names[limit.refillPeriodSeconds];
  const rate = unit
    ? `${limit.refillAmount}/${unit}`
    : `${limit.refillAmount}/${limit.refillPeriodSeconds}s`;
  const spec = limit.capacity === limit.refillAmount
    ? `${limit.name}:${rate}`
    : `${limit.name}:${rate}:${limit.capacity}`;
  return limit.soft ? `${spec}:soft` : spec;
}
