/**
 * The host's clock checked against DynamoDB's: every answer carries DynamoDB's time in its HTTP
 * `Date` header. {@link SkewEstimate} turns those answers into bounds of the host's offset,
 * {@link ServerClock} corrects the limiter's default clock when the host is off by more than the
 * tolerance, and {@link serverClockOf} installs one per DynamoDB client. See "Clocks" in
 * docs/design.md.
 *
 * @module
 */

import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import type * as aws from "./aws_types.ts";
import * as keys from "./keys.ts";
import { consoleLogger, type LogFields, logTo } from "./logger.ts";

/**
 * Bounds of `server time − host time` (ms) from answers. A `Date` header of second `D` was
 * written while the server's clock was in `[D, D + 1 s)`, at a host time within `[sent, received]`:
 * the offset lies in `(D − received, D + 1 s − sent)`. Answers that agree narrow the bounds;
 * an answer that contradicts them (the host's clock was stepped) replaces them. So the estimate
 * moves only on clear evidence, never on the header's rounding or a slow round trip.
 *
 * @example
 * ```ts
 * import { SkewEstimate } from "./clock.ts";
 * const est = new SkewEstimate();
 * est.observe(10_000, 10_040, 3_610_000); // the host is an hour behind
 * console.assert(est.lowMs === 3_599_960 && est.highMs === 3_601_000);
 * ```
 */
export class SkewEstimate {
  /** Lower bound of the offset (ms); `-Infinity` before the first answer. */
  lowMs = -Infinity;
  /** Upper bound of the offset (ms); `Infinity` before the first answer. */
  highMs = Infinity;

  /** Takes one answer into account; returns whether the bounds changed. */
  observe(sentMs: number, receivedMs: number, dateMs: number): boolean {
    const low = dateMs - receivedMs;
    const high = dateMs + 1000 - sentMs;
    if (low >= this.highMs || high <= this.lowMs) {
      this.lowMs = low;
      this.highMs = high;
      return true;
    }
    if (low <= this.lowMs && high >= this.highMs) return false;
    if (low > this.lowMs) this.lowMs = low;
    if (high < this.highMs) this.highMs = high;
    return true;
  }

  /** The middle of the bounds, rounded; 0 before the first answer. */
  get midMs(): number {
    return this.lowMs === -Infinity ? 0 : Math.round((this.lowMs + this.highMs) / 2);
  }
}

/** Options of {@link ServerClock}. */
export interface ServerClockOptions {
  /** Offsets up to this many ms are left uncorrected. @default 1000 */
  toleranceMs?: number;
  /**
   * Where the one warning per change goes, with its fields (`clock.skew` or `clock.agrees`, see
   * docs/usage.md, "Logs"). @default the console (`consoleLogger`)
   */
  warn?: (message: string, fields: LogFields) => void;
}

/**
 * The limiter's default clock: `Date.now()`, corrected by the host's offset from DynamoDB's
 * answers when it exceeds the tolerance. Between answers, a step of the host's clock (seen
 * against the monotonic clock) makes it take the slower of the two, so a clock jumping ahead
 * never reaches a bucket before DynamoDB's next answer shows it.
 *
 * @example
 * ```ts
 * import { ServerClock } from "./clock.ts";
 * const warnings: string[] = [];
 * const clock = new ServerClock({ warn: (m) => warnings.push(m) });
 * const sent = Date.now();
 * clock.observe(sent, sent + 5, new Date(sent - 3_600_000).toUTCString()); // an hour fast
 * console.assert(Math.abs(clock.now() - (Date.now() - 3_600_000)) < 1500);
 * console.assert(clock.verified && warnings.length === 1);
 * ```
 */
