/**
 * The state of a deployment: the stack, the table, and the aggregator.
 *
 * @module
 */

import {
  DescribeContinuousBackupsCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
} from "@aws-sdk/client-dynamodb";
import {
  GetFunctionCommand,
  LambdaClient,
  ListEventSourceMappingsCommand,
} from "@aws-sdk/client-lambda";
import { type AwsOptions, clientConfig, describeAwsError } from "./aws.ts";
import { describeStack, type StackInfo } from "./stack.ts";

/** The table's state.
 *
 * @example
 * ```ts ignore
 * import { deploymentStatus } from "./mod.ts";
 * const { table } = await deploymentStatus({ tableName: "rate_limits", region: "eu-west-1" });
 * console.log(table?.status, table?.ttl, table?.pointInTimeRecovery);
 * ```
 */
export interface TableState {
  /** Table name. */
  name: string;
  /** e.g. `ACTIVE`. */
  status: string;
  /** Approximate item count (DynamoDB updates it about every six hours). */
  itemCount?: number;
  /** Stream ARN. */
  streamArn?: string;
  /** What the stream shows, e.g. `NEW_AND_OLD_IMAGES` (the aggregator needs both images). */
  streamViewType?: string;
  /** TTL status, e.g. `ENABLED`. */
  ttl?: string;
  /** Point-in-time recovery status, e.g. `ENABLED`. */
  pointInTimeRecovery?: string;
  /** Deletion protection. */
  deletionProtection?: boolean;
}

/** The aggregator's state.
 *
 * @example
 * ```ts ignore
 * import { deploymentStatus } from "./mod.ts";
 * const { aggregator } = await deploymentStatus({ tableName: "rate_limits", region: "eu-west-1" });
 * console.log(aggregator?.functionName, aggregator?.state, aggregator?.eventSourceState);
 * ```
 */
export interface AggregatorState {
  /** Function name. */
  functionName: string;
  /** e.g. `Active`. */
  state?: string;
  /** e.g. `Successful`. */
  lastUpdateStatus?: string;
  /** Deployed code's SHA-256 (base64). */
  codeSha256?: string;
  /** Deployed code's size in bytes. */
  codeSize?: number;
  /** Runtime, e.g. `nodejs22.x`. */
  runtime?: string;
  /** State of the stream trigger, e.g. `Enabled`. */
  eventSourceState?: string;
}

/** What {@link deploymentStatus} found (each part `undefined` when missing).
 *
 * @example
 * ```ts ignore
 * import { deploymentStatus } from "./mod.ts";
 * const { stack } = await deploymentStatus({ tableName: "rate_limits", region: "eu-west-1" });
 * if (!stack) console.log("no stack: a table made by createTable, or nothing");
 * ```
 */
export interface DeploymentStatus {
  /** The stack. */
  stack?: StackInfo;
  /** The table. */
  table?: TableState;
  /** The aggregator. */
  aggregator?: AggregatorState;
  /** What is wrong with the deployment, one sentence each; absent when nothing is. */
  warnings?: string[];
}

/** The stream view the aggregator needs: a MODIFY's consumption is `new − old`. */
export const REQUIRED_STREAM_VIEW = "NEW_AND_OLD_IMAGES";

/**
 * The stack, the table and the aggregator of a deployment. Works without a stack too (a table
 * made by `createTable` shows with no stack and no aggregator).
 *
 * @example
 * ```ts ignore
 * import { deploymentStatus } from "@zae/limiter/infra";
 * const { stack, table, aggregator } = await deploymentStatus({ tableName: "rate_limits" });
 * ```
 */
