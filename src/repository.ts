/**
 * DynamoDB I/O: the table and the bucket items (a bucket write's expression is built by
 * `bucket_update.ts`).
 *
 * @module
 */

import {
  type AttributeValue,
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  type Update,
  UpdateItemCommand,
  type UpdateItemCommandOutput,
} from "@aws-sdk/client-dynamodb";
import { type Item, queryPages, send, untilProcessed } from "./calls.ts";
import * as keys from "./keys.ts";
import { KeySpace } from "./keyspace.ts";
import { createTable, tableDefinition, tableStatus } from "./table.ts";
import type { AuditRecord } from "./audit_record.ts";
import { writeAdminChange } from "./bucket_admin_store.ts";
import { bucketUpdate, num } from "./bucket_update.ts";
import { NamespaceRegistration } from "./namespaces.ts";
import type {
  AdminBucketChange,
  AdminOutcome,
  BucketWrite,
  LimitOp,
  StoredBucket,
  StoredLimit,
  WriteOutcome,
} from "./bucket_items.ts";

export { tableDefinition };
export type { BucketWrite, LimitOp, StoredBucket, StoredLimit, WriteOutcome };
import type { LeanTransport } from "./transport/lean.ts";
import type { Telemetry } from "./telemetry.ts";

/** Options of {@link Repository}. */
export interface RepositoryOptions {
  /** The client to use. */
  client: DynamoDBClient;
  /** Table name. */
  tableName: string;
  /** Sends the hot-path calls (bucket writes and reads) instead of the client's SDK stack. */
  transport?: LeanTransport;
  /** The namespace's keys. @default the default namespace ({@link KeySpace.DEFAULT}) */
  keys?: KeySpace;
  /** Spans and metrics of the hot-path calls (`telemetry.ts`). @default none */
  telemetry?: Telemetry;
}

/** DynamoDB access for one table. */
export class Repository {
  /** The DynamoDB client. */
  readonly client: DynamoDBClient;
  /** The table. */
  readonly tableName: string;
  readonly #lean?: LeanTransport;
  readonly #telemetry?: Telemetry;
  /** The namespace's keys: every partition key is built through it. */
  readonly #keys: KeySpace;
  #registration?: NamespaceRegistration;

  /** @param options Client and table. */
  constructor(options: RepositoryOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.#keys = options.keys ?? KeySpace.DEFAULT;
    this.#lean = options.transport;
    this.#telemetry = options.telemetry;
  }

