/**
 * Input rules, checked before any I/O. Every failure is a {@link ValidationError} naming the
 * field, the value seen and the rule.
 *
 * @module
 */

import { escapeControls, ValidationError } from "./error_base.ts";

export { escapeControls };

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

/** Longest metadata key, in characters. */
export const MAX_METADATA_KEY = 256;
/** Largest metadata, as JSON, in characters. */
export const MAX_METADATA_JSON = 64_000;

/**
 * Checks entity metadata: an object of string values, keys of 1-256 characters, at most 64 KB as
 * JSON. A key's length is checked before its value's type, and a key shows in a message only
 * through {@link fieldKey} (one line, at most 40 characters).
 */
export function validateMetadata(metadata: unknown): Record<string, string> {
  if (metadata === undefined) return {};
  if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
    throw new ValidationError("metadata", metadata, "must be an object of strings");
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (k.length === 0 || k.length > MAX_METADATA_KEY) {
      throw new ValidationError(
        "metadata key",
        escapeJsonGaps(k.slice(0, 80)),
        `must be 1-${MAX_METADATA_KEY} characters; this one has ${k.length}`,
      );
    }
    if (typeof v !== "string") {
      throw new ValidationError(`metadata.${fieldKey(k)}`, v, "must be a string");
    }
    out[k] = v;
  }
  if (JSON.stringify(out).length > MAX_METADATA_JSON) {
    throw new ValidationError("metadata", "(large)", "must be at most 64 KB as JSON");
  }
  return out;
}

/**
 * A key of an input object as it appears in a field path: as is when it looks like a name,
 * otherwise JSON-quoted with every control character and line separator escaped, and cut to 40
 * characters (never inside an escape or a surrogate pair), so no input can forge a log line or
 * grow a message.
 *
 * @example
 * ```ts
 * import { fieldKey } from "./validate.ts";
 * console.assert(fieldKey("tpm") === "tpm");
 * console.assert(fieldKey("a\nINFO forged") === '"a\\nINFO forged"');
 * console.assert(fieldKey("x".repeat(10_000)).length === 40);
 * ```
 */
export function fieldKey(key: string): string {
  if (/^[A-Za-z0-9_.-]{1,64}$/.test(key)) return key;
  const max = 40;
  const pieces: string[] = [];
  let length = 2; // the quotes
  for (const ch of key) {
    const piece = escapeControls(JSON.stringify(ch).slice(1, -1));
    pieces.push(piece);
    length += piece.length;
    if (length > max) break;
  }
  if (length <= max) return `"${pieces.join("")}"`;
  let kept = "";
  for (const piece of pieces) {
    if (1 + kept.length + piece.length + 4 > max) break; // room for `..."`
    kept += piece;
  }
  return `"${kept}..."`;
}

/**
 * The characters that `JSON.stringify` leaves raw but that still break or rewrite a log line
 * (DEL, C1 controls such as CSI, line and paragraph separators), as `\uXXXX`: for a string that
 * a message shows JSON-quoted.
 */
function escapeJsonGaps(text: string): string {
  return text.replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => escapeControls(c));
}

/** Throws a {@link ValidationError} of `field` unless `value` is an object (not `null`). */
export function checkObject(field: string, value: unknown): void {
  if (value === null || typeof value !== "object") {
    throw new ValidationError(field, value, "must be an object");
  }
}

/** Throws a {@link ValidationError} of `field` unless `value` is a boolean (or `undefined`). */
export function checkBoolean(field: string, value: unknown, optional = false): void {
  if (!(optional && value === undefined) && typeof value !== "boolean") {
    throw new ValidationError(field, value, "must be a boolean");
  }
}