export async function deploymentStatus(
  options: AwsOptions & { tableName: string; stackName?: string },
): Promise<DeploymentStatus> {
  const config = clientConfig(options);
  const out: DeploymentStatus = {};
  out.stack = await describeStack(options);
  const ddb = new DynamoDBClient(config);
  try {
    const t = await ddb.send(new DescribeTableCommand({ TableName: options.tableName }));
    const table: TableState = {
      name: options.tableName,
      status: t.Table?.TableStatus ?? "UNKNOWN",
    };
    if (t.Table?.ItemCount !== undefined) table.itemCount = t.Table.ItemCount;
    if (t.Table?.LatestStreamArn) table.streamArn = t.Table.LatestStreamArn;
    const stream = t.Table?.StreamSpecification;
    if (stream?.StreamEnabled && stream.StreamViewType) {
      table.streamViewType = stream.StreamViewType;
    }
    if (t.Table?.DeletionProtectionEnabled !== undefined) {
      table.deletionProtection = t.Table.DeletionProtectionEnabled;
    }
    const ttl = await ddb.send(new DescribeTimeToLiveCommand({ TableName: options.tableName }))
      .catch(() => undefined);
    if (ttl?.TimeToLiveDescription?.TimeToLiveStatus) {
      table.ttl = ttl.TimeToLiveDescription.TimeToLiveStatus;
    }
    const backups = await ddb.send(
      new DescribeContinuousBackupsCommand({ TableName: options.tableName }),
    ).catch(() => undefined);
    const pitr = backups?.ContinuousBackupsDescription?.PointInTimeRecoveryDescription;
    if (pitr?.PointInTimeRecoveryStatus) table.pointInTimeRecovery = pitr.PointInTimeRecoveryStatus;
    out.table = table;
    const warning = streamWarning(table);
    if (warning) (out.warnings ??= []).push(warning);
  } catch (err) {
    if (!/ResourceNotFound|not found|non-existent/i.test(describeAwsError(err))) throw err;
  } finally {
    ddb.destroy();
  }
  const functionName = out.stack?.outputs.AggregatorFunctionName;
  if (functionName) {
    const lambda = new LambdaClient(config);
    try {
      const f = await lambda.send(new GetFunctionCommand({ FunctionName: functionName }));
      const c = f.Configuration ?? {};
      const agg: AggregatorState = { functionName };
      if (c.State) agg.state = c.State;
      if (c.LastUpdateStatus) agg.lastUpdateStatus = c.LastUpdateStatus;
      if (c.CodeSha256) agg.codeSha256 = c.CodeSha256;
      if (c.CodeSize !== undefined) agg.codeSize = c.CodeSize;
      if (c.Runtime) agg.runtime = c.Runtime;
      const maps = await lambda.send(
        new ListEventSourceMappingsCommand({ FunctionName: functionName }),
      ).catch(() => undefined);
      const mapping = maps?.EventSourceMappings?.[0];
      if (mapping?.State) agg.eventSourceState = mapping.State;
      out.aggregator = agg;
    } catch (err) {
      if (!/ResourceNotFound|not found/i.test(describeAwsError(err))) throw err;
    } finally {
      lambda.destroy();
    }
  }
  return out;
}

/**
 * The warning for a table whose stream the aggregator cannot use, or `undefined`. Without both
 * images every bucket record is malformed to the aggregator (reported, retried, then sent to the
 * dead-letter queue), and without a stream it gets nothing: snapshots and the resource index stay
 * empty.
 *
 * @example
 * ```ts
 * import { streamWarning } from "./status.ts";
 * const warning = streamWarning({ name: "t", status: "ACTIVE", streamViewType: "KEYS_ONLY" });
 * console.assert(warning?.startsWith("Table t has a KEYS_ONLY stream"));
 * console.assert(
 *   streamWarning({ name: "t", status: "ACTIVE", streamViewType: "NEW_AND_OLD_IMAGES" }) ===
 *     undefined,
 * );
 * ```
 */
export function streamWarning(table: TableState): string | undefined {
  const redeploy = "or redeploy the stack (zae-limiter deploy)";
  if (table.streamViewType === undefined) {
    return `Table ${table.name} has no stream: the usage aggregator gets no records, so usage ` +
      "snapshots and the resource index stay empty; to fix, enable a NEW_AND_OLD_IMAGES stream " +
      `(aws dynamodb update-table --stream-specification) ${redeploy}`;
  }
  if (table.streamViewType !== REQUIRED_STREAM_VIEW) {
    return `Table ${table.name} has a ${table.streamViewType} stream, not ` +
      `${REQUIRED_STREAM_VIEW}: the usage aggregator cannot read a change's consumption and ` +
      "reports every bucket record as malformed; to fix, disable the stream and enable it again " +
      `as NEW_AND_OLD_IMAGES (aws dynamodb update-table --stream-specification) ${redeploy}`;
  }
  return undefined;
}
