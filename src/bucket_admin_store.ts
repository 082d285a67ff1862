/**
 * DynamoDB side of the bucket admin changes (reset, top-up): one `TransactWriteItems` with an
 * `Update` (or a `ConditionCheck` for an item that must still be missing) per bucket item, the
 * idempotency record's conditional `Put`, and the audit event's `Put`.
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from "@aws-sdk/client-dynamodb";
import { auditItem, type AuditRecord } from "./audit_record.ts";
import type { AdminBucketChange, AdminOutcome } from "./bucket_items.ts";
import { send } from "./calls.ts";
import * as keys from "./keys.ts";
import { KeySpace } from "./keyspace.ts";

/** The transaction items of `change` (its audit event last). */
export function adminTransactItems(
  tableName: string,
  change: AdminBucketChange,
  audit?: AuditRecord,
  space: KeySpace = KeySpace.DEFAULT,
): TransactWriteItem[] {
  const out: TransactWriteItem[] = [];
  for (const item of change.items) {
    const Key = space.itemKey(change.entityId, keys.bucketSk(item.resource));
    if (!item.exists && !item.credit) {
      out.push({
        ConditionCheck: {
          TableName: tableName,
          Key,
          ConditionExpression: "attribute_not_exists(PK)",
        },
      });
      continue;
    }
    const names: Record<string, string> = {};
    const values: Record<string, AttributeValue> = { ":w": { N: "1" } };
    // With credit the item may be missing (it is created) and its TTL rises to keep the credit,
    // never lowered: a TTL raised meanwhile past it (a debt) refuses the change, read again.
    const conds = item.credit
      ? ["(attribute_not_exists(#ttl) OR #ttl <= :ttl)"]
      : ["attribute_exists(PK)"];
    const sets: string[] = [];
    const adds: string[] = [];
    const removes: string[] = [];
    if (item.credit) {
      names["#ttl"] = keys.TTL;
      values[":ttl"] = { N: item.credit.ttlSec.toString() };
      values[":w"] = { N: item.credit.writes.toString() };
      sets.push("#ttl = :ttl");
    }
    item.ops.forEach((op, i) => {
      if (op.kind === "credit") {
        names[`#c${i}`] = keys.attr.credit(op.name);
        values[`:c${i}`] = { N: op.add.toString() };
        adds.push(`#c${i} :c${i}`);
        return;
      }
      const t = `#t${i}`;
      names[t] = keys.attr.tat(op.name);
      switch (op.kind) {
        case "refill":
          // A quota's window start goes too: its next use opens a new, full window.
          names[`#w${i}`] = keys.attr.window(op.name);
          removes.push(t, `#w${i}`);
          break;
        case "give":
          names[`#k${i}`] = keys.attr.spec(op.name);
          values[`:k${i}`] = { S: op.key };
          values[`:n${i}`] = { N: op.min.toString() };
          values[`:v${i}`] = { N: op.sub.toString() };
          conds.push(`(#k${i} = :k${i} AND ${t} >= :n${i})`);
          sets.push(`${t} = ${t} - :v${i}`);
          break;
      }
    });
    // Every write to a bucket item counts in its write count (see "Exactly once"); one adding
    // credit adds `credit.writes`, so that every write planned before it
    // is refused and replanned from an item that shows the credit (see "Credit").
    adds.push(`${keys.WRITES} :w`);
    const update = (sets.length ? `SET ${sets.join(", ")} ` : "") + `ADD ${adds.join(", ")}` +
      (removes.length ? ` REMOVE ${removes.join(", ")}` : "");
    out.push({
      Update: {
        TableName: tableName,
        Key,
        UpdateExpression: update,
        ConditionExpression: conds.join(" AND "),
        ExpressionAttributeNames: Object.keys(names).length ? names : undefined,
        ExpressionAttributeValues: values,
      },
    });
  }
  if (change.marker) {
    const { resource, key, expiresAtSec } = change.marker;
    out.push({
      Put: {
        TableName: tableName,
        Item: {
          ...space.itemKey(change.entityId, keys.topUpSk(resource, key)),
          [keys.TTL]: { N: String(expiresAtSec) },
        },
        ConditionExpression: "attribute_not_exists(PK)",
      },
    });
  }
  if (audit) out.push({ Put: { TableName: tableName, Item: auditItem(audit, space) } });
  return out;
}

/** Writes `change` and its audit event in one transaction. */
export async function writeAdminChange(
  client: DynamoDBClient,
  tableName: string,
  change: AdminBucketChange,
  audit?: AuditRecord,
  signal?: AbortSignal,
  space: KeySpace = KeySpace.DEFAULT,
): Promise<AdminOutcome> {
  const items = adminTransactItems(tableName, change, audit, space);
  if (items.length === 0) return { ok: true };
  try {
    await send(
      client,
      TransactWriteItemsCommand,
      // The event id makes resends of the same transaction idempotent.
      { TransactItems: items, ...(audit ? { ClientRequestToken: audit.eventId } : {}) },
      signal,
    );
    return { ok: true };
  } catch (err) {
    if (!(err instanceof TransactionCanceledException)) throw err;
    const reasons = err.CancellationReasons ?? [];
    const failed = (i: number) => reasons[i]?.Code === "ConditionalCheckFailed";
    if (change.marker && failed(change.items.length)) return { ok: false, reason: "repeated" };
    if (change.items.some((_, i) => failed(i))) return { ok: false, reason: "changed" };
    throw err;
  }
}
