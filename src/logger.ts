/**
 * The library's own log lines: warnings and errors about what happens in the background (the
 * outbox giving up, a failed config refresh, `close()` leaving writes, the clock, the schema
 * version), sent to the `logger` option of `RateLimiter` as a message and structured fields.
 *
 * Fields never hold a secret (credentials, signatures, tokens), a request body, an entity id or
 * an error's message (an AWS error's message can quote the signed request): only event names,
 * table, namespace and resource names, counts, durations and error names. docs/usage.md ("Logs")
 * lists every event and its fields.
 *
 * @module
 */

import { ValidationError } from "./error_base.ts";

/** A log line's fields: `event` names what happened; the other values are plain data. */
export interface LogFields {
  /** The event's name, such as `outbox.gave_up` (docs/usage.md, "Logs"). */
  event: string;
  /** Further fields of the event. */
  [field: string]: string | number | boolean | string[] | undefined;
}

/**
 * Where the library's log lines go: any object with `warn` and `error` taking a message and
 * fields, such as `console` or a winston logger. A logger that takes the fields first (pino,
 * bunyan) goes through {@link fieldsFirst}.
 *
 * @example
 * ```ts
 * import type { Logger } from "./logger.ts";
 * const lines: string[] = [];
 * const logger: Logger = {
 *   warn: (message, fields) => lines.push(`WARN ${fields.event} ${message}`),
 *   error: (message, fields) => lines.push(`ERROR ${fields.event} ${message}`),
 * };
 * logger.warn("something", { event: "x.y" });
 * console.assert(lines[0] === "WARN x.y something");
 * ```
 */
export interface Logger {
  /** Something went wrong and the library worked around it, or something needs fixing. */
  warn(message: string, fields: LogFields): void;
  /** Something was lost: a write the outbox gave up on. */
  error(message: string, fields: LogFields): void;
}

/**
 * The default logger: one line per event on `console.warn` / `console.error`, the message then
 * the fields as JSON (one line, for log collectors).
 *
 * @example
 * ```ts
 * import { consoleLogger } from "./logger.ts";
 * const original = console.warn;
 * let line = "";
 * console.warn = (s: string) => void (line = s);
 * consoleLogger.warn("zae-limiter: hello", { event: "x.y", n: 1 });
 * console.warn = original;
 * console.assert(line === 'zae-limiter: hello {"event":"x.y","n":1}');
 * ```
 */
export const consoleLogger: Logger = {
  warn: (message, fields) => console.warn(`${message} ${JSON.stringify(fields)}`),
  error: (message, fields) => console.error(`${message} ${JSON.stringify(fields)}`),
};

/**
 * Adapts a logger that takes the fields first and the message second (pino, bunyan) to
 * {@link Logger}.
 *
 * @example
 * ```ts
 * import { fieldsFirst } from "./logger.ts";
 * const seen: unknown[] = [];
 * const pinoLike = {
 *   warn: (obj: object, msg: string) => seen.push(obj, msg),
 *   error: (obj: object, msg: string) => seen.push(obj, msg),
 * };
 * fieldsFirst(pinoLike).warn("m", { event: "x.y" });
 * console.assert((seen[0] as { event: string }).event === "x.y" && seen[1] === "m");
 * ```
 */
export function fieldsFirst(logger: {
  warn(fields: LogFields, message: string): unknown;
  error(fields: LogFields, message: string): unknown;
}): Logger {
  return {
    warn: (message, fields) => void logger.warn(fields, message),
    error: (message, fields) => void logger.error(fields, message),
  };
}

/**
 * Checks the `logger` option: `undefined` (the console) or an object with `warn` and `error`
 * functions. Throws `ValidationError` naming `field` otherwise.
 *
 * @example
 * ```ts
 * import { checkLogger, consoleLogger } from "./logger.ts";
 * console.assert(checkLogger(undefined) === consoleLogger);
 * console.assert(checkLogger(console) === console);
 * ```
 */
export function checkLogger(value: unknown, field = "logger"): Logger {
  if (value === undefined) return consoleLogger;
  const l = value as Partial<Logger> | null;
  if (
    l === null || typeof l !== "object" || typeof l.warn !== "function" ||
    typeof l.error !== "function"
  ) {
    throw new ValidationError(field, value, "must be an object with warn and error functions");
  }
  return l as Logger;
}

/**
 * Sends one line to `logger` at `level`; a logger that throws is ignored (logging never breaks
 * the limiter, nor a background write).
 *
 * @example
 * ```ts
 * import { logTo } from "./logger.ts";
 * const broken = { warn: () => { throw new Error("disk full"); }, error: () => {} };
 * logTo(broken, "warn", "m", { event: "x.y" }); // does not throw
 * ```
 */
export function logTo(logger: Logger, level: "warn" | "error", message: string, fields: LogFields) {
  try {
    logger[level](message, fields);
  } catch {
    // A broken logger must not turn a warning into a failure.
  }
}

const SAFE_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/**
 * An error's name for a log field: its class name or AWS error code, never its message (an AWS
 * error's message can quote the signed request). A name that is not a plain identifier is shown
 * as `Error`.
 *
 * @example
 * ```ts
 * import { errorName } from "./logger.ts";
 * console.assert(errorName(new TypeError("x")) === "TypeError");
 * console.assert(errorName(Object.assign(new Error(), { name: "a\nb" })) === "Error");
 * console.assert(errorName("boom") === "string");
 * ```
 */
export function errorName(err: unknown): string {
  if (err instanceof Error) return SAFE_NAME.test(err.name) ? err.name : "Error";
  return typeof err;
}

/**
 * The name of an error's cause, when it has one (see {@link errorName}).
 *
 * @example
 * ```ts
 * import { causeName } from "./logger.ts";
 * console.assert(causeName(new Error("x", { cause: new RangeError("y") })) === "RangeError");
 * console.assert(causeName(new Error("x")) === undefined);
 * ```
 */
export function causeName(err: unknown): string | undefined {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause === undefined ? undefined : errorName(cause);
}

/**
 * Counts events and tells when one more may be logged: at most one line per `everyMs`; each
 * line says how many events it stands for.
 *
 * @example
 * ```ts
 * import { LogThrottle } from "./logger.ts";
 * let now = 0;
 * const t = new LogThrottle(60_000, () => now);
 * console.assert(t.next() === 1 && t.next() === 0 && t.next() === 0);
 * now = 60_000;
 * console.assert(t.next() === 3); // this one and the two held back
 * ```
 */
export class LogThrottle {
  readonly #everyMs: number;
  readonly #now: () => number;
  #lastMs = -Infinity;
  #held = 0;

  /** @param everyMs Shortest time between two lines. @param now The clock, ms. */
  constructor(everyMs: number, now: () => number = Date.now) {
    this.#everyMs = everyMs;
    this.#now = now;
  }

  /** Counts one event; returns how many events to report now, or 0 to stay quiet. */
  next(): number {
    this.#held++;
    const now = this.#now();
    if (now - this.#lastMs < this.#everyMs) return 0;
    this.#lastMs = now;
    const n = this.#held;
    this.#held = 0;
    return n;
  }
}
