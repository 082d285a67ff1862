/**
 * Pure usage-snapshot math: which consumption a stream record of a bucket item carries, the
 * windows it falls in, and the snapshot keys. No I/O here.
 *
 * | item           | PK            | SK                                              |
 * |----------------|---------------|-------------------------------------------------|
 * | usage snapshot | `ENTITY#{id}` | `#USAGE#{resource}#{window}#{windowStartIso}`   |
 *
 * `windowStartIso` has whole seconds and no fraction, e.g. `2026-11-28T13:00:00Z`, so keys sort
 * by time. The window type is part of the key: the hourly snapshot of 00:00 and the daily one are
 * different items.
 *
 * @module
 */

import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type * as aws from "../aws_types.ts";
import { BUCKET_PREFIX, entityIdOf, REQUESTS, USAGE_PREFIX, WRITTEN_AT } from "../keys.ts";

/**
 * A snapshot window type.
 *
 * @example
 * ```ts
 * import type { UsageWindow } from "./snapshot.ts";
 * const windows: UsageWindow[] = ["hourly", "daily"];
 * console.assert(windows.includes("daily"));
 * ```
 */
export type UsageWindow = "hourly" | "daily";

/** Every window type, shortest first. */
export const USAGE_WINDOWS: readonly UsageWindow[] = ["hourly", "daily"];

const WINDOW_MS: Record<UsageWindow, number> = { hourly: 3_600_000, daily: 86_400_000 };

/** Attribute prefix of a snapshot's consumed amount per limit (thousandths of a token). */
export const CONSUMED_PREFIX = "c_";
/** Snapshot attribute holding the highest applied stream sequence number (40 digits, padded). */
export const SEQUENCE = "seq";

/** Whether `value` names a window type. */
export function isUsageWindow(value: unknown): value is UsageWindow {
  return value === "hourly" || value === "daily";
}

/** Length of a window type in ms. */
export function windowMs(window: UsageWindow): number {
  return WINDOW_MS[window];
}

/** Epoch ms as `YYYY-MM-DDTHH:MM:SSZ` (UTC, no fraction). */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19) + "Z";
}

/** The window of type `window` that contains the instant `ms`: start and end in epoch ms (UTC). */
export function windowAt(window: UsageWindow, ms: number): { startMs: number; endMs: number } {
  const len = WINDOW_MS[window];
  const startMs = Math.floor(ms / len) * len;
  return { startMs, endMs: startMs + len };
}

/** Sort key of a usage snapshot. */
export function usageSk(resource: string, window: UsageWindow, windowStartIso: string): string {
  return `${USAGE_PREFIX}${resource}#${window}#${windowStartIso}`;
}

/** Sort-key prefix of an entity's snapshots, narrowed to a resource and a window type. */
export function usagePrefix(resource?: string, window?: UsageWindow): string {
  if (resource === undefined) return USAGE_PREFIX;
  return window === undefined
    ? `${USAGE_PREFIX}${resource}#`
    : `${USAGE_PREFIX}${resource}#${window}#`;
}

/**
 * A stream sequence number as a 40-character zero-padded string, so that string order is
 * numeric order (DynamoDB Streams sequence numbers are 21 to 40 decimal digits).
 */
export function padSequence(sequenceNumber: string): string {
  if (!/^[0-9]{1,40}$/.test(sequenceNumber)) {
    throw new Error(
      `Invalid stream SequenceNumber: ${
        JSON.stringify(sequenceNumber)
      } (must be 1-40 decimal digits)`,
    );
  }
  return sequenceNumber.padStart(40, "0");
}

/** The consumption one stream record of a bucket item carries. */
export interface Consumption {
  /** Entity of the bucket. */
  entityId: string;
  /** Resource of the bucket. */
  resource: string;
  /** When it was consumed (the write's `ts`), epoch ms. */
  atMs: number;
  /** Change of each limit's consumed total, thousandths of a token (negative for rollbacks). */
  consumed: Map<string, bigint>;
  /** Change of the request count (−1 for a rollback). */
  requests: bigint;
}

