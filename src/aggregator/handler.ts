/**
 * The usage aggregator's Lambda handler (Node.js 22 runtime), fed by the table's DynamoDB Stream.
 * Bundled into one ESM file by `scripts/build_aggregator.ts`, with the AWS SDK left to the runtime.
 *
 * Environment:
 * - `TABLE_NAME` (required): the rate-limit table.
 * - `SNAPSHOT_RETENTION_DAYS` (default 90): days a snapshot is kept after its window ends.
 * - `USAGE_WINDOWS` (default `hourly,daily`): window types to maintain.
 *
 * The event source mapping must set `FunctionResponseTypes: ["ReportBatchItemFailures"]`: the
 * handler returns the first failed record, so Lambda retries from it and, after its retries,
 * sends it to the dead-letter queue (on-failure destination).
 *
 * @module
 */

import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import process from "node:process";
import { type ProcessOptions, processRecords } from "./process.ts";
import {
  type BucketStreamRecord,
  isUsageWindow,
  MalformedRecordError,
  type UsageWindow,
} from "./snapshot.ts";

/**
 * A DynamoDB Streams event as Lambda delivers it.
 *
 * @example
 * ```ts ignore
 * import { type DynamoDBStreamEvent, handler } from "./handler.ts";
 * // In the Lambda runtime, with TABLE_NAME set:
 * const event: DynamoDBStreamEvent = { Records: [] };
 * const { batchItemFailures } = await handler(event);
 * ```
 */
export interface DynamoDBStreamEvent {
  /** The batch, in stream order per shard. */
  Records: BucketStreamRecord[];
}

/**
 * The answer Lambda reads with ReportBatchItemFailures: Lambda retries the batch from the
 * record named, or goes on when the list is empty.
 *
 * @example
 * ```ts
 * import type { StreamBatchResponse } from "./handler.ts";
 * const retryFrom: StreamBatchResponse = { batchItemFailures: [{ itemIdentifier: "4200" }] };
 * const allDone: StreamBatchResponse = { batchItemFailures: [] };
 * console.assert(retryFrom.batchItemFailures.length === 1 && allDone.batchItemFailures.length === 0);
 * ```
 */
export interface StreamBatchResponse {
  /** At most one: the first record that failed (its sequence number). */
  batchItemFailures: { itemIdentifier: string }[];
}

/**
 * The handler's settings, read from the environment.
 *
 * @example
 * ```ts
 * import { type AggregatorConfig, configFromEnv } from "./handler.ts";
 * const config: AggregatorConfig = configFromEnv({ TABLE_NAME: "rate_limits",
 *   SNAPSHOT_RETENTION_DAYS: "30" });
 * console.assert(config.retentionDays === 30 && config.windows.join() === "hourly,daily");
 * ```
 */
export interface AggregatorConfig {
  /** `TABLE_NAME`. */
  tableName: string;
  /** `SNAPSHOT_RETENTION_DAYS`. @default 90 */
  retentionDays: number;
  /** `USAGE_WINDOWS`. @default ["hourly", "daily"] */
  windows: UsageWindow[];
}

/**
 * Reads the handler's settings from environment variables; a bad value throws an error naming
 * the variable, the value and the rule.
 *
 * @example
 * ```ts
 * import { configFromEnv } from "./handler.ts";
 * const config = configFromEnv({ TABLE_NAME: "rate_limits", USAGE_WINDOWS: "daily" });
 * console.assert(config.retentionDays === 90 && config.windows[0] === "daily");
 * ```
 */
export function configFromEnv(env: Record<string, string | undefined>): AggregatorConfig {
  const tableName = env.TABLE_NAME ?? "";
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new Error(
      `Invalid TABLE_NAME: ${JSON.stringify(env.TABLE_NAME)} ` +
        "(must be 3-255 characters of letters, digits, _ . -)",
    );
  }
  const rawDays = env.SNAPSHOT_RETENTION_DAYS?.trim() || "90";
  const retentionDays = Number(rawDays);
  if (!/^[0-9]+$/.test(rawDays) || retentionDays < 1 || retentionDays > 36_500) {
    throw new Error(
      `Invalid SNAPSHOT_RETENTION_DAYS: ${JSON.stringify(rawDays)} ` +
        "(must be a whole number of days from 1 to 36500)",
    );
  }
  const rawWindows = env.USAGE_WINDOWS?.trim() || "hourly,daily";
  const windows = [...new Set(rawWindows.split(",").map((w) => w.trim()))];
  for (const w of windows) {
    if (!isUsageWindow(w)) {
      throw new Error(
        `Invalid USAGE_WINDOWS: ${JSON.stringify(rawWindows)} ` +
          `(${JSON.stringify(w)} is not a window; use a comma-separated list of hourly, daily)`,
      );
    }
  }
  return { tableName, retentionDays, windows: windows as UsageWindow[] };
}

let client: DynamoDBClient | undefined;

/**
 * The Lambda entry point (`index.handler` in the deployed zip): applies the batch and returns
 * the first failed record, if any (a malformed record is a failed record). A bad configuration,
 * or an event whose `Records` is not an array, throws: Lambda retries the whole batch, then
 * sends it to the dead-letter queue.
 *
 * @example
 * ```ts ignore
 * import { handler } from "./handler.ts";
 * const { batchItemFailures } = await handler({ Records: [] });
 * ```
 */
export async function handler(event: DynamoDBStreamEvent): Promise<StreamBatchResponse> {
  const config = configFromEnv(process.env);
  const endpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB || process.env.AWS_ENDPOINT_URL;
  client ??= new DynamoDBClient(endpoint ? { endpoint } : {});
  const options: ProcessOptions = {
    client,
    tableName: config.tableName,
    retentionDays: config.retentionDays,
    windows: config.windows,
  };
  const records = (event as Partial<DynamoDBStreamEvent> | null | undefined)?.Records;
  if (!Array.isArray(records)) {
    // No record to name: a thrown error is the only failure Lambda retries (then sends to the
    // dead-letter queue), and it shows in the function's Errors metric.
    throw new TypeError(
      `Invalid event: Records is ${describe(records)}, not an array ` +
        "(the aggregator takes DynamoDB Streams events only)",
    );
  }
  const result = await processRecords(records, options);
  for (const { sequenceNumber, error } of result.errors) {
    // A malformed record's message is one bounded line; other errors keep their stack.
    const shown = error instanceof MalformedRecordError ? error.message : error;
    console.error(`usage aggregator: record ${sequenceNumber || "?"} failed:`, shown);
  }
  console.log(JSON.stringify({
    records: result.records,
    consumptions: result.consumptions,
    snapshotWrites: result.snapshotWrites,
    duplicates: result.duplicates,
    indexed: result.indexed,
    failed: result.batchItemFailures[0]?.itemIdentifier ?? null,
  }));
  return { batchItemFailures: result.batchItemFailures };
}

/** A value's kind for a message (never its content, which could be large or multi-line). */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object"
    ? "an object"
    : typeof value === "undefined"
    ? "missing"
    : `a ${typeof value}`;
}
