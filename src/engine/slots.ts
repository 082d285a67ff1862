/**
 * Write slots: at most half the write-count bound's reach of this process's writes in flight per
 * bucket,
 * and the tats those writes will leave (a hint for new writes of the same process).
 *
 * @module
 */

import { RateLimiterUnavailable } from "../errors.ts";
import { BOUND_REACH } from "../keys.ts";
import type { StoredLimit } from "../repository.ts";

/** Writes of one process in flight on one bucket at most (half the write-count bound's reach). */
export const SLOTS_PER_BUCKET = Math.max(1, Math.floor(BOUND_REACH / 2));

/** Per bucket: the writes of this process in flight, and a queue for more. */
export class WriteSlots {
  readonly #queues = new Map<string, { busy: number; waiters: (() => void)[] }>();
  readonly #inFlight = new Map<string, { writes: number; tats: Map<string, bigint> }>();

  /**
   * Waits for a slot on each bucket, taken in a fixed order; returns the function that gives
   * them back. Throws `RateLimiterUnavailable` at the deadline.
   */
  async take(buckets: string[], deadline: number): Promise<() => void> {
    const ids = [...new Set(buckets)].sort();
    const taken: string[] = [];
    const release = () => {
      for (const id of taken.splice(0)) {
        const q = this.#queues.get(id);
        const next = q?.waiters.shift();
        if (next) next();
        else if (q) {
          q.busy--;
          if (q.busy === 0) this.#queues.delete(id);
        }
      }
    };
    try {
      for (const id of ids) {
        let q = this.#queues.get(id);
        if (!q) this.#queues.set(id, q = { busy: 0, waiters: [] });
        if (q.busy < SLOTS_PER_BUCKET) {
          q.busy++;
        } else {
          const queue = q;
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => {
              const i = queue.waiters.indexOf(wake);
              if (i >= 0) queue.waiters.splice(i, 1);
              reject(new RateLimiterUnavailable("acquire", new Error("too many writes in flight")));
            }, Math.max(0, deadline - Date.now()));
            const wake = () => {
              clearTimeout(timer);
              resolve(); // the slot passes from the releaser to us: busy stays the same
            };
            queue.waiters.push(wake);
          });
        }
        taken.push(id);
      }
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  /** Runs `fn` holding a slot on each bucket (see {@link take}). */
  async hold<T>(buckets: string[], deadline: number, fn: () => Promise<T>): Promise<T> {
    const release = await this.take(buckets, deadline);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Notes a write in flight on a bucket (its expected tats); returns the function that ends it. */
  flying(id: string, after: Map<string, StoredLimit>): () => void {
    let entry = this.#inFlight.get(id);
    if (!entry) this.#inFlight.set(id, entry = { writes: 0, tats: new Map() });
    entry.writes++;
    for (const [name, st] of after) {
      const prev = entry.tats.get(name);
      if (st.tat !== undefined && (prev === undefined || st.tat > prev)) {
        entry.tats.set(name, st.tat);
      }
    }
    const flying = entry;
    return () => {
      if (--flying.writes === 0) this.#inFlight.delete(id);
    };
  }

  /** The highest tat per limit that this process's writes in flight on a bucket will leave. */
  tatsInFlight(id: string): Map<string, bigint> | undefined {
    return this.#inFlight.get(id)?.tats;
  }
}