export class ServerClock {
  readonly #estimate = new SkewEstimate();
  readonly #toleranceMs: number;
  readonly #warn: (message: string, fields: LogFields) => void;
  #correctionMs = 0;
  #warnedMs = 0;
  #lastDate = "";
  #lastDateMs = 0;
  /** `Date.now() − performance.now()` at the last answer; NaN before it. */
  #wallMinusMono = NaN;
  /** The first probe under way: resolves to its error, or `undefined`. */
  #probe?: Promise<unknown>;

  constructor(options: ServerClockOptions = {}) {
    this.#toleranceMs = options.toleranceMs ?? 1000;
    this.#warn = options.warn ?? ((m, f) => logTo(consoleLogger, "warn", m, f));
  }

  /** Whether an answer from DynamoDB has been seen. */
  get verified(): boolean {
    return this.#wallMinusMono === this.#wallMinusMono;
  }

  /** The correction added to `Date.now()`, ms (0 within the tolerance). */
  get correctionMs(): number {
    return this.#correctionMs;
  }

  /** The corrected time, epoch ms. */
  readonly now = (): number => {
    const wall = Date.now();
    const mono = performance.now();
    const drift = wall - mono - this.#wallMinusMono; // NaN (false below) before the first answer
    if (drift > this.#toleranceMs) return mono + this.#wallMinusMono + this.#correctionMs;
    return wall + this.#correctionMs;
  };

  /** Takes one answer into account: its `Date` header, sent and received at host times. */
  observe(sentMs: number, receivedMs: number, date: unknown): void {
    if (typeof date !== "string") return;
    if (date !== this.#lastDate) {
      const ms = Date.parse(date);
      if (ms !== ms) return;
      this.#lastDate = date;
      this.#lastDateMs = ms;
    }
    this.#wallMinusMono = receivedMs - performance.now();
    if (!this.#estimate.observe(sentMs, receivedMs, this.#lastDateMs)) return;
    const mid = this.#estimate.midMs;
    const tol = this.#toleranceMs;
    this.#correctionMs = mid > tol || mid < -tol ? mid : 0;
    const moved = this.#correctionMs - this.#warnedMs;
    if ((this.#correctionMs === 0) !== (this.#warnedMs === 0) || moved > tol || moved < -tol) {
      this.#warnedMs = this.#correctionMs;
      this.#warn(describe(this.#correctionMs, tol, this.#estimate), {
        event: this.#correctionMs === 0 ? "clock.agrees" : "clock.skew",
        correctionMs: this.#correctionMs,
        toleranceMs: tol,
        hostMinusDynamoMinMs: -this.#estimate.highMs,
        hostMinusDynamoMaxMs: -this.#estimate.lowMs,
      });
    }
  }

  /**
   * Waits (until `deadline`, epoch ms of `Date.now`) for a first answer, asking `probe` for one if
   * none has come: one call per process, shared by concurrent first calls. A probe that fails
   * without an answer (an outage) lets the caller go on uncorrected; one that fails with an error
   * `fatal` accepts (a misconfiguration) throws it, so that call is the one that reports it.
   */
  async ready(
    probe: (signal: AbortSignal) => Promise<unknown>,
    deadline: number,
    fatal: (err: unknown) => boolean = () => false,
  ): Promise<void> {
    if (this.verified) return;
    if (!this.#probe) {
      // Aborted at the first caller's deadline: a call that hangs cannot hold later ones.
      const signal = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
      const once = () => probe(signal).then(() => undefined, (err: unknown) => err);
      // A signature refused for a skew the SDK has just corrected (its `systemClockOffset`) is
      // the clock, not the credentials: asked once more, signed with the corrected time.
      this.#probe = once()
        .then((err) => skewCorrected(err) ? once() : err)
        .finally(() => {
          this.#probe = undefined;
        });
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<unknown>((done) => {
      timer = setTimeout(() => done(undefined), Math.max(0, deadline - Date.now()));
    });
    let err: unknown;
    try {
      err = await Promise.race([this.#probe, late]);
    } finally {
      clearTimeout(timer);
    }
    if (err !== undefined && fatal(err)) throw err;
  }
}

function skewCorrected(err: unknown): boolean {
  return (err as { $metadata?: { clockSkewCorrected?: boolean } })?.$metadata
    ?.clockSkewCorrected === true;
}

function describe(correctionMs: number, toleranceMs: number, est: SkewEstimate): string {
  const range = `${-est.highMs}..${-est.lowMs} ms`;
  if (correctionMs === 0) {
    return `zae-limiter: this host's clock now agrees with DynamoDB's within ${toleranceMs} ms ` +
      `(host − DynamoDB: ${range}); the limiter's clock is no longer corrected`;
  }
  const way = correctionMs < 0 ? "ahead of" : "behind";
  return `zae-limiter: this host's clock is ${
    Math.abs(correctionMs / 1000).toFixed(1)
  } s ${way} DynamoDB's (host − DynamoDB: ${range}); the limiter corrects its clock by ` +
    `${correctionMs} ms. Fix the host's time source (NTP): other software on it is off too.`;
}

const clocks = new WeakMap<object, ServerClock>();

/**
 * The {@link ServerClock} of a DynamoDB client, made on first use: a middleware samples every
 * answer (and every error that carries one). Limiters sharing a client share its clock; the
 * first one's options apply.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { serverClockOf } from "./clock.ts";
 * const client = new DynamoDBClient({ region: "us-east-1" });
 * console.assert(serverClockOf(client) === serverClockOf(client));
 * client.destroy();
 * ```
 */
export function serverClockOf(
  client: aws.DynamoDBClient,
  options: ServerClockOptions = {},
): ServerClock {
  let clock = clocks.get(client);
  if (clock) return clock;
  const made = new ServerClock(options);
  clock = made;
  clocks.set(client, made);
  type Answer = { headers?: Record<string, string | undefined> };
  const sample = (sent: number, response: Answer | undefined) => {
    const headers = response?.headers;
    // An `Age` header is a cache's answer: its date is not now.
    if (headers && headers.age === undefined) made.observe(sent, Date.now(), headers.date);
  };
  client.middlewareStack.add(
    (next) => async (args) => {
      const sent = Date.now();
      try {
        const out = await next(args);
        sample(sent, out.response as Answer);
        return out;
      } catch (err) {
        sample(sent, (err as { $response?: Answer })?.$response);
        throw err;
      }
    },
    // Innermost in the deserialize step: right around the HTTP round trip.
    { step: "deserialize", priority: "low", name: "zaeLimiterServerClock" },
  );
  return clock;
}

/**
 * Feeds one answer of `client` that did not go through its middleware (the lean transport) to
 * the client's {@link ServerClock}, when it has one: the same observation the middleware makes.
 */
export function sampleAnswer(client: object, sentMs: number, date: string | null): void {
  clocks.get(client)?.observe(sentMs, Date.now(), date);
}

/**
 * The partition key of the clock probe: the table's own partition (`SYSTEM`), which no input can
 * name since every entity key starts with `ENTITY#`.
 */
export const CLOCK_PROBE_KEY = keys.SYSTEM_PK;

/**
 * A cheap call whose answer verifies the clock: a GetItem of the schema version item
 * (`SYSTEM`/`#VERSION`, half a read unit; the limiter's IAM policy allows GetItem). Its answer
 * also tells the table's schema version, handed to `onVersion` (1 when the item is missing).
 */
export function probeTable(
  client: aws.DynamoDBClient,
  tableName: string,
  onVersion?: (version: number) => void,
): (signal: AbortSignal) => Promise<unknown> {
  return async (abortSignal) => {
    const out = await client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { PK: { S: keys.SYSTEM_PK }, SK: { S: keys.VERSION_SK } },
        ProjectionExpression: "version",
      }),
      { abortSignal },
    );
    const n = out.Item?.version?.N;
    onVersion?.(n === undefined ? 1 : Number(n));
    return out;
  };
}
