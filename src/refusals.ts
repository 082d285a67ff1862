/**
 * Refusal counts: how many acquires each entity had refused, per resource and hour, kept in
 * memory and written in the background to the entity's hourly usage snapshot (attribute
 * `refused`, beside `bypassed`). A refusal costs a map increment, never a call: the deny cache
 * keeps costing nothing. One `UpdateItem` per (entity, resource, hour) with refusals is sent per
 * flush; an outage keeps the counts (up to `maxKeys`) for the next flush. See docs/design.md,
 * "Refusal counts".
 *
 * @module
 */

import { ValidationError } from "./error_base.ts";

/**
 * The `refusalCounts` option of a limiter: how refused requests are counted into the usage
 * snapshots, or `false` for not at all.
 *
 * @example
 * ```ts
 * import type { RefusalCountsOptions } from "./refusals.ts";
 * const every30s: RefusalCountsOptions = { flushMs: 30_000 };
 * console.assert(every30s.flushMs === 30_000);
 * ```
 */
export interface RefusalCountsOptions {
  /**
   * How long counts are held before they are written, ms of the limiter's clock (from the first
   * refusal held). A 10 to 3,600,000. @default 10000
   */
  flushMs?: number;
  /**
   * Most (entity, resource, hour) counts held, e.g. through an outage; a refusal that needs one
   * more is dropped, counted and logged (`refusals.dropped`). 1 to 1,000,000. @default 10000
   */
  maxKeys?: number;
}

/** Checked `refusalCounts` settings; `undefined` is off. */
export interface RefusalSettings {
  flushMs: number;
  maxKeys: number;
}

/** The defaults of {@link RefusalCountsOptions}. */
export const REFUSAL_DEFAULTS: Readonly<RefusalSettings> = { flushMs: 10_000, maxKeys: 10_000 };

/**
 * Checks the `refusalCounts` option: `undefined` or `true` gives the defaults, `false` turns
 * counting off (`undefined` returned).
 *
 * @throws {ValidationError} When a field breaks its rule.
 *
 * @example
 * ```ts
 * import { refusalSettings } from "./refusals.ts";
 * console.assert(refusalSettings(undefined)?.flushMs === 10_000);
 * console.assert(refusalSettings({ flushMs: 1_000 })?.flushMs === 1_000);
 * console.assert(refusalSettings(false) === undefined);
 * ```
 */
export function refusalSettings(option: unknown): RefusalSettings | undefined {
  if (option === false) return undefined;
  if (option === undefined || option === true) return { ...REFUSAL_DEFAULTS };
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new ValidationError(
      "refusalCounts",
      option,
      "must be false, true or an object { flushMs?, maxKeys? }",
    );
  }
  const { flushMs = REFUSAL_DEFAULTS.flushMs, maxKeys = REFUSAL_DEFAULTS.maxKeys } =
    option as RefusalCountsOptions;
  if (!(Number.isInteger(flushMs) && flushMs >= 10 && flushMs <= 3_600_000)) {
    throw new ValidationError(
      "refusalCounts.flushMs",
      flushMs,
      "must be a whole number of ms from 10 to 3600000",
    );
  }
  if (!(Number.isInteger(maxKeys) && maxKeys >= 1 && maxKeys <= 1_000_000)) {
    throw new ValidationError(
      "refusalCounts.maxKeys",
      maxKeys,
      "must be a whole number from 1 to 1000000",
    );
  }
  return { flushMs, maxKeys };
}

/** The refusals of one entity on one resource in one hour. */
export interface RefusalCount {
  entityId: string;
  resource: string;
  /** Start of the hour, epoch ms (UTC). */
  hourMs: number;
  /** Refusals counted. */
  count: number;
}

/** What a {@link RefusalCounter} is told of counts it could not write. */
export interface RefusalLoss {
  /** `"full"` (no room for a new key), `"closed"` (left at close) or `"error"` (not an outage). */
  reason: "full" | "closed" | "error";
  /** Refusals lost. */
  refusals: number;
  /** Keys (entity, resource, hour) they belonged to. */
  keys: number;
  /** The error of a failed write (`"error"`). */
  error?: unknown;
}

