/**
 * Limits between the library and the pages: a `Limit` as a {@link LimitView} (its plain data and
 * one line of text), and the JSON of an edit back into `Limit`s through the library's own
 * `Limit.custom` (the same checks as the API, nothing parsed twice).
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";
import { Limit } from "../limit.ts";
import type { LimitView } from "./api_types.ts";

/**
 * A limit as the pages show it.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { limitView } from "./limit_view.ts";
 * const view = limitView(Limit.perMinute("rpm", 100, { burst: 150 }));
 * console.assert(view.text === "rpm: 100 per 60 s, burst 150" && view.capacity === 150);
 * console.assert(Limit.custom(view.json as never).equals(Limit.perMinute("rpm", 100, { burst: 150 })));
 * ```
 */
export function limitView(limit: Limit): LimitView {
  const kind = limit.concurrent ? "concurrent" : limit.quota ? "quota" : "rate";
  return {
    name: limit.name,
    kind,
    capacity: limit.capacity,
    ...(kind === "rate"
      ? { refillAmount: limit.refillAmount, refillPeriodSeconds: limit.refillPeriodSeconds }
      : {}),
    soft: limit.soft,
    text: limitText(limit),
    json: limit.toJSON(),
  };
}

/**
 * One line: `rpm: 100 per 60 s, burst 150`, `tokens: 1000 per month@UTC`, `streams: 5 at once`.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { limitText } from "./limit_view.ts";
 * console.assert(limitText(Limit.concurrent("streams", 5)) === "streams: 5 at once");
 * console.assert(limitText(Limit.perSecond("rps", 10, { soft: true })) === "rps: 10 per 1 s, soft");
 * ```
 */
export function limitText(limit: Limit): string {
  const soft = limit.soft ? ", soft" : "";
  if (limit.concurrent) return `${limit.name}: ${limit.capacity} at once`;
  if (limit.quota) return `${limit.name}: ${limit.capacity} per ${limit.resetText}${soft}`;
  const burst = limit.capacity === limit.refillAmount ? "" : `, burst ${limit.capacity}`;
  const scheduled = limit.schedule ? ", scheduled" : "";
  return `${limit.name}: ${limit.refillAmount} per ${limit.refillPeriodSeconds} s${burst}${soft}${scheduled}`;
}

/** A `ValidationError` of the limit at `index` of an edit. */
export class LimitInputError extends ValidationError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LimitInputError";
  /** The position of the limit at fault in the edit's `limits`. */
  readonly index: number;

  /**
   * @param index The limit's position.
   * @param cause The library's error about it.
   */
  constructor(index: number, cause: ValidationError) {
    super(cause.field, undefined, cause.rule);
    this.index = index;
    // The value as the library showed it (not shown again, which would quote it twice).
    (this as { value: string }).value = cause.value;
    this.message = cause.message;
  }
}

/**
 * The `limits` of an edit as `Limit`s: each through `Limit.custom` (which takes back
 * `Limit.toJSON()`); a bad one throws {@link LimitInputError} naming its position, field, value
 * and rule. The list itself (empty, too long, names twice) is checked by `setLimits`.
 *
 * @example
 * ```ts
 * import { LimitInputError, limitsFromJson } from "./limit_view.ts";
 * const [rpm] = limitsFromJson([{ name: "rpm", capacity: 10, refillAmount: 10, refillPeriodSeconds: 60 }]);
 * console.assert(rpm.capacity === 10);
 * let error: unknown;
 * try {
 *   limitsFromJson([{ name: "rpm", capacity: -1, refillAmount: 10, refillPeriodSeconds: 60 }]);
 * } catch (e) {
 *   error = e;
 * }
 * console.assert(error instanceof LimitInputError && error.index === 0 && error.field === "limit rpm: capacity");
 * ```
 */
export function limitsFromJson(limits: unknown): Limit[] {
  if (!Array.isArray(limits)) {
    throw new ValidationError("limits", limits, "must be an array of limits (Limit.toJSON())");
  }
  if (limits.length > 32) {
    throw new ValidationError("limits", limits.length, "must hold at most 32 limits");
  }
  return limits.map((json, i) => {
    try {
      return Limit.custom(json);
    } catch (err) {
      if (err instanceof ValidationError) throw new LimitInputError(i, err);
      throw err;
    }
  });
}