  /** Runs one hot-path call, measured and traced when the limiter has telemetry. */
  #measured<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    return this.#telemetry ? this.#telemetry.dynamo(operation, fn) : fn();
  }

  /** Builds the UpdateItem input of a bucket write (see bucket_update.ts). */
  buildUpdate(w: BucketWrite): Update & { ReturnValuesOnConditionCheckFailure: "ALL_OLD" } {
    return bucketUpdate(w, this.tableName, this.#keys);
  }

  /** One conditional UpdateItem; on a failed condition, the item as it was. */
  async writeBucket(w: BucketWrite, signal?: AbortSignal): Promise<WriteOutcome> {
    try {
      const input = { ...this.buildUpdate(w), ReturnValues: "ALL_NEW" } as const;
      type Out = Pick<UpdateItemCommandOutput, "Attributes" | "$metadata">;
      // The type given: inferred from either branch, it depends on the order of checking.
      const out = await this.#measured<Out>(
        "UpdateItem",
        () =>
          this.#lean
            ? this.#lean.send("UpdateItem", input, signal)
            : send(this.client, UpdateItemCommand, input, signal),
      );
      return {
        ok: true,
        item: out.Attributes ? parseBucket(out.Attributes) : undefined,
        // A client of the caller's own may have sent earlier copies: the operation is in doubt.
        retried: (out.$metadata.attempts ?? 1) > 1,
      };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        return {
          ok: false,
          old: err.Item ? parseBucket(err.Item) : undefined,
          known: true,
          // An earlier attempt of the caller's own client may still land: in doubt.
          retried: (err.$metadata?.attempts ?? 1) > 1,
        };
      }
      throw err;
    }
  }

  /**
   * Writes several bucket items atomically (one TransactWriteItems). On a failed condition,
   * `olds[i]` is the item as it was for each item whose condition failed.
   */
  async transactBuckets(
    writes: BucketWrite[],
    signal?: AbortSignal,
  ): Promise<{ ok: true; retried?: boolean } | { ok: false; olds: WriteOutcome[] }> {
    try {
      const input = { TransactItems: writes.map((w) => ({ Update: this.buildUpdate(w) })) };
      const out = await this.#measured<{ $metadata: { attempts?: number } }>(
        "TransactWriteItems",
        () =>
          this.#lean
            ? this.#lean.send("TransactWriteItems", input, signal)
            : send(this.client, TransactWriteItemsCommand, input, signal),
      );
      return { ok: true, retried: (out.$metadata.attempts ?? 1) > 1 };
    } catch (err) {
      if (
        err instanceof TransactionCanceledException &&
        (err.CancellationReasons ?? []).some((r) => r.Code === "ConditionalCheckFailed")
      ) {
        const retried = (err.$metadata?.attempts ?? 1) > 1;
        const olds = (err.CancellationReasons ?? []).map((r): WriteOutcome =>
          r.Code === "ConditionalCheckFailed"
            ? { ok: false, old: r.Item ? parseBucket(r.Item) : undefined, known: true, retried }
            : { ok: true }
        );
        return { ok: false, olds };
      }
      throw err;
    }
  }

  /** Reads one bucket item (strongly consistent). */
  async getBucket(
    entityId: string,
    resource: string,
    signal?: AbortSignal,
  ): Promise<StoredBucket | undefined> {
    const input = {
      TableName: this.tableName,
      Key: this.#keys.itemKey(entityId, keys.bucketSk(resource)),
      ConsistentRead: true,
    };
    const out = await this.#measured<{ Item?: Record<string, AttributeValue> }>(
      "GetItem",
      () =>
        this.#lean
          ? this.#lean.send("GetItem", input, signal)
          : send(this.client, GetItemCommand, input, signal),
    );
    return out.Item ? parseBucket(out.Item) : undefined;
  }

  /** An admin change to bucket items (reset, top-up) with its audit event, in one transaction. */
  async adminWrite(
    change: AdminBucketChange,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<AdminOutcome> {
    // An admin change registers the namespace (src/namespaces.ts), as entity changes do.
    this.#registration ??= new NamespaceRegistration(this.client, this.tableName, this.#keys);
    await this.#registration.ensure(signal);
    return await writeAdminChange(this.client, this.tableName, change, audit, signal, this.#keys);
  }

  /** Raises a bucket's TTL to `ttlSec` (never lowers it; a missing item is left alone). */
  async raiseTtl(
    entityId: string,
    resource: string,
    ttlSec: bigint,
    signal?: AbortSignal,
  ): Promise<void> {
    try {
      await send(this.client, UpdateItemCommand, {
        TableName: this.tableName,
        Key: this.#keys.itemKey(entityId, keys.bucketSk(resource)),
        UpdateExpression: "SET #ttl = :ttl",
        ConditionExpression: "attribute_exists(PK) AND (attribute_not_exists(#ttl) OR #ttl < :ttl)",
        ExpressionAttributeNames: { "#ttl": keys.TTL },
        ExpressionAttributeValues: { ":ttl": num(ttlSec) },
      }, signal);
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
  }

  /**
   * Every bucket of a resource listed in the resource index (GSI2), all pages (or the first
   * `limit` entries), read in batches.
   */
  async resourceBuckets(
    resource: string,
    signal?: AbortSignal,
    limit = Infinity,
  ): Promise<{ entityId: string; bucket: StoredBucket }[]> {
    const keysFound: Item[] = [];
    for await (
      const items of queryPages(this.client, {
        TableName: this.tableName,
        IndexName: keys.GSI2,
        KeyConditionExpression: "GSI2PK = :r",
        ExpressionAttributeValues: { ":r": { S: this.#keys.resourceKey(resource) } },
        ...(Number.isFinite(limit) ? { Limit: Math.min(limit, 1000) } : {}),
      }, signal)
    ) {
      for (const item of items) keysFound.push({ PK: item.PK, SK: item.SK });
      if (keysFound.length >= limit) break;
    }
    keysFound.length = Math.min(keysFound.length, limit);
    const out: { entityId: string; bucket: StoredBucket }[] = [];
    for (let i = 0; i < keysFound.length; i += 100) {
      await untilProcessed(
        keysFound.slice(i, i + 100),
        async (left) => {
          const res = await send(
            this.client,
            BatchGetItemCommand,
            { RequestItems: { [this.tableName]: { Keys: left } } },
            signal,
          );
          for (const item of res.Responses?.[this.tableName] ?? []) {
            const entityId = this.#keys.entityIdOf(item.PK.S ?? "");
            if (entityId !== undefined) out.push({ entityId, bucket: parseBucket(item) });
          }
          return res.UnprocessedKeys?.[this.tableName]?.Keys;
        },
        10,
        500,
      );
    }
    return out.sort((a, b) => (a.entityId < b.entityId ? -1 : a.entityId > b.entityId ? 1 : 0));
  }

  /** Whether the table exists and is active. */
  tableStatus(signal?: AbortSignal): Promise<string | undefined> {
    return tableStatus(this.client, this.tableName, signal);
  }

  /**
   * Creates the table with its indexes, TTL and stream when it is missing, and waits until it is
   * active. Another process creating it at the same moment is fine.
   */
  createTable(options: { timeoutMs?: number } = {}): Promise<void> {
    return createTable(this.client, this.tableName, options);
  }
}

/** Parses the limit states of a bucket item. */
export function parseBucket(item: Record<string, AttributeValue>): StoredBucket {
  const limits = new Map<string, StoredLimit>();
  const receipts = new Map<string, bigint>();
  const entry = (limit: string) => {
    let e = limits.get(limit);
    if (!e) limits.set(limit, e = {});
    return e;
  };
  for (const name in item) {
    const value = item[name];
    if (name.startsWith("t_") && value.N !== undefined) {
      entry(name.slice(2)).tat = BigInt(value.N);
    } else if (name.startsWith("k_") && value.S !== undefined) {
      entry(name.slice(2)).key = value.S;
    } else if (name.startsWith("c_") && value.N !== undefined) {
      entry(name.slice(2)).credit = BigInt(value.N);
    } else if (name.startsWith("w_") && value.N !== undefined) {
      entry(name.slice(2)).window = BigInt(value.N);
    } else if (name.startsWith("cc_") && value.N !== undefined) {
      entry(name.slice(3)).held = BigInt(value.N);
    } else if (name.startsWith("s_") && value.N !== undefined) {
      // `s_{limit}_{opId}`: an operation id has no underscore, a limit name may.
      const cut = name.lastIndexOf("_");
      const e = entry(name.slice(2, cut));
      (e.slots ??= new Map()).set(name.slice(cut + 1), BigInt(value.N));
    } else if (name.startsWith(keys.RECEIPT_PREFIX) && value.N !== undefined) {
      receipts.set(name.slice(keys.RECEIPT_PREFIX.length), BigInt(value.N));
    }
  }
  const ttl = item[keys.TTL]?.N;
  const wc = item[keys.WRITES]?.N;
  return {
    limits,
    ttl: ttl === undefined ? undefined : BigInt(ttl),
    receipts,
    writes: wc === undefined ? undefined : BigInt(wc),
  };
}