/** Options of {@link RefusalCounter}. */
export interface RefusalCounterOptions extends RefusalSettings {
  /** Adds one count to its snapshot: one call, by `deadline` (epoch ms of `Date.now`). */
  write: (count: RefusalCount, deadline: number) => Promise<void>;
  /** Whether a write's error is an outage (the count is kept for the next flush). */
  isOutage: (err: unknown) => boolean;
  /** The limiter's clock, epoch ms: the hour of a refusal, and when a flush is due. */
  clock: () => number;
  /** How long one flush may take, ms of real time. */
  timeoutMs: number;
  /** Told of counts lost. */
  onLoss?: (loss: RefusalLoss) => void;
  /** Told of a flush that left counts for the next one (an outage). */
  onKept?: (keys: number, err: unknown) => void;
}

const HOUR_MS = 3_600_000;
/** Writes in flight at once during a flush. */
const PARALLEL = 8;

/**
 * Counts refusals in memory per (entity, resource, hour) and writes each key's count in one call
 * per flush. A flush is due `flushMs` of the limiter's clock after the first count it holds; a
 * timer (which never keeps the process alive) and each new count check for it.
 *
 * @example
 * ```ts
 * import { RefusalCounter, type RefusalCount } from "./refusals.ts";
 * const written: RefusalCount[] = [];
 * const counter = new RefusalCounter({
 *   flushMs: 10_000, maxKeys: 100, timeoutMs: 1_000, clock: () => 0,
 *   write: (c) => Promise.resolve(void written.push(c)),
 *   isOutage: () => true,
 * });
 * counter.count("key-1", "api", 0);
 * counter.count("key-1", "api", 0);
 * console.assert(counter.pending === 2 && written.length === 0);
 * await counter.flush();
 * console.assert(written.length === 1 && written[0].count === 2 && counter.pending === 0);
 * counter.stop();
 * ```
 */
export class RefusalCounter {
  readonly #options: RefusalCounterOptions;
  #counts = new Map<string, RefusalCount>();
  /** Refusals held (in `#counts` and in a flush under way). */
  #held = 0;
  /** When (limiter's clock) the counts held are due; `undefined` with none held. */
  #dueAt?: number;
  #timer?: ReturnType<typeof setTimeout>;
  #running?: Promise<number>;
  #stopped = false;
  #closed = false;
  /** Refusals dropped since the counter was made. */
  dropped = 0;

  constructor(options: RefusalCounterOptions) {
    this.#options = options;
  }

  /** Refusals counted and not yet written. */
  get pending(): number {
    return this.#held;
  }

  /** Counts one refusal of `entityId` on `resource` at `atMs` (the limiter's clock). No I/O. */
  count(entityId: string, resource: string, atMs: number): void {
    const hourMs = atMs - (((atMs % HOUR_MS) + HOUR_MS) % HOUR_MS);
    const key = `${hourMs}\u0000${entityId}\u0000${resource}`;
    const c = this.#counts.get(key);
    if (c !== undefined) c.count++;
    else if (this.#counts.size >= this.#options.maxKeys) {
      this.#drop({ reason: "full", refusals: 1, keys: 1 });
      return;
    } else this.#counts.set(key, { entityId, resource, hourMs, count: 1 });
    this.#held++;
    if (this.#dueAt === undefined) {
      this.#dueAt = atMs + this.#options.flushMs;
      this.#arm();
    } else if (atMs >= this.#dueAt && this.#running === undefined) {
      void this.#flushDue();
    }
  }

