/**
 * The base of every error of this library, and {@link ValidationError}: the two that modules
 * below the errors module (limits, validation) need, kept apart so their imports form no circle.
 *
 * @module
 */

/**
 * Base class of every error this library throws.
 *
 * @example
 * ```ts
 * import { ZaeLimiterError, ValidationError } from "./error_base.ts";
 * const e = new ValidationError("entityId", "", "must not be empty");
 * console.assert(e instanceof ZaeLimiterError);
 * ```
 */
export class ZaeLimiterError extends Error {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "ZaeLimiterError";
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   * @param options `cause`, when another error led to this one.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * An argument broke a rule. Thrown before any I/O, so nothing was written.
 * `field`, `value` and `rule` say which argument, what was seen (cut short) and what was expected.
 *
 * @example
 * ```ts
 * import { ValidationError } from "./error_base.ts";
 * const e = new ValidationError("consume.rpm", -1, "must be a finite number >= 0");
 * console.assert(e.message === "Invalid consume.rpm: -1 (must be a finite number >= 0)");
 * ```
 */
export class ValidationError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "ValidationError";
  /** The argument at fault, e.g. `"consume.tpm"`. */
  readonly field: string;
  /** The value seen, shortened to 80 characters. */
  readonly value: string;
  /** The rule broken. */
  readonly rule: string;

  /**
   * Builds the error; the message reads `Invalid {field}: {value} ({rule})`.
   *
   * @param field Argument name, e.g. `"consume.tpm"`.
   * @param value Value seen (shown cut to 80 characters).
   * @param rule Rule broken, e.g. `"must be a finite number >= 0"`.
   */
  constructor(field: string, value: unknown, rule: string) {
    const shown = showValue(value);
    super(`Invalid ${field}: ${shown} (${rule})`);
    this.field = field;
    this.value = shown;
    this.rule = rule;
  }
}

/** Renders a value for an error message: JSON-ish, cut to 80 characters. */
export function showValue(value: unknown): string {
  let s: string;
  if (typeof value === "string") s = JSON.stringify(value);
  else if (typeof value === "number" || typeof value === "bigint") s = String(value);
  else if (value === undefined) s = "undefined";
  else {
    try {
      s = JSON.stringify(value) ?? String(value);
    } catch {
      s = Object.prototype.toString.call(value);
    }
  }
  // One line, whatever the value holds: control characters and line separators as \uXXXX.
  s = escapeControls(s);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * Text with every control character (C0, DEL, C1) and the Unicode line and paragraph
 * separators written as `\uXXXX`, so that it stays on one line and cannot drive a terminal.
 *
 * @example
 * ```ts
 * import { escapeControls } from "./error_base.ts";
 * console.assert(escapeControls("a\nb\u2028c") === "a\\u000ab\\u2028c");
 * ```
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

const CONTROLS = /[\p{Cc}\u2028\u2029]/gu;
