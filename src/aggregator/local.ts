/**
 * The usage aggregator without AWS Lambda: reads a table's DynamoDB Stream (e.g. DynamoDB Local's)
 * and applies it with the same processing as the Lambda handler, so snapshots and the resource
 * index appear during local development (`zae-limiter aggregate --endpoint-url …`).
 *
 * Reading again from the start of the stream (TRIM_HORIZON, the default) is safe: processing is
 * idempotent per record (each snapshot keeps the highest sequence number applied to it), so
 * records already applied are skipped. Pass the returned `positions` back to continue after them.
 *
 * @module
 */

import { DescribeTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type Shard,
  type ShardIteratorType,
} from "@aws-sdk/client-dynamodb-streams";
import process from "node:process";
import type * as aws from "../aws_types.ts";
import { processRecords } from "./process.ts";
import type { BucketStreamRecord, UsageWindow } from "./snapshot.ts";

/**
 * Options of {@link aggregateLocal}.
 *
 * @example
 * ```ts ignore
 * import { aggregateLocal, type AggregateLocalOptions } from "./local.ts";
 * // Follow the stream of a DynamoDB Local table until Ctrl-C.
 * const stop = new AbortController();
 * process.on("SIGINT", () => stop.abort());
 * const options: AggregateLocalOptions = { tableName: "rate_limits",
 *   endpoint: "http://localhost:8000", follow: true, signal: stop.signal };
 * await aggregateLocal(options);
 * ```
 */
export interface AggregateLocalOptions {
  /** The rate-limit table. */
  tableName: string;
  /** A DynamoDB client; wins over `endpoint` and `region`. */
  client?: aws.DynamoDBClient;
  /** A DynamoDB Streams client. @default one for `endpoint` and `region` */
  streamsClient?: aws.DynamoDBStreamsClient;
  /** Endpoint URL, e.g. `http://localhost:8000`. */
  endpoint?: string;
  /** AWS region. @default the SDK's chain, or `"us-east-1"` with an `endpoint` */
  region?: string;
  /** Start each new shard at its oldest record (TRIM_HORIZON) rather than its newest. @default true */
  fromStart?: boolean;
  /** Shard id → last sequence number applied, from an earlier run: continue after it. */
  positions?: Record<string, string>;
  /** Days a snapshot is kept after its window ends. @default 90 */
  retentionDays?: number;
  /** Window types to maintain. @default ["hourly", "daily"] */
  windows?: readonly UsageWindow[];
  /** Records asked for per GetRecords call (1-1000). @default 1000 */
  batchSize?: number;
  /** Keep polling for new records until `signal` aborts. @default false */
  follow?: boolean;
  /** Pause between polls when following, ms. @default 1000 */
  pollIntervalMs?: number;
  /** Stops a following reader. */
  signal?: AbortSignal;
}

/**
 * What {@link aggregateLocal} did.
 *
 * @example
 * ```ts ignore
 * import { aggregateLocal } from "./local.ts";
 * const first = await aggregateLocal({ tableName: "rate_limits", endpoint: "http://localhost:8000" });
 * // Later: only what was written since.
 * const next = await aggregateLocal({ tableName: "rate_limits", endpoint: "http://localhost:8000",
 *   positions: first.positions });
 * console.log(`${next.records} new records, ${next.snapshotWrites} snapshot writes`);
 * ```
 */
export interface AggregateLocalResult {
  /** Shards read. */
  shards: number;
  /** Stream records read. */
  records: number;
  /** Records that carried consumption. */
  consumptions: number;
  /** Snapshot updates written. */
  snapshotWrites: number;
  /** Snapshot updates skipped as already applied. */
  duplicates: number;
  /** Bucket items added to the resource index. */
  indexed: number;
  /** Shard id → last sequence number applied; pass it back as `positions` to continue. */
  positions: Record<string, string>;
}

/**
 * Reads the table's stream up to its newest record (or, with `follow`, until `signal` aborts)
 * and applies every record like the Lambda handler does. A record that cannot be applied throws
 * (with the record's sequence number); `positions` stays at the last record applied.
 *
 * @example
 * ```ts ignore
 * import { aggregateLocal } from "./local.ts";
 * const result = await aggregateLocal({ tableName: "rate_limits", endpoint: "http://localhost:8000" });
 * console.log(`${result.records} records, ${result.snapshotWrites} snapshot updates`);
 * ```
 */
