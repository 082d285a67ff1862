/**
 * Input rules, checked before any I/O. Every failure is a {@link ValidationError} naming the
 * field, the value seen and the rule.
 *
 * @module
 */

import { ValidationError } from "./error_base.ts";

const ENTITY_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$/;
const LIMIT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const RESOURCE = /^[A-Za-z][A-Za-z0-9_.\/-]{0,63}$/;

/** Largest absolute amount accepted in `consume`, `adjust` and `needed`, in tokens. */
export const MAX_AMOUNT = 1e15;

/** Checks an entity id: 1–256 letters, digits and `_ . - : @`, starting with a letter or digit. */
export function validateEntityId(value: unknown, field = "entityId"): string {
  if (typeof value !== "string" || !ENTITY_ID.test(value)) {
    throw new ValidationError(
      field,
      value,
      "must be 1-256 characters of letters, digits and _ . - : @, starting with a letter or digit",
    );
  }
  return value;
}

/** Checks a resource name: a letter, then letters, digits, `_ . - /`; at most 64 characters. */
export function validateResource(value: unknown, field = "resource"): string {
  if (typeof value !== "string" || !RESOURCE.test(value)) {
    throw new ValidationError(
      field,
      value,
      "must be a letter followed by letters, digits, _ . - or /, at most 64 characters",
    );
  }
  return value;
}

/** Checks a limit name: a letter, then letters, digits, `_ . -`; at most 64 characters. */
export function validateLimitName(value: unknown, field = "limit.name"): string {
  if (typeof value !== "string" || !LIMIT_NAME.test(value)) {
    throw new ValidationError(
      field,
      value,
      "must be a letter followed by letters, digits, _ . or -, at most 64 characters",
    );
  }
  return value;
}

/**
 * Checks an amount map (`consume`, `needed`, `adjust`) against the names it may use, and turns
 * it into exact thousandths of a token, rounded up (against the caller).
 */
export function amountsToMilli(
  field: string,
  value: unknown,
  names: ReadonlySet<string> | "any",
  options: { allowNegative: boolean },
): Map<string, bigint> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ValidationError(field, value, "must be an object of limit name to amount");
  }
  const out = new Map<string, bigint>();
  for (const [name, amount] of Object.entries(value as Record<string, unknown>)) {
    const at = `${field}.${fieldKey(name)}`;
    if (names === "any") validateLimitName(name, at);
    else if (!names.has(name)) {
      throw new ValidationError(
        at,
        amount,
        `names no limit of this call (limits: ${[...names].join(", ") || "none"})`,
      );
    }
    const rule = options.allowNegative
      ? `must be a finite number between -${MAX_AMOUNT} and ${MAX_AMOUNT}`
      : `must be a finite number between 0 and ${MAX_AMOUNT}`;
    if (typeof amount !== "number" || !Number.isFinite(amount)) {
      throw new ValidationError(at, amount, rule);
    }
    if (Math.abs(amount) > MAX_AMOUNT || (!options.allowNegative && amount < 0)) {
      throw new ValidationError(at, amount, rule);
    }
    out.set(name, toMilliCeil(amount));
  }
  return out;
}

/**
 * Tokens to thousandths, rounded up (against the caller). A product within float noise of a
 * whole number (`0.1 * 1000`) is that number.
 */
export function toMilliCeil(amount: number): bigint {
  const x = amount * 1000;
  const r = Math.round(x);
  return BigInt(Math.abs(x - r) <= 1e-9 * Math.max(1, Math.abs(x)) ? r : Math.ceil(x));
}

/**
 * A key of an input object as it appears in a field path: as is when it looks like a name,
 * otherwise quoted, escaped and cut to 40 characters (so no input can forge a log line).
 */
export function fieldKey(key: string): string {
  if (/^[A-Za-z0-9_.-]{1,64}$/.test(key)) return key;
  const quoted = JSON.stringify(key);
  return quoted.length > 40 ? `${quoted.slice(0, 37)}..."` : quoted;
}
