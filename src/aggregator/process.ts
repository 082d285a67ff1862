/**
 * The aggregator's work on one batch of stream records, shared by the Lambda handler and the
 * local stream reader: usage snapshots, and the resource index (GSI2) of bucket items.
 *
 * **Idempotent per record.** A stream delivers the records of one item in order (Lambda keeps
 * that order per item, across shard splits and with a parallelization factor). A snapshot stores,
 * per bucket item that feeds it, the highest sequence number applied from that item (`seq`, 40
 * digits padded; `seq_{i}_{N}` for shard `i` of `N` of a sharded bucket, whose items all count
 * under the bucket's resource), so the records it holds of an item are always a prefix of that
 * item's, and every update is conditioned on that item's `seq` being below its first record: a
 * record delivered twice is skipped.
 *
 * **One write per run.** Consecutive records of an item in the same window are summed into one
 * update (`seq` = the last). When its condition fails, the refused write returns the stored
 * `seq`, and only the records after it are written. A run summing to zero is still written, so
 * that its `seq` advances.
 *
 * **Namespaces.** The stream carries every namespace's records: a bucket's namespace is read from
 * its partition key (`NS#{namespace}#…`, src/keyspace.ts), and its snapshots and resource-index
 * keys are written in that namespace.
 *
 * **Never swallowed.** When a snapshot's write fails, that window type takes no more records of
 * the item (a later record would raise `seq` past the failed one and turn its retry into a
 * no-op, losing it). The batch's first record not yet in every snapshot is returned in
 * `batchItemFailures`, so Lambda retries from there (what follows it is skipped as already
 * applied) and finally sends the batch to the dead-letter queue.
 *
 * **Malformed records fail too.** A bucket record whose consumption cannot be read (a MODIFY
 * without `OldImage`, an INSERT or MODIFY without `NewImage`, a `u_*`, `rq` or `ts` that is not a
 * whole number, an unknown `eventName`) stops its item there like a failed write: it is reported,
 * never counted as zero and never skipped. A record that is not even an object with
 * `dynamodb.Keys` belongs to no item and fails alone; when the first failure has no sequence
 * number, the identifier is `""`, which Lambda takes as the failure of the whole batch.
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import type * as aws from "../aws_types.ts";
import { TTL } from "../keys.ts";
import {
  bucketOf,
  type BucketStreamRecord,
  CONSUMED_PREFIX,
  type Consumption,
  consumptionOf,
  isoSeconds,
  MalformedRecordError,
  padSequence,
  sequenceOf,
  shapeProblem,
  usageSk,
  type UsageWindow,
  windowAt,
} from "./snapshot.ts";

/**
 * Settings of {@link processRecords}.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { type ProcessOptions, processRecords } from "./process.ts";
 * const client = new DynamoDBClient({ region: "us-east-1" });
 * const options: ProcessOptions = { client, tableName: "rate_limits", retentionDays: 30,
 *   windows: ["daily"] };
 * const result = await processRecords([], options); // nothing to write: no DynamoDB call
 * console.assert(result.records === 0);
 * client.destroy();
 * ```
 */
export interface ProcessOptions {
  /** The client writing snapshots. */
  client: aws.DynamoDBClient;
  /** The rate-limit table (buckets and snapshots live in it). */
  tableName: string;
  /** Days a snapshot is kept after its window ends (its `ttl`). @default 90 */
  retentionDays?: number;
  /** Window types to maintain. @default ["hourly", "daily"] */
  windows?: readonly UsageWindow[];
  /** Items processed in parallel (records of one item are always sequential). @default 16 */
  concurrency?: number;
}

/**
 * What {@link processRecords} did.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { processRecords, type ProcessResult } from "./process.ts";
 * const client = new DynamoDBClient({ region: "us-east-1" });
 * // A record of an entity's metadata item: not a bucket, so nothing to aggregate.
 * const result: ProcessResult = await processRecords([{ eventName: "INSERT", dynamodb: {
 *   Keys: { PK: { S: "ENTITY#proj-1" }, SK: { S: "#META" } }, SequenceNumber: "100" } }], {
 *   client,
 *   tableName: "rate_limits",
 * });
 * console.assert(result.records === 1 && result.consumptions === 0);
 * console.assert(result.batchItemFailures.length === 0);
 * client.destroy();
 * ```
 */
export interface ProcessResult {
  /**
   * The first record that failed (batch order), for Lambda's ReportBatchItemFailures; its
   * identifier is `""` when that record has no sequence number (Lambda retries the whole batch).
   */
  batchItemFailures: { itemIdentifier: string }[];
  /** Records read. */
  records: number;
  /** Records that carried consumption. */
  consumptions: number;
  /** Snapshot updates written (one per run of records of a bucket in the same window). */
  snapshotWrites: number;
  /** (record, window type) pairs skipped because the snapshot already held the record. */
  duplicates: number;
  /** Bucket items added to the resource index. */
  indexed: number;
  /** The errors of the failed records, first first. */
  errors: { sequenceNumber: string; error: unknown }[];
}

