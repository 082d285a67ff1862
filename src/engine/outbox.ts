/**
 * The outbox: writes that an outage kept from DynamoDB, retried in the background until they are
 * applied exactly once (each carries its operation id, whose receipt on the item refuses a
 * second copy).
 *
 * @module
 */

/** One queued write. `run` must be idempotent; it throws while DynamoDB is unavailable. */
export interface OutboxEntry {
  /** What it is, for error messages. */
  label: string;
  /** The operation (`commit`, `rollback`, `cancel`, …), for the log: the label names the entity. */
  operation?: string;
  /** The resource it writes, for the log. */
  resource?: string;
  /** The buckets it writes: new writes of this process to them wait for it (see `settled`). */
  buckets?: string[];
  /** Performs the write before `deadline` (epoch ms). */
  run(deadline: number): Promise<void>;
}

/** Options of {@link Outbox}. */
export interface OutboxOptions {
  /** Deadline of one attempt, ms. */
  attemptMs: number;
  /** First pause after a failed attempt, ms. @default 100 */
  minBackoffMs?: number;
  /** Longest pause, ms. @default 1000 */
  maxBackoffMs?: number;
  /** Whether an error means "try again later" (an outage) rather than a bug. */
  isTransient(err: unknown): boolean;
  /** Told of each write given up on (after it joined `failed`). */
  onGiveUp?(entry: Omit<OutboxEntry, "run">, error: unknown): void;
}

/** A FIFO of writes retried with capped exponential backoff, in the background. */
export class Outbox {
  readonly #entries: OutboxEntry[] = [];
  readonly #options: OutboxOptions;
  #running?: Promise<void>;
  #backoff = 0;
  #wake?: () => void;
  #stopped = false;
  /** Writes given up on because they failed with a non-transient error. */
  readonly failed: { label: string; error: unknown }[] = [];

  /** @param options Attempt deadline, backoff and error classification. */
  constructor(options: OutboxOptions) {
    this.#options = options;
  }

  /** Gives up on a write: it joins `failed`, and `onGiveUp` is told. */
  giveUp(entry: Omit<OutboxEntry, "run">, error: unknown): void {
    this.failed.push({ label: entry.label, error });
    this.#options.onGiveUp?.(entry, error);
  }

  /** Writes queued. */
  get size(): number {
    return this.#entries.length;
  }

  /** Queues a write and starts the background loop. */
  add(entry: OutboxEntry): void {
    this.#entries.push(entry);
    this.#running ??= this.#loop().finally(() => (this.#running = undefined));
  }

  /** Whether a queued write touches `bucket`. */
  touches(bucket: string): boolean {
    return this.#entries.some((e) => e.buckets?.includes(bucket));
  }

  /**
   * Waits until no queued write touches any of `buckets`, or `deadline` (epoch ms) passes;
   * returns whether they are settled. Skips the current backoff: a caller is waiting.
   */
  async settled(buckets: string[], deadline: number): Promise<boolean> {
    while (buckets.some((b) => this.touches(b))) {
      if (Date.now() >= deadline) return false;
      this.wake();
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(20, deadline - Date.now()))));
    }
    return true;
  }

  /** Stops retrying (the limiter is closed); what is queued stays queued, and is reported. */
  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  /** Ends the current backoff at once (DynamoDB answered again). */
  wake(): void {
    this.#wake?.();
  }

  /** Waits until the outbox is empty, or `timeoutMs` passes; returns how many writes remain. */
  async flush(timeoutMs: number): Promise<number> {
    const until = Date.now() + timeoutMs;
    while (this.#entries.length > 0 && Date.now() < until) {
      this.#wake?.(); // skip the current backoff: the caller is waiting
      await Promise.race([
        this.#running ?? Promise.resolve(),
        new Promise((r) => setTimeout(r, Math.max(0, Math.min(50, until - Date.now())))),
      ]);
    }
    return this.#entries.length;
  }

  async #loop(): Promise<void> {
    const { attemptMs, minBackoffMs = 100, maxBackoffMs = 1_000 } = this.#options;
    while (this.#entries.length > 0 && !this.#stopped) {
      const entry = this.#entries[0];
      try {
        await entry.run(Date.now() + attemptMs);
        this.#entries.shift();
        this.#backoff = 0;
      } catch (err) {
        if (!this.#options.isTransient(err)) {
          this.#entries.shift();
          this.giveUp(entry, err);
          continue;
        }
        this.#backoff = Math.min(maxBackoffMs, Math.max(minBackoffMs, this.#backoff * 2));
        const pause = this.#backoff * (0.5 + Math.random() / 2);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pause);
          // Don't keep a process alive just to retry: close() flushes what must be flushed.
          (timer as { unref?: () => void }).unref?.();
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
      }
    }
  }
}
