/**
 * Counts the DynamoDB calls a client sends and the capacity they consume (table and indexes),
 * by SDK middleware. Used by the tests and the benchmark.
 *
 * @module
 */

import type { ConsumedCapacity, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { LeanAnswer, LeanSender } from "../src/transport/lean.ts";

/** One call seen by the meter. */
export interface MeteredCall {
  /** SDK command name, e.g. `"UpdateItemCommand"`. */
  command: string;
  /** Whether it failed (a failed condition included). */
  failed: boolean;
  /** Error name when it failed. */
  error?: string;
  /** Write capacity units reported for the table. */
  tableWcu: number;
  /** Write capacity units reported for indexes. */
  indexWcu: number;
  /** Read capacity units reported (table + indexes). */
  rcu: number;
}

const WITH_CAPACITY = new Set([
  "UpdateItemCommand",
  "PutItemCommand",
  "DeleteItemCommand",
  "GetItemCommand",
  "BatchGetItemCommand",
  "BatchWriteItemCommand",
  "TransactWriteItemsCommand",
  "TransactGetItemsCommand",
  "QueryCommand",
  "ScanCommand",
]);

/** Call counter and capacity meter attached to a client. */
export class Meter {
  /** Every call seen since the last reset. */
  calls: MeteredCall[] = [];

  /** Attaches the meter to `client` (and asks DynamoDB to report capacity with indexes). */
  constructor(client: DynamoDBClient) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName);
        const input = args.input as Record<string, unknown>;
        if (WITH_CAPACITY.has(command)) input.ReturnConsumedCapacity = "INDEXES";
        try {
          const out = await next(args);
          const cc = (out.output as { ConsumedCapacity?: ConsumedCapacity | ConsumedCapacity[] })
            .ConsumedCapacity;
          this.calls.push({ command, failed: false, ...sum(command, cc) });
          return out;
        } catch (err) {
          this.calls.push({
            command,
            failed: true,
            error: err instanceof Error ? err.name : String(err),
            tableWcu: 0,
            indexWcu: 0,
            rcu: 0,
          });
          throw err;
        }
      },
      { step: "initialize", name: "zaeMeter" },
    );
  }

  /**
   * A wrapper of the limiter's lean transport sender (`useLeanTransport(client, { sender })`)
   * that counts its calls here too, with an added round trip of `latency.ms` when given. It wraps
   * the default sender (the socket client), so a benchmark measures what users get. Capacity is
   * not reported on this path (the signed body is left as it is).
   */
  sender(latency?: { ms: number }): (next: LeanSender) => LeanSender {
    return (next) => async (request) => {
      const target = request.headers["x-amz-target"] ?? "";
      const command = `${target.slice(target.indexOf(".") + 1)}Command`;
      if (latency && latency.ms > 0) await new Promise((r) => setTimeout(r, latency.ms));
      let answer: LeanAnswer;
      try {
        answer = await next(request);
      } catch (err) {
        this.calls.push({
          command,
          failed: true,
          error: String(err),
          tableWcu: 0,
          indexWcu: 0,
          rcu: 0,
        });
        throw err;
      }
      if (answer.status < 200 || answer.status >= 300) {
        const type = /"__type":"[^"]*#([A-Za-z]+)"/.exec(answer.text)?.[1] ?? String(answer.status);
        this.calls.push({ command, failed: true, error: type, tableWcu: 0, indexWcu: 0, rcu: 0 });
      } else {
        this.calls.push({ command, failed: false, tableWcu: 0, indexWcu: 0, rcu: 0 });
      }
      return answer;
    };
  }

  /** Forgets the calls seen so far. */
  reset(): void {
    this.calls = [];
  }

  /** Number of calls seen. */
  get count(): number {
    return this.calls.length;
  }

  /** Total write capacity (table + indexes). */
  get wcu(): number {
    return this.calls.reduce((a, c) => a + c.tableWcu + c.indexWcu, 0);
  }

  /** Index write capacity only. */
  get indexWcu(): number {
    return this.calls.reduce((a, c) => a + c.indexWcu, 0);
  }

  /** Read capacity. */
  get rcu(): number {
    return this.calls.reduce((a, c) => a + c.rcu, 0);
  }
}

const READS = new Set([
  "GetItemCommand",
  "BatchGetItemCommand",
  "QueryCommand",
  "ScanCommand",
  "TransactGetItemsCommand",
]);

/** Adds up reported capacity; DynamoDB Local reports only `CapacityUnits`, so the kind of
 * command decides whether units are reads or writes. */
function sum(command: string, cc: ConsumedCapacity | ConsumedCapacity[] | undefined) {
  const read = READS.has(command);
  let tableWcu = 0, indexWcu = 0, rcu = 0;
  for (const c of Array.isArray(cc) ? cc : cc ? [cc] : []) {
    const t = c.Table ?? {};
    const tableUnits = t.CapacityUnits ?? (read ? t.ReadCapacityUnits : t.WriteCapacityUnits) ?? 0;
    let indexUnits = 0;
    for (const g of Object.values(c.GlobalSecondaryIndexes ?? {})) {
      indexUnits += g.CapacityUnits ?? (read ? g.ReadCapacityUnits : g.WriteCapacityUnits) ?? 0;
    }
    if (c.Table === undefined && c.CapacityUnits !== undefined) {
      // Only a total was reported.
      if (read) rcu += c.CapacityUnits;
      else tableWcu += c.CapacityUnits;
      continue;
    }
    if (read) rcu += tableUnits + indexUnits;
    else {
      tableWcu += tableUnits;
      indexWcu += indexUnits;
    }
  }
  return { tableWcu, indexWcu, rcu };
}
