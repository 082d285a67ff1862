/**
 * DynamoDB I/O: the table, and every write path's expressions, built in one place.
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

const WC = keys.WRITES;

/** An attribute name that can stand in an expression as it is (never a reserved word). */
const BARE_NAME = /^[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]*$/;

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

  /** Builds the UpdateItem input of a bucket write. */
  buildUpdate(w: BucketWrite): Update & { ReturnValuesOnConditionCheckFailure: "ALL_OLD" } {
    const names: Record<string, string> = {};
    const values: Record<string, AttributeValue> = {};
    // `ts`, `wc` and `rq` are no reserved words: they stand bare (a smaller request).
    const sets: string[] = [`${keys.WRITTEN_AT} = :ts`];
    const adds: string[] = [];
    const conds: string[] = [];
    const removes: string[] = [];
    values[":ts"] = num(w.nowMs);
    // Names with an underscore and only letters, digits and underscores are never reserved words:
    // they go in the expression as they are (a smaller request); others get a placeholder.
    let placeholders = 0;
    const ref = (name: string): string => {
      if (BARE_NAME.test(name)) return name;
      const p = `#a${placeholders++}`;
      names[p] = name;
      return p;
    };
    // Exactly once: no receipt of this operation yet (a resent or late copy finds one), and the
    // item has not passed the operation's write-count bound (past it, the receipt may be gone).
    const receipt = ref(keys.receiptAttr(w.opId));
    values[":wb"] = num(w.maxWrites);
    values[":one"] = { N: "1" };
    let rcpt = ":wb";
    if (w.cancel) {
      values[":rcpt"] = num(-w.maxWrites);
      rcpt = ":rcpt";
    }
    conds.push(
      `attribute_not_exists(${receipt})`,
      // An item the writer knows exists has a write count (should it have expired since, the
      // failure returns no item and the writer plans again without this shortcut).
      w.itemExists ? `${WC} < :wb` : `(attribute_not_exists(${WC}) OR ${WC} < :wb)`,
    );
    sets.push(`${receipt} = ${rcpt}`);
    adds.push(`${WC} :one`);
    for (const id of w.sweep ?? []) removes.push(ref(keys.receiptAttr(id)));
    w.ops.forEach((op, i) => {
      if (op.kind === "slotTake" || op.kind === "slotFree") {
        slotExpression(op, i, ref, values, conds, sets, adds, removes);
        return;
      }
      if (op.kind === "credit") {
        // Paid by the credit: the tat is left alone (see docs/design.md, "Credit").
        const c = ref(keys.attr.credit(op.name));
        values[`:c${i}`] = num(op.min);
        conds.push(`${c} >= :c${i}`);
        if (op.take > 0n) {
          values[`:v${i}`] = num(op.take);
          sets.push(`${c} = ${c} - :v${i}`);
        }
        return;
      }
      const t = ref(keys.attr.tat(op.name));
      const k = ref(keys.attr.spec(op.name));
      values[`:k${i}`] = { S: op.key };
      if (op.kind === "quota" || op.kind === "quotaSub") {
        quotaExpression(op, i, t, k, ref(keys.attr.window(op.name)), values, conds, sets);
        return;
      }
      switch (op.kind) {
        case "fromNow":
          values[`:n${i}`] = num(op.n);
          values[`:v${i}`] = num(op.newTat);
          if (op.known) {
            // Stricter than the general form, and `k_n` already holds `:k`: a shorter write.
            conds.push(`${k} = :k${i} AND ${t} <= :n${i}`);
            sets.push(`${t} = :v${i}`);
          } else {
            conds.push(`(attribute_not_exists(${t}) OR (${k} = :k${i} AND ${t} <= :n${i}))`);
            sets.push(`${t} = :v${i}`, `${k} = :k${i}`);
          }
          break;
        case "addBounded":
          values[`:n${i}`] = num(op.n);
          values[`:m${i}`] = num(op.max);
          values[`:v${i}`] = num(op.add);
          conds.push(`(${k} = :k${i} AND ${t} BETWEEN :n${i} AND :m${i})`);
          sets.push(`${t} = ${t} + :v${i}`);
          break;
        case "add":
          values[`:n${i}`] = num(op.n);
          values[`:v${i}`] = num(op.add);
          conds.push(`(${k} = :k${i} AND ${t} >= :n${i})`);
          sets.push(`${t} = ${t} + :v${i}`);
          break;
        case "sub":
          values[`:v${i}`] = num(op.sub);
          conds.push(`(${k} = :k${i} AND attribute_exists(${t}))`);
          sets.push(`${t} = ${t} - :v${i}`);
          break;
        case "cas":
          values[`:v${i}`] = num(op.newTat);
          if (op.expectTat === undefined) {
            conds.push(`attribute_not_exists(${t})`);
          } else {
            values[`:e${i}`] = num(op.expectTat);
            values[`:x${i}`] = { S: op.expectKey ?? "" };
            conds.push(`(${k} = :x${i} AND ${t} = :e${i})`);
          }
          sets.push(`${t} = :v${i}`, `${k} = :k${i}`);
          break;
      }
    });
    let u = 0;
    for (const [name, delta] of w.used) {
      if (delta === 0n) continue;
      values[`:u${u}`] = num(delta);
      adds.push(`${ref(keys.attr.used(name))} :u${u}`);
      u++;
    }
    if (w.requests !== 0) {
      if (w.requests === 1) {
        adds.push(`${keys.REQUESTS} :one`);
      } else {
        values[":rq"] = { N: String(w.requests) };
        adds.push(`${keys.REQUESTS} :rq`);
      }
    }
    if (w.ttlSec !== undefined) {
      names["#ttl"] = keys.TTL;
      values[":ttl"] = num(w.ttlSec);
      sets.push(w.ttlIfMissing ? "#ttl = if_not_exists(#ttl, :ttl)" : "#ttl = :ttl");
    }
    return {
      TableName: this.tableName,
      Key: this.#keys.itemKey(w.entityId, keys.bucketSk(w.resource)),
      UpdateExpression: `SET ${sets.join(", ")}` + (adds.length ? ` ADD ${adds.join(", ")}` : "") +
        (removes.length ? ` REMOVE ${removes.join(", ")}` : ""),
      ConditionExpression: conds.length ? conds.join(" AND ") : undefined,
      ExpressionAttributeNames: Object.keys(names).length > 0 ? names : undefined,
      ExpressionAttributeValues: values,
      ReturnValuesOnConditionCheckFailure: "ALL_OLD",
    };
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

/** A quota's part of a bucket write (see docs/design.md, "Quotas"). */
function quotaExpression(
  op: Extract<LimitOp, { kind: "quota" | "quotaSub" }>,
  i: number,
  t: string,
  k: string,
  w: string,
  values: Record<string, AttributeValue>,
  conds: string[],
  sets: string[],
): void {
  if (op.kind === "quotaSub") {
    values[`:w${i}`] = num(op.window);
    values[`:v${i}`] = num(op.sub);
    conds.push(`(${k} = :k${i} AND ${w} = :w${i} AND ${t} >= :v${i})`);
    sets.push(`${t} = ${t} - :v${i}`);
    return;
  }
  values[`:l${i}`] = num(op.lo);
  values[`:v${i}`] = num(op.add);
  if (op.same) {
    if (op.max === undefined) {
      conds.push(`(${k} = :k${i} AND ${w} >= :l${i})`);
    } else {
      values[`:m${i}`] = num(op.max);
      conds.push(`(${k} = :k${i} AND ${w} >= :l${i} AND ${t} <= :m${i})`);
    }
    sets.push(`${t} = ${t} + :v${i}`);
    return;
  }
  values[`:w${i}`] = num(op.start);
  conds.push(`(attribute_not_exists(${w}) OR ${w} < :l${i} OR ${k} <> :k${i})`);
  sets.push(`${w} = :w${i}`, `${t} = :v${i}`, `${k} = :k${i}`);
}

/** A concurrent limit's part of a bucket write (see docs/design.md, "Concurrency limits"). */
function slotExpression(
  op: Extract<LimitOp, { kind: "slotTake" | "slotFree" }>,
  i: number,
  ref: (name: string) => string,
  values: Record<string, AttributeValue>,
  conds: string[],
  sets: string[],
  adds: string[],
  removes: string[],
): void {
  const held = ref(keys.attr.held(op.name));
  const slot = ref(keys.attr.slot(op.name, op.id));
  if (op.kind === "slotFree") {
    values[":dec"] = { N: "-1" };
    conds.push(`attribute_exists(${slot})`);
    removes.push(slot);
    adds.push(`${held} :dec`);
    return;
  }
  values[`:m${i}`] = num(op.max);
  values[`:v${i}`] = num(op.exp);
  conds.push(`(attribute_not_exists(${held}) OR ${held} < :m${i})`);
  if (op.reclaim.length > 0) {
    values[`:n${i}`] = num(op.now);
    for (const id of op.reclaim) {
      const old = ref(keys.attr.slot(op.name, id));
      conds.push(`${old} < :n${i}`);
      removes.push(old);
    }
  }
  sets.push(`${slot} = :v${i}`);
  const d = 1 - op.reclaim.length;
  if (d !== 0) {
    values[`:d${i}`] = { N: String(d) };
    adds.push(`${held} :d${i}`);
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

function num(n: bigint): AttributeValue {
  return { N: n.toString() };
}