  /**
   * Writes every count held now (one call per key), waiting for a flush under way first. Counts
   * an outage kept stay for the next flush. Never throws.
   *
   * @returns The refusals of this flush that an outage kept (0 when all were written or dropped);
   * refusals counted while it ran are not in it.
   */
  async flush(): Promise<number> {
    while (this.#running) await this.#running;
    return await this.#run();
  }

  /**
   * Writes what it can by `deadline` (epoch ms of `Date.now`), then stops the timer; counts left
   * are lost (told as `"closed"`). Never throws.
   */
  async close(deadline: number): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.flush(),
      new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now())))),
    ]);
    clearTimeout(timer);
    const left = this.#held;
    if (left > 0) {
      this.#drop({ reason: "closed", refusals: left, keys: this.#keysHeld() });
    }
    this.#closed = true; // a write still under way is reported in that line: nothing more
  }

  /** Stops the timer (counts held stay, and `flush()` still writes them). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #keysHeld(): number {
    return this.#counts.size;
  }

  #drop(loss: RefusalLoss): void {
    this.dropped += loss.refusals;
    try {
      this.#options.onLoss?.(loss);
    } catch {
      // A reporting hook never fails the request it reports on.
    }
  }

  /** A timer for the next due check (real time; it never keeps the process alive). */
  #arm(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    // Until the due time on a real clock (an injected one is checked each flushMs; a timer that
    // fires a little early is armed again for the rest, not for a whole flushMs).
    const wait = this.#dueAt === undefined
      ? this.#options.flushMs
      : Math.min(this.#options.flushMs, Math.max(1, this.#dueAt - this.#options.clock()));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#dueAt === undefined) return;
      if (this.#options.clock() >= this.#dueAt && this.#running === undefined) {
        void this.#flushDue();
      } else this.#arm(); // an injected clock that has not moved on yet, or a flush under way
    }, wait);
    unref(this.#timer);
  }

  async #flushDue(): Promise<void> {
    await this.#run();
    if (this.#held > 0) this.#arm();
  }

  #run(): Promise<number> {
    const run = this.#send().finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  /**
   * One flush: the counts held are taken, sent, and the ones an outage refused put back. Returns
   * the refusals put back.
   */
  async #send(): Promise<number> {
    if (this.#counts.size === 0) return 0;
    const batch = [...this.#counts.values()];
    this.#counts = new Map();
    this.#dueAt = undefined;
    const deadline = Date.now() + this.#options.timeoutMs;
    const kept: RefusalCount[] = [];
    const failed = { refusals: 0, keys: 0, error: undefined as unknown };
    let outage: unknown;
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const c = batch[next++];
        // After an outage (or past the deadline) the rest wait for the next flush: no call.
        if (outage !== undefined || Date.now() >= deadline) {
          kept.push(c);
          continue;
        }
        try {
          await this.#options.write(c, deadline);
          this.#held -= c.count;
        } catch (err) {
          if (this.#options.isOutage(err)) {
            outage ??= err;
            kept.push(c);
          } else {
            this.#held -= c.count;
            failed.refusals += c.count;
            failed.keys++;
            failed.error ??= err;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, batch.length) }, worker));
    const keptRefusals = kept.reduce((n, c) => n + c.count, 0);
    if (this.#closed) return keptRefusals;
    if (failed.keys > 0) this.#drop({ reason: "error", ...failed });
    if (kept.length === 0) return 0;
    for (const c of kept) this.#putBack(c);
    if (this.#counts.size > 0) {
      this.#dueAt ??= this.#options.clock() + this.#options.flushMs;
      this.#arm(); // (a no-op while a timer is pending)
      try {
        this.#options.onKept?.(this.#counts.size, outage);
      } catch {
        // as above
      }
    }
    return keptRefusals;
  }

  /** A count an outage kept: merged with newer ones of its key, or held again if there is room. */
  #putBack(c: RefusalCount): void {
    const key = `${c.hourMs}\u0000${c.entityId}\u0000${c.resource}`;
    const newer = this.#counts.get(key);
    if (newer !== undefined) newer.count += c.count;
    else if (this.#counts.size < this.#options.maxKeys) this.#counts.set(key, c);
    else {
      this.#held -= c.count;
      this.#drop({ reason: "full", refusals: c.count, keys: 1 });
    }
  }
}

/** Lets the process exit with the timer pending (Node's and Deno's timers both). */
function unref(timer: unknown): void {
  if (typeof timer === "number") {
    (globalThis as { Deno?: { unrefTimer?: (id: number) => void } }).Deno?.unrefTimer?.(timer);
  } else (timer as { unref?: () => void }).unref?.();
}
