/**
 * The usage aggregator: turns a table's DynamoDB Stream into hourly and daily usage snapshots.
 * Deployed as a Lambda by `zae-limiter deploy`; run locally with {@link aggregateLocal}
 * (`zae-limiter aggregate`).
 *
 * @example
 * ```ts ignore
 * import { aggregateLocal } from "@zae/limiter/aggregator";
 * const result = await aggregateLocal({ tableName: "rate_limits", endpoint: "http://localhost:8000" });
 * console.log(`${result.records} records read`);
 * ```
 *
 * @module
 */

export { aggregateLocal, type AggregateLocalOptions, type AggregateLocalResult } from "./local.ts";
export { type ProcessOptions, processRecords, type ProcessResult } from "./process.ts";
export type { BucketStreamRecord } from "./snapshot.ts";
export {
  AGGREGATOR_FILE,
  AGGREGATOR_HANDLER,
  AGGREGATOR_RUNTIME,
  aggregatorCodeSha256,
  buildAggregatorZip,
} from "./bundle.ts";
export {
  type AggregatorConfig,
  configFromEnv,
  type DynamoDBStreamEvent,
  handler,
  type StreamBatchResponse,
} from "./handler.ts";
