/**
 * Pure usage-snapshot math: which consumption a stream record of a bucket item carries, the
 * windows it falls in, and the snapshot keys. No I/O here.
 *
 * | item           | PK            | SK                                              |
 * |----------------|---------------|-------------------------------------------------|
 * | usage snapshot | `ENTITY#{id}` | `#USAGE#{resource}#{window}#{windowStartIso}`   |
 *
 * In a namespace, the PK is prefixed `NS#{namespace}#` (src/keyspace.ts): a snapshot is written in
 * the namespace of the bucket it counts.
 *
 * `windowStartIso` has whole seconds and no fraction, e.g. `2026-11-28T13:00:00Z`, so keys sort
 * by time. The window type is part of the key: the hourly snapshot of 00:00 and the daily one are
 * different items.
 *
 * @module
 */

import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type * as aws from "../aws_types.ts";
import { KeySpace } from "../keyspace.ts";
import {
  BUCKET_PREFIX,
  entityIdOf,
  parseShardResource,
  REQUESTS,
  USAGE_PREFIX,
  WRITTEN_AT,
} from "../keys.ts";
import { escapeControls } from "../validate.ts";

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
  /** The namespace's keys of the bucket (its snapshots go to the same namespace). */
  space: KeySpace;
  /** Entity of the bucket. */
  entityId: string;
  /** Resource of the bucket (a shard's: its bucket's). */
  resource: string;
  /** The snapshot attribute that holds the sequence of the item the record is of. */
  seqAttr: string;
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

/**
 * The (namespace, entity, resource) of a bucket item's key, or `undefined` when the item is no
 * bucket. A
 * shard's item (`#BUCKET#{resource}#{i}/{N}`) is its bucket's resource; `seqAttr` names the
 * attribute of the snapshot that holds the item's sequence (`seq`, or `seq_{i}_{N}` for a shard:
 * sequence numbers of different items are not comparable).
 */
export function bucketOf(
  keys: Record<string, AttributeValue> | undefined,
): { space: KeySpace; entityId: string; resource: string; seqAttr: string } | undefined {
  const pk = keys?.PK?.S, sk = keys?.SK?.S;
  if (pk === undefined || sk === undefined || !sk.startsWith(BUCKET_PREFIX)) return undefined;
  const parsed = KeySpace.parse(pk);
  if (parsed === undefined) return undefined;
  const entityId = entityIdOf(parsed.local);
  const stored = sk.slice(BUCKET_PREFIX.length);
  const shard = parseShardResource(stored);
  const resource = shard?.resource ?? stored;
  if (entityId === undefined || resource === "") return undefined;
  const seqAttr = shard ? `${SEQUENCE}_${shard.index}_${shard.count}` : SEQUENCE;
  return { space: parsed.space, entityId, resource, seqAttr };
}

/**
 * A stream record the aggregator cannot read: its consumption is unknown, so it is reported as a
 * batch item failure (retried, then sent to the dead-letter queue), never counted or skipped.
 *
 * @example
 * ```ts
 * import { consumptionOf, MalformedRecordError } from "./snapshot.ts";
 * const keys = { PK: { S: "ENTITY#key-1" }, SK: { S: "#BUCKET#gpt-4" } };
 * try {
 *   consumptionOf({ eventName: "MODIFY", dynamodb: { Keys: keys, NewImage: keys, SequenceNumber: "7" } });
 * } catch (err) {
 *   console.assert(err instanceof MalformedRecordError && err.sequenceNumber === "7");
 * }
 * ```
 */
export class MalformedRecordError extends Error {
  /** The record's sequence number, `""` when it has none. */
  readonly sequenceNumber: string;

  /**
   * @param sequenceNumber The record's sequence number, `""` when it has none.
   * @param problem What is wrong, e.g. `a MODIFY without OldImage`.
   */
  constructor(sequenceNumber: string, problem: string) {
    super(`Stream record ${sequenceNumber || "(no SequenceNumber)"} is malformed: ${problem}`);
    this.name = "MalformedRecordError";
    this.sequenceNumber = sequenceNumber;
  }
}

/** The record's sequence number when it is a string, else `""`. */
export function sequenceOf(record: unknown): string {
  const seq = (record as BucketStreamRecord | null | undefined)?.dynamodb?.SequenceNumber;
  return typeof seq === "string" ? seq : "";
}

/**
 * Why a record cannot even be grouped by item (not an object, no `dynamodb`, no `Keys`), or
 * `undefined` when its shape is fine.
 */
export function shapeProblem(record: unknown): string | undefined {
  if (!isObject(record)) return `the record is ${shown(record)}, not an object`;
  const change = (record as BucketStreamRecord).dynamodb;
  if (!isObject(change)) return `its dynamodb is ${shown(change)}, not an object`;
  if (!isObject(change.Keys)) return `its dynamodb.Keys is ${shown(change.Keys)}, not an object`;
  return undefined;
}

