/**
 * {@link AuditedWriter}: the one way the admin stores write an item with its audit event. The
 * namespace is registered first; a change and its event go in one transaction whose request token
 * is the event id, so a resend after a lost answer is applied once.
 *
 * @module
 */

import {
  DeleteItemCommand,
  type DynamoDBClient,
  PutItemCommand,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { auditItem, type AuditRecord } from "./audit_record.ts";
import { send } from "./calls.ts";
import { KeySpace } from "./keyspace.ts";
import { NamespaceRegistration } from "./namespaces.ts";

/**
 * Writes one item alone, or with its audit event in one transaction ({@link AuditedWriter.write}).
 *
 * @example
 * ```ts
 * import type { AuditedWrite } from "./audited_write.ts";
 * const writes: string[] = [];
 * const write: AuditedWrite = async (op) => {
 *   writes.push(op.Put ? "put" : "other");
 * };
 * await write({ Put: { TableName: "t", Item: {} } }, undefined);
 * console.assert(writes.join() === "put");
 * ```
 */
export type AuditedWrite = (
  op: TransactWriteItem,
  audit: AuditRecord | undefined,
  signal?: AbortSignal,
) => Promise<void>;

/**
 * Audited writes to one table, in one namespace.
 *
 * @example
 * ```ts ignore
 * import { AuditedWriter } from "./audited_write.ts";
 * const writer = new AuditedWriter(client, "rate_limits", KeySpace.DEFAULT, registration);
 * await writer.write({ Put: { TableName: "rate_limits", Item: item } }, audit);
 * ```
 */
export class AuditedWriter {
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #keys: KeySpace;
  readonly #registration: NamespaceRegistration;

  /**
   * @param client DynamoDB client. @param tableName Table. @param space The namespace's keys.
   * @param registration Registers the namespace before the first write.
   */
  constructor(
    client: DynamoDBClient,
    tableName: string,
    space: KeySpace = KeySpace.DEFAULT,
    registration = new NamespaceRegistration(client, tableName, space),
  ) {
    this.#client = client;
    this.#table = tableName;
    this.#keys = space;
    this.#registration = registration;
  }

  /**
   * Writes `op` (one Put, Update or Delete, without its table) alone, or with `audit` in one
   * transaction (idempotent under retries: the event id is the request token). A failed condition
   * of `op` throws an error named `ConditionalCheckFailedException` either way.
   */
  async write(op: TransactWriteItem, audit?: AuditRecord, signal?: AbortSignal): Promise<void> {
    await this.#registration.ensure(signal);
    const TableName = this.#table;
    if (!audit) {
      if (op.Put) await send(this.#client, PutItemCommand, { ...op.Put, TableName }, signal);
      else if (op.Update) {
        await send(this.#client, UpdateItemCommand, { ...op.Update, TableName }, signal);
      } else if (op.Delete) {
        await send(this.#client, DeleteItemCommand, { ...op.Delete, TableName }, signal);
      } else throw new TypeError("a write is a Put, an Update or a Delete");
      return;
    }
    try {
      await this.transact([op], audit, signal);
    } catch (err) {
      if (
        err instanceof TransactionCanceledException &&
        err.CancellationReasons?.[0]?.Code === "ConditionalCheckFailed"
      ) {
        const failed = new Error("the condition of the write failed");
        failed.name = "ConditionalCheckFailedException";
        throw failed;
      }
      throw err;
    }
  }

  /**
   * Writes `ops` (without their table) and the event of `audit` (when given; last) in one
   * transaction. A failed condition throws the `TransactionCanceledException`, its reasons in the
   * order of `ops`.
   */
  async transact(
    ops: TransactWriteItem[],
    audit?: AuditRecord,
    signal?: AbortSignal,
  ): Promise<void> {
    const TableName = this.#table;
    const items = ops.map((op): TransactWriteItem =>
      op.Put
        ? { Put: { ...op.Put, TableName } }
        : op.Update
        ? { Update: { ...op.Update, TableName } }
        : op.Delete
        ? { Delete: { ...op.Delete, TableName } }
        : { ConditionCheck: { ...op.ConditionCheck!, TableName } }
    );
    if (audit) items.push({ Put: { TableName, Item: auditItem(audit, this.#keys) } });
    await this.#registration.ensure(signal);
    await send(
      this.#client,
      TransactWriteItemsCommand,
      { TransactItems: items, ...(audit ? { ClientRequestToken: audit.eventId } : {}) },
      signal,
    );
  }
}