/**
 * Applies a batch of stream records of the rate-limit table: the consumption of each bucket
 * record is added to its entity's hourly and daily snapshots, and bucket items missing from the
 * resource index get their GSI2 keys. Failures are returned, never swallowed.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { processRecords } from "./process.ts";
 * const result = await processRecords(event.Records, {
 *   client: new DynamoDBClient({}),
 *   tableName: "rate_limits",
 * });
 * return { batchItemFailures: result.batchItemFailures };
 * ```
 */
export async function processRecords(
  records: readonly BucketStreamRecord[],
  options: ProcessOptions,
): Promise<ProcessResult> {
  const {
    client,
    tableName,
    retentionDays = 90,
    windows = ["hourly", "daily"],
    concurrency = 16,
  } = options;
  if (!Array.isArray(records)) {
    throw new TypeError(
      `Invalid records: ${typeof records} (must be an array of DynamoDB stream records)`,
    );
  }
  if (!(Number.isFinite(retentionDays) && retentionDays > 0)) {
    throw new Error(`Invalid retentionDays: ${retentionDays} (must be a number > 0)`);
  }
  const result: ProcessResult = {
    batchItemFailures: [],
    records: records.length,
    consumptions: 0,
    snapshotWrites: 0,
    duplicates: 0,
    indexed: 0,
    errors: [],
  };

  const failures: { index: number; sequenceNumber: string; error: unknown }[] = [];
  // Records of one item, in stream order; items are independent of one another. A record that
  // cannot be told apart (no object, no keys) fails alone: it belongs to no item.
  const groups = new Map<string, { index: number; record: BucketStreamRecord }[]>();
  records.forEach((record, index) => {
    const problem = shapeProblem(record);
    if (problem !== undefined) {
      const sequenceNumber = sequenceOf(record);
      failures.push({
        index,
        sequenceNumber,
        error: new MalformedRecordError(sequenceNumber, problem),
      });
      return;
    }
    const bucket = bucketOf(record.dynamodb?.Keys);
    if (bucket === undefined) return;
    // Per item: a sharded bucket's items are ordered each on its own.
    const key = `${bucket.space.name}\u0000${bucket.entityId}\u0000${bucket.resource}\u0000` +
      bucket.seqAttr;
    const list = groups.get(key) ?? [];
    list.push({ index, record });
    groups.set(key, list);
  });

  const runGroup = async (list: { index: number; record: BucketStreamRecord }[]) => {
    let indexDone = list.some((r) => r.record.dynamodb?.NewImage?.GSI2PK !== undefined);
    // Consecutive records of the item that fall in the same window make one write per window.
    const pending = new Map<UsageWindow, Run>();
    // A window type whose write failed takes no more records of this item: a later record would
    // raise the snapshot's seq past the failed one and make its retry a no-op. Other window
    // types are other snapshots and go on.
    const stopped = new Map<UsageWindow, { index: number; error: unknown }>();
    const flush = async (run: Run) => {
      try {
        const out = await applyRun(client, tableName, run, retentionDays);
        result.snapshotWrites += out.writes;
        result.duplicates += out.skipped;
      } catch (error) {
        stopped.set(run.window, { index: run.entries[0].index, error });
      }
    };
    let current = list[0].index;
    let fatal: { index: number; error: unknown } | undefined;
    try {
      for (const { index, record } of list) {
        current = index;
        const seq = padSequence(sequenceOf(record));
        const consumption = consumptionOf(record);
        if (consumption !== undefined) {
          result.consumptions++;
          for (const window of windows) {
            if (stopped.has(window)) continue;
            const { startMs } = windowAt(window, consumption.atMs);
            const run = pending.get(window);
            if (run !== undefined && run.startMs !== startMs) {
              pending.delete(window);
              await flush(run);
              if (stopped.has(window)) continue;
            }
            const next = pending.get(window) ?? { window, startMs, entries: [] };
            next.entries.push({ index, seq, consumption });
            pending.set(window, next);
          }
        }
        if (!indexDone && record.eventName !== "REMOVE" && record.dynamodb?.NewImage) {
          if (await indexBucket(client, tableName, record.dynamodb.Keys!)) result.indexed++;
          indexDone = true;
        }
      }
    } catch (error) {
      // A record that cannot be read, or a failed index write: the item stops at this record
      // (what is pending holds only earlier records, and is still written below).
      fatal = { index: current, error };
    }
    for (const [window, run] of pending) {
      pending.delete(window);
      await flush(run);
    }
    // Lambda retries from the earliest record that is not yet in every snapshot.
    const first = [...stopped.values(), ...(fatal ? [fatal] : [])]
      .sort((a, b) => a.index - b.index)[0];
    if (first !== undefined) {
      failures.push({
        index: first.index,
        sequenceNumber: sequenceOf(records[first.index]),
        error: first.error,
      });
    }
  };

  const queue = [...groups.values()];
  const workers = Array.from(
    { length: Math.max(1, Math.min(concurrency, queue.length)) },
    async () => {
      for (let list = queue.shift(); list !== undefined; list = queue.shift()) {
        await runGroup(list);
      }
    },
  );
  await Promise.all(workers);

  failures.sort((a, b) => a.index - b.index);
  result.errors = failures.map(({ sequenceNumber, error }) => ({ sequenceNumber, error }));
  if (failures.length > 0) {
    result.batchItemFailures = [{ itemIdentifier: failures[0].sequenceNumber }];
  }
  return result;
}