/**
 * The parts of a stream record the aggregator reads (Lambda events and GetRecords agree).
 *
 * @example
 * ```ts
 * import type { BucketStreamRecord } from "./snapshot.ts";
 * // key-1 took 500 tpm on gpt-4 (consumption totals are kept in thousandths, `u_<limit>`).
 * const record: BucketStreamRecord = {
 *   eventName: "MODIFY",
 *   dynamodb: {
 *     Keys: { PK: { S: "ENTITY#key-1" }, SK: { S: "#BUCKET#gpt-4" } },
 *     OldImage: { u_tpm: { N: "1000000" }, rq: { N: "3" } },
 *     NewImage: { u_tpm: { N: "1500000" }, rq: { N: "4" }, ts: { N: "1764331200000" } },
 *     SequenceNumber: "4200",
 *   },
 * };
 * console.assert(record.dynamodb?.Keys?.SK.S?.startsWith("#BUCKET#"));
 * ```
 */
export interface BucketStreamRecord {
  /** `INSERT`, `MODIFY` or `REMOVE`. */
  eventName?: string;
  /** The change. */
  dynamodb?: {
    /** Key of the item. */
    Keys?: Record<string, aws.AttributeValue>;
    /** The item after the change. */
    NewImage?: Record<string, aws.AttributeValue>;
    /** The item before the change. */
    OldImage?: Record<string, aws.AttributeValue>;
    /** Sequence number of the record in its shard. */
    SequenceNumber?: string;
    /** Epoch seconds (Lambda events) or a Date (the SDK). */
    ApproximateCreationDateTime?: number | Date;
  };
}

/** The (entity, resource) of a bucket item's key, or `undefined` when the item is no bucket. */
export function bucketOf(
  keys: Record<string, AttributeValue> | undefined,
): { entityId: string; resource: string } | undefined {
  const pk = keys?.PK?.S, sk = keys?.SK?.S;
  if (pk === undefined || sk === undefined || !sk.startsWith(BUCKET_PREFIX)) return undefined;
  const entityId = entityIdOf(pk);
  const resource = sk.slice(BUCKET_PREFIX.length);
  if (entityId === undefined || resource === "") return undefined;
  return { entityId, resource };
}

/**
 * The consumption a record carries: per limit `new.u_n − old.u_n` (an absent old value is 0),
 * requests `new.rq − old.rq`, at `new.ts`. `undefined` for a record of another item type, a
 * `REMOVE` (TTL expiry, deletion: no consumption), or a write that changed no total (e.g. the
 * aggregator's own index write).
 */
export function consumptionOf(record: BucketStreamRecord): Consumption | undefined {
  if (record.eventName !== "INSERT" && record.eventName !== "MODIFY") return undefined;
  const bucket = bucketOf(record.dynamodb?.Keys);
  const next = record.dynamodb?.NewImage;
  if (bucket === undefined || next === undefined) return undefined;
  const prev = record.dynamodb?.OldImage ?? {};
  const consumed = new Map<string, bigint>();
  for (const [name, value] of Object.entries(next)) {
    if (!name.startsWith("u_") || value.N === undefined) continue;
    const delta = BigInt(value.N) - numberOf(prev[name]);
    if (delta !== 0n) consumed.set(name.slice(2), delta);
  }
  const requests = numberOf(next[REQUESTS]) - numberOf(prev[REQUESTS]);
  if (consumed.size === 0 && requests === 0n) return undefined;
  return { ...bucket, atMs: timeOf(record), consumed, requests };
}

function numberOf(value: AttributeValue | undefined): bigint {
  return value?.N === undefined ? 0n : BigInt(value.N);
}

/** The write's own time (`ts`), else the stream's approximate creation time. */
function timeOf(record: BucketStreamRecord): number {
  const ts = record.dynamodb?.NewImage?.[WRITTEN_AT]?.N;
  if (ts !== undefined) return Number(ts);
  const approx = record.dynamodb?.ApproximateCreationDateTime;
  if (approx instanceof Date) return approx.getTime();
  if (typeof approx === "number") return approx * 1000;
  throw new Error(
    `Stream record ${record.dynamodb?.SequenceNumber ?? "?"} has neither ${WRITTEN_AT} ` +
      `nor ApproximateCreationDateTime: cannot tell its window`,
  );
}
