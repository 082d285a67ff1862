/**
 * Timing of the DynamoDB calls a client sends, to count round trips: calls whose time in
 * flight overlaps form one wave, and a request waits for its waves one after another.
 * Used with {@link Meter} (which counts calls and capacity) by the benchmark.
 *
 * @module
 */

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { Meter, MeteredCall } from "./meter.ts";

/** One call's time in flight, in `performance.now()` ms. */
export interface TracedCall {
  /** SDK command name. */
  command: string;
  /** When the call was sent. */
  start: number;
  /** When its answer (or error) came back. */
  end: number;
}

/**
 * Records when each call starts and ends.
 *
 * @example
 * ```ts ignore
 * const tracer = new Tracer(client);
 * await limiter.acquire(...);
 * console.log(tracer.roundTrips());
 * ```
 */
export class Tracer {
  /** Every call seen since the last reset. */
  calls: TracedCall[] = [];

  /** Attaches the tracer to `client`. */
  constructor(client: DynamoDBClient) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const call = { command: String(context.commandName), start: performance.now(), end: 0 };
        try {
          return await next(args);
        } finally {
          call.end = performance.now();
          this.calls.push(call);
        }
      },
      { step: "initialize", name: "zaeBenchTracer" },
    );
  }

  /** Forgets the calls seen so far. */
  reset(): void {
    this.calls = [];
  }

  /** Sequential waves of calls: overlapping calls count once. */
  roundTrips(): number {
    return countWaves(this.calls);
  }
}

/** Number of groups of overlapping intervals (a call starting before the last ended joins it). */
export function countWaves(calls: readonly TracedCall[]): number {
  const sorted = [...calls].sort((a, b) => a.start - b.start);
  let waves = 0;
  let waveEnd = -Infinity;
  for (const c of sorted) {
    if (c.start >= waveEnd) waves++;
    if (c.end > waveEnd) waveEnd = c.end;
  }
  return waves;
}

/** What one operation cost, as measured. */
export interface Cost {
  /** DynamoDB calls sent (failed ones included). */
  calls: number;
  /** Calls waited for in sequence. */
  roundTrips: number;
  /** Write capacity reported by DynamoDB, table + indexes. */
  wcu: number;
  /** Of which indexes. */
  indexWcu: number;
  /** Read capacity reported. */
  rcu: number;
  /** Calls that failed a condition (AWS bills a failed conditional write: ≥ 1 WCU). */
  failedConditions: number;
  /** Calls by command, e.g. `{ UpdateItem: 1 }`. */
  commands: Record<string, number>;
}

/** Sums what a meter and a tracer saw. */
export function costOf(meter: Meter, tracer: Tracer): Cost {
  return summarize(meter.calls, tracer.roundTrips());
}

/** Sums metered calls; `roundTrips` comes from a tracer. */
export function summarize(calls: readonly MeteredCall[], roundTrips: number): Cost {
  const commands: Record<string, number> = {};
  let wcu = 0, indexWcu = 0, rcu = 0, failedConditions = 0;
  for (const c of calls) {
    const name = c.command.replace(/Command$/, "");
    commands[name] = (commands[name] ?? 0) + 1;
    wcu += c.tableWcu + c.indexWcu;
    indexWcu += c.indexWcu;
    rcu += c.rcu;
    if (
      c.failed &&
      (c.error === "ConditionalCheckFailedException" || c.error === "TransactionCanceledException")
    ) failedConditions++;
  }
  return { calls: calls.length, roundTrips, wcu, indexWcu, rcu, failedConditions, commands };
}