export async function aggregateLocal(
  options: AggregateLocalOptions,
): Promise<AggregateLocalResult> {
  const {
    tableName,
    endpoint,
    region,
    fromStart = true,
    retentionDays = 90,
    windows = ["hourly", "daily"],
    batchSize = 1000,
    follow = false,
    pollIntervalMs = 1000,
    signal,
  } = options;
  if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new Error(
      `Invalid tableName: ${
        JSON.stringify(tableName)
      } (must be 3-255 characters of letters, digits, _ . -)`,
    );
  }
  if (!(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 1000)) {
    throw new Error(`Invalid batchSize: ${batchSize} (must be a whole number from 1 to 1000)`);
  }
  const config = clientConfig(endpoint, region);
  const client = options.client ?? new DynamoDBClient(config);
  const streams = options.streamsClient ??
    new DynamoDBStreamsClient(options.client ? sameTarget(options.client) : config);
  const result: AggregateLocalResult = {
    shards: 0,
    records: 0,
    consumptions: 0,
    snapshotWrites: 0,
    duplicates: 0,
    indexed: 0,
    positions: { ...options.positions },
  };
  const iterators = new Map<string, string | null>(); // null: shard closed and read to its end
  try {
    const table = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const streamArn = table.Table?.LatestStreamArn;
    if (!streamArn || table.Table?.StreamSpecification?.StreamEnabled === false) {
      throw new Error(`Table ${tableName} has no stream enabled: nothing to aggregate`);
    }
    for (;;) {
      const shards = parentsFirst(await listShards(streams, streamArn));
      for (const shard of shards) {
        const shardId = shard.ShardId!;
        if (iterators.get(shardId) === null) continue;
        let iterator = iterators.get(shardId) ??
          await shardIterator(streams, streamArn, shardId, result.positions[shardId], fromStart);
        while (iterator) {
          if (signal?.aborted) break; // a follower stops between pages
          const page = await streams.send(
            new GetRecordsCommand({ ShardIterator: iterator, Limit: batchSize }),
          );
          const records = (page.Records ?? []) as BucketStreamRecord[];
          iterator = page.NextShardIterator;
          if (records.length > 0) {
            const out = await processRecords(records, {
              client,
              tableName,
              retentionDays,
              windows,
            });
            result.records += out.records;
            result.consumptions += out.consumptions;
            result.snapshotWrites += out.snapshotWrites;
            result.duplicates += out.duplicates;
            result.indexed += out.indexed;
            if (out.errors.length > 0) {
              const { sequenceNumber, error } = out.errors[0];
              // Records before the first failure are applied; later ones are retried next run.
              const failedAt = records.findIndex((r) =>
                r.dynamodb?.SequenceNumber === sequenceNumber
              );
              const lastGood = records[failedAt - 1]?.dynamodb?.SequenceNumber;
              if (lastGood !== undefined) result.positions[shardId] = lastGood;
              throw new Error(
                `Stream record ${
                  sequenceNumber || "(no SequenceNumber)"
                } of shard ${shardId} could not be applied: ${
                  error instanceof Error ? error.message : String(error)
                }`,
                { cause: error },
              );
            }
            result.positions[shardId] = records[records.length - 1].dynamodb!.SequenceNumber!;
          } else break; // at the newest record of an open shard
        }
        iterators.set(shardId, iterator ?? null);
      }
      result.shards = iterators.size;
      if (!follow || signal?.aborted) break;
      await sleep(pollIntervalMs, signal);
      if (signal?.aborted) break;
    }
  } finally {
    if (options.client === undefined) client.destroy();
    if (options.streamsClient === undefined) streams.destroy();
  }
  return result;
}

function clientConfig(endpoint: string | undefined, region: string | undefined) {
  const env = process.env;
  const local = endpoint !== undefined;
  const haveCreds = env.AWS_ACCESS_KEY_ID !== undefined || env.AWS_PROFILE !== undefined;
  return {
    endpoint,
    region: region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (local ? "us-east-1" : undefined),
    ...(local && !haveCreds
      ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  };
}

/** A Streams client config reaching the same endpoint, region and credentials as `client`. */
function sameTarget(client: DynamoDBClient) {
  const c = client.config;
  return {
    region: c.region,
    credentials: c.credentials,
    ...(c.isCustomEndpoint && c.endpoint ? { endpoint: c.endpoint } : {}),
  };
}

async function listShards(streams: DynamoDBStreamsClient, streamArn: string): Promise<Shard[]> {
  const shards: Shard[] = [];
  let start: string | undefined;
  do {
    const out = await streams.send(
      new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: start }),
    );
    shards.push(...(out.StreamDescription?.Shards ?? []));
    start = out.StreamDescription?.LastEvaluatedShardId;
  } while (start);
  return shards;
}

/** Orders shards so that a parent comes before its children (records of an item stay in order). */
function parentsFirst(shards: Shard[]): Shard[] {
  const byId = new Map(shards.map((s) => [s.ShardId!, s]));
  const out: Shard[] = [];
  const seen = new Set<string>();
  const visit = (s: Shard) => {
    if (seen.has(s.ShardId!)) return;
    seen.add(s.ShardId!);
    const parent = s.ParentShardId ? byId.get(s.ParentShardId) : undefined;
    if (parent) visit(parent);
    out.push(s);
  };
  shards.forEach(visit);
  return out;
}

async function shardIterator(
  streams: DynamoDBStreamsClient,
  streamArn: string,
  shardId: string,
  after: string | undefined,
  fromStart: boolean,
): Promise<string | undefined> {
  const type: ShardIteratorType = after !== undefined
    ? "AFTER_SEQUENCE_NUMBER"
    : fromStart
    ? "TRIM_HORIZON"
    : "LATEST";
  const out = await streams.send(
    new GetShardIteratorCommand({
      StreamArn: streamArn,
      ShardId: shardId,
      ShardIteratorType: type,
      SequenceNumber: after,
    }),
  );
  return out.ShardIterator;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
