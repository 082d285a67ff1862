/**
 * The in-memory backend's counters of the hourly usage snapshots that a limiter writes itself
 * (the aggregator writes the rest): bypassed requests, and refused ones per hour.
 *
 * @module
 */

import { windowAt } from "../aggregator/snapshot.ts";

/**
 * Bypassed and refused requests per entity and resource (refusals per hour too).
 *
 * @example
 * ```ts
 * import { UsageCounts } from "./usage_counts.ts";
 * const counts = new UsageCounts();
 * counts.addRefused("key-1", "api", 3_600_000, 2);
 * console.assert(counts.refused("key-1", "api") === 2);
 * console.assert(counts.refused("key-1", "api", 0) === 0); // another hour
 * ```
 */
export class UsageCounts {
  readonly #bypassed = new Map<string, number>();
  /** By `{entityId}\0{resource}`, then by the hour's start (epoch ms). */
  readonly #refused = new Map<string, Map<number, number>>();

  /** Counts one bypassed request. */
  addBypassed(entityId: string, resource: string): void {
    const key = keyOf(entityId, resource);
    this.#bypassed.set(key, (this.#bypassed.get(key) ?? 0) + 1);
  }

  /** Adds `n` refused requests to the hour that holds `atMs`. */
  addRefused(entityId: string, resource: string, atMs: number, n: number): void {
    const key = keyOf(entityId, resource);
    const hours = this.#refused.get(key) ?? new Map<number, number>();
    const hourMs = windowAt("hourly", atMs).startMs;
    hours.set(hourMs, (hours.get(hourMs) ?? 0) + n);
    this.#refused.set(key, hours);
  }

  /** Bypassed requests counted. */
  bypassed(entityId: string, resource: string): number {
    return this.#bypassed.get(keyOf(entityId, resource)) ?? 0;
  }

  /** Refused requests counted in the hour that holds `atMs`, or in all hours. */
  refused(entityId: string, resource: string, atMs?: number): number {
    const hours = this.#refused.get(keyOf(entityId, resource));
    if (hours === undefined) return 0;
    if (atMs !== undefined) return hours.get(windowAt("hourly", atMs).startMs) ?? 0;
    let n = 0;
    for (const count of hours.values()) n += count;
    return n;
  }
}

function keyOf(entityId: string, resource: string): string {
  return `${entityId}\u0000${resource}`;
}