/**
 * The consumption a record carries: per limit `new.u_n − old.u_n` (absent from an INSERT's old
 * image: 0), requests `new.rq − old.rq`, at `new.ts`. `undefined` for a record of another item
 * type, a `REMOVE` (TTL expiry, deletion: no consumption), or a write that changed no total (e.g.
 * the aggregator's own index write).
 *
 * Throws {@link MalformedRecordError} for a bucket record it cannot read: an unknown
 * `eventName`, an INSERT or MODIFY without `NewImage`, a MODIFY without `OldImage` (a stream
 * that is not `NEW_AND_OLD_IMAGES`), a `u_*`, `rq` or `ts` that is not a whole number
 * (`{ N: "…" }`), or a `u_*` that the new image lost.
 */
export function consumptionOf(record: BucketStreamRecord): Consumption | undefined {
  const bucket = bucketOf(record.dynamodb?.Keys);
  if (bucket === undefined) return undefined;
  const seq = sequenceOf(record);
  const bad = (problem: string) => new MalformedRecordError(seq, problem);
  const event = record.eventName;
  if (event === "REMOVE") return undefined;
  if (event !== "INSERT" && event !== "MODIFY") {
    throw bad(`eventName ${shown(event)} is none of INSERT, MODIFY, REMOVE`);
  }
  const next = record.dynamodb?.NewImage;
  if (!isObject(next)) {
    throw bad(
      `${
        event === "INSERT" ? "an" : "a"
      } ${event} without NewImage (the stream must be NEW_AND_OLD_IMAGES)`,
    );
  }
  const old = record.dynamodb?.OldImage;
  if (event === "MODIFY" && !isObject(old)) {
    throw bad("a MODIFY without OldImage (the stream must be NEW_AND_OLD_IMAGES)");
  }
  const prev = event === "MODIFY" ? old! : {};
  const consumed = new Map<string, bigint>();
  const names = new Set([...Object.keys(prev), ...Object.keys(next)]);
  for (const name of names) {
    if (!name.startsWith("u_")) continue;
    if (name.length === 2) throw bad(`attribute "u_" names no limit`);
    if (name in prev && !(name in next)) {
      throw bad(`${fieldName(name)} is in OldImage but not in NewImage`);
    }
    const delta = wholeNumber(next, "NewImage", name, bad) -
      wholeNumber(prev, "OldImage", name, bad);
    if (delta !== 0n) consumed.set(name.slice(2), delta);
  }
  const requests = wholeNumber(next, "NewImage", REQUESTS, bad) -
    wholeNumber(prev, "OldImage", REQUESTS, bad);
  if (consumed.size === 0 && requests === 0n) return undefined;
  return { ...bucket, atMs: timeOf(record, bad), consumed, requests };
}

/** An image's whole-number attribute (`{ N: "-12" }`); absent is 0, anything else throws. */
function wholeNumber(
  image: Record<string, AttributeValue>,
  which: string,
  name: string,
  bad: (problem: string) => Error,
): bigint {
  if (!Object.hasOwn(image, name)) return 0n;
  const value = image[name] as unknown;
  // Exactly one type member set (the SDK may leave the others as undefined).
  const members = isObject(value) ? Object.values(value).filter((v) => v !== undefined) : [];
  const n = members.length === 1 ? (value as { N?: unknown }).N : undefined;
  if (typeof n !== "string" || !/^-?[0-9]{1,38}$/.test(n)) {
    throw bad(`${which}.${fieldName(name)} is ${shown(value)}, not a whole number ({"N": "…"})`);
  }
  return BigInt(n);
}

/** The write's own time (`ts`), else the stream's approximate creation time. */
function timeOf(record: BucketStreamRecord, bad: (problem: string) => Error): number {
  const next = record.dynamodb!.NewImage!;
  if (Object.hasOwn(next, WRITTEN_AT)) {
    const ms = Number(wholeNumber(next, "NewImage", WRITTEN_AT, bad));
    if (ms < 0 || ms >= 253_402_300_800_000) {
      throw bad(`NewImage.${WRITTEN_AT} is ${ms}, not an epoch-ms time in years 1970-9999`);
    }
    return ms;
  }
  const approx = record.dynamodb?.ApproximateCreationDateTime;
  if (approx instanceof Date && Number.isFinite(approx.getTime())) return approx.getTime();
  if (typeof approx === "number" && Number.isFinite(approx) && approx >= 0) return approx * 1000;
  throw bad(
    `it has neither NewImage.${WRITTEN_AT} nor ApproximateCreationDateTime: cannot tell its window`,
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A value for a message: JSON, cut to 80 characters. */
function shown(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = Object.prototype.toString.call(value);
  }
  s = escapeControls(s);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** An attribute name for a message: as is when plain, else quoted and cut. */
function fieldName(name: string): string {
  return /^[A-Za-z0-9_.-]{1,70}$/.test(name) ? name : shown(name);
}