/** Records of one bucket item, in stream order, that fall in the same snapshot. */
export interface Run {
  /** The window type. */
  window: UsageWindow;
  /** Start of the window, epoch ms. */
  startMs: number;
  /** The records: batch position, padded sequence number, consumption. */
  entries: { index: number; seq: string; consumption: Consumption }[];
}

/**
 * Adds a run of records to their snapshot in one write, conditioned on none of them being in it
 * yet (`seq` below the first). When the condition fails, the snapshot's `seq` (returned by the
 * failed write) tells which records it already holds, and the rest is written the same way.
 * A run whose amounts sum to zero is still written: its `seq` must advance, or a retry starting
 * inside the run would apply its tail alone.
 */
export async function applyRun(
  client: DynamoDBClient,
  tableName: string,
  run: Run,
  retentionDays: number,
): Promise<{ writes: number; skipped: number }> {
  const { space, entityId, resource, seqAttr } = run.entries[0].consumption;
  const endMs = windowAt(run.window, run.startMs).endMs;
  const windowStart = isoSeconds(run.startMs);
  let entries = run.entries;
  let skipped = 0;
  while (entries.length > 0) {
    const consumed = new Map<string, bigint>();
    let requests = 0n;
    for (const { consumption } of entries) {
      for (const [limit, d] of consumption.consumed) {
        consumed.set(limit, (consumed.get(limit) ?? 0n) + d);
      }
      requests += consumption.requests;
    }
    const names: Record<string, string> = {
      "#e": "entityId",
      "#r": "resource",
      "#w": "window",
      "#ws": "windowStart",
      "#we": "windowEnd",
      "#ttl": TTL,
      "#seq": seqAttr,
      "#rq": "rq",
    };
    const values: Record<string, AttributeValue> = {
      ":e": { S: entityId },
      ":r": { S: resource },
      ":w": { S: run.window },
      ":ws": { S: windowStart },
      ":we": { S: isoSeconds(endMs) },
      ":ttl": { N: String(Math.floor(endMs / 1000) + Math.round(retentionDays * 86_400)) },
      ":seq": { S: entries[entries.length - 1].seq },
      ":first": { S: entries[0].seq },
      ":rq": { N: requests.toString() },
    };
    const adds = ["#rq :rq"];
    let i = 0;
    for (const [limit, delta] of consumed) {
      names[`#c${i}`] = `${CONSUMED_PREFIX}${limit}`;
      values[`:c${i}`] = { N: delta.toString() };
      adds.push(`#c${i} :c${i}`);
      i++;
    }
    try {
      await client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: {
            PK: { S: space.entityPk(entityId) },
            SK: { S: usageSk(resource, run.window, windowStart) },
          },
          UpdateExpression:
            "SET #e = :e, #r = :r, #w = :w, #ws = :ws, #we = :we, #ttl = :ttl, #seq = :seq " +
            `ADD ${adds.join(", ")}`,
          ConditionExpression: "attribute_not_exists(#seq) OR #seq < :first",
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return { writes: 1, skipped };
    } catch (err) {
      if (!isConditionalFailure(err)) throw err;
      const stored = (err as { Item?: Record<string, AttributeValue> }).Item?.[seqAttr]?.S;
      if (stored === undefined) {
        throw new Error(
          `Snapshot ${usageSk(resource, run.window, windowStart)} of ${entityId} refused the ` +
            "update but returned no seq",
          { cause: err },
        );
      }
      const rest = entries.filter((e) => e.seq > stored);
      skipped += entries.length - rest.length;
      entries = rest;
    }
  }
  return { writes: 0, skipped };
}

/**
 * Adds a bucket item to the resource index (GSI2), if it still exists and is not indexed yet.
 * Returns whether it wrote.
 */
export async function indexBucket(
  client: DynamoDBClient,
  tableName: string,
  keys: Record<string, AttributeValue>,
): Promise<boolean> {
  const bucket = bucketOf(keys);
  if (bucket === undefined) return false;
  try {
    await client.send(
      new UpdateItemCommand({
        TableName: tableName,
        Key: { PK: { S: bucket.space.entityPk(bucket.entityId) }, SK: keys.SK },
        UpdateExpression: "SET GSI2PK = :p, GSI2SK = :s",
        ConditionExpression: "attribute_exists(PK) AND attribute_not_exists(GSI2PK)",
        ExpressionAttributeValues: {
          ":p": { S: bucket.space.resourceKey(bucket.resource) },
          ":s": { S: bucket.space.entityPk(bucket.entityId) },
        },
      }),
    );
    return true;
  } catch (err) {
    if (isConditionalFailure(err)) return false;
    throw err;
  }
}

/** By name: in Lambda the SDK is the runtime's copy, so `instanceof` is not to be relied on. */
function isConditionalFailure(err: unknown): boolean {
  return err instanceof Error && err.name === "ConditionalCheckFailedException";
}
