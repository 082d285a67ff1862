/**
 * The aggregator's work on one batch of stream records, shared by the Lambda handler and the
 * local stream reader: usage snapshots, and the resource index (GSI2) of bucket items.
 *
 * **Idempotent per record.** A snapshot is fed by exactly one bucket item (same entity and
 * resource), and a stream delivers the records of one item in order. Each snapshot stores the
 * highest sequence number applied to it (`seq`, 40 digits padded) and each update is conditioned
 * on `seq < :seq`: a record delivered twice fails the condition and is skipped.
 *
 * **Never swallowed.** A record that cannot be applied stops its item's records (a later record
 * of the same item would raise `seq` past it and make its retry a no-op, losing it) and is
 * reported as the batch's first failure (`batchItemFailures`), so Lambda retries from there and
 * finally sends the batch to the dead-letter queue.
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { entityPk, resourceKey, TTL } from "../keys.ts";
import {
  bucketOf,
  type BucketStreamRecord,
  CONSUMED_PREFIX,
  type Consumption,
  consumptionOf,
  isoSeconds,
  padSequence,
  SEQUENCE,
  usageSk,
  type UsageWindow,
  windowAt,
} from "./snapshot.ts";

/** Settings of {@link processRecords}. */
export interface ProcessOptions {
  /** The client writing snapshots. */
  client: DynamoDBClient;
  /** The rate-limit table (buckets and snapshots live in it). */
  tableName: string;
  /** Days a snapshot is kept after its window ends (its `ttl`). @default 90 */
  retentionDays?: number;
  /** Window types to maintain. @default ["hourly", "daily"] */
  windows?: readonly UsageWindow[];
  /** Items processed in parallel (records of one item are always sequential). @default 16 */
  concurrency?: number;
}

/** What {@link processRecords} did. */
export interface ProcessResult {
  /** The first record that failed (batch order), for Lambda's ReportBatchItemFailures. */
  batchItemFailures: { itemIdentifier: string }[];
  /** Records read. */
  records: number;
  /** Records that carried consumption. */
  consumptions: number;
  /** Snapshot updates written. */
  snapshotWrites: number;
  /** Snapshot updates skipped because the record was already applied. */
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

  // Records of one item, in stream order; items are independent of one another.
  const groups = new Map<string, { index: number; record: BucketStreamRecord }[]>();
  records.forEach((record, index) => {
    const bucket = bucketOf(record.dynamodb?.Keys);
    if (bucket === undefined) return;
    const key = `${bucket.entityId}\u0000${bucket.resource}`;
    const list = groups.get(key) ?? [];
    list.push({ index, record });
    groups.set(key, list);
  });

  const failures: { index: number; sequenceNumber: string; error: unknown }[] = [];
  const runGroup = async (list: { index: number; record: BucketStreamRecord }[]) => {
    let indexDone = list.some((r) => r.record.dynamodb?.NewImage?.GSI2PK !== undefined);
    for (const { index, record } of list) {
      const sequenceNumber = record.dynamodb?.SequenceNumber ?? "";
      try {
        const seq = padSequence(sequenceNumber);
        const consumption = consumptionOf(record);
        if (consumption !== undefined) {
          result.consumptions++;
          for (const window of windows) {
            const applied = await writeSnapshot(client, tableName, consumption, window, seq, {
              retentionDays,
            });
            if (applied) result.snapshotWrites++;
            else result.duplicates++;
          }
        }
        if (!indexDone && record.eventName !== "REMOVE" && record.dynamodb?.NewImage) {
          if (await indexBucket(client, tableName, record.dynamodb.Keys!)) result.indexed++;
          indexDone = true;
        }
      } catch (error) {
        failures.push({ index, sequenceNumber, error });
        return; // later records of this item must wait for this one
      }
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

/**
 * Adds one record's consumption to its snapshot of one window type, unless the snapshot already
 * holds this record (or a later one of the same bucket). Returns whether it was applied.
 */
export async function writeSnapshot(
  client: DynamoDBClient,
  tableName: string,
  consumption: Consumption,
  window: UsageWindow,
  seq: string,
  options: { retentionDays: number },
): Promise<boolean> {
  const { startMs, endMs } = windowAt(window, consumption.atMs);
  const windowStart = isoSeconds(startMs);
  const names: Record<string, string> = {
    "#e": "entityId",
    "#r": "resource",
    "#w": "window",
    "#ws": "windowStart",
    "#we": "windowEnd",
    "#ttl": TTL,
    "#seq": SEQUENCE,
    "#rq": "rq",
  };
  const values: Record<string, AttributeValue> = {
    ":e": { S: consumption.entityId },
    ":r": { S: consumption.resource },
    ":w": { S: window },
    ":ws": { S: windowStart },
    ":we": { S: isoSeconds(endMs) },
    ":ttl": { N: String(Math.floor(endMs / 1000) + Math.round(options.retentionDays * 86_400)) },
    ":seq": { S: seq },
    ":rq": { N: consumption.requests.toString() },
  };
  const adds = ["#rq :rq"];
  let i = 0;
  for (const [limit, delta] of consumption.consumed) {
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
          PK: { S: entityPk(consumption.entityId) },
          SK: { S: usageSk(consumption.resource, window, windowStart) },
        },
        UpdateExpression:
          "SET #e = :e, #r = :r, #w = :w, #ws = :ws, #we = :we, #ttl = :ttl, #seq = :seq " +
          `ADD ${adds.join(", ")}`,
        ConditionExpression: "attribute_not_exists(#seq) OR #seq < :seq",
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      }),
    );
    return true;
  } catch (err) {
    if (isConditionalFailure(err)) return false;
    throw err;
  }
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
        Key: { PK: { S: entityPk(bucket.entityId) }, SK: keys.SK },
        UpdateExpression: "SET GSI2PK = :p, GSI2SK = :s",
        ConditionExpression: "attribute_exists(PK) AND attribute_not_exists(GSI2PK)",
        ExpressionAttributeValues: {
          ":p": { S: resourceKey(bucket.resource) },
          ":s": { S: entityPk(bucket.entityId) },
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
