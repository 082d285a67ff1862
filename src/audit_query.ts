/**
 * Reading audit events from the table: one Query, newest first (`PK = AUDIT` read backwards, or
 * GSI1 `AUDIT#ENTITY#{id}` for one entity), `since` as a key condition, a resource as a filter.
 * And the table's audit settings (`SYSTEM / #CONFIG`, written by `zae-limiter deploy`).
 *
 * @module
 */

import {
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  type QueryCommandInput,
} from "@aws-sdk/client-dynamodb";
import { KeySpace } from "./keyspace.ts";
import { type AuditRecord, auditScopeKey, auditSk, parseAuditItem } from "./audit_record.ts";
import { type Item, send } from "./calls.ts";

/** A validated query of audit events, as a backend runs it. */
export interface AuditQuery {
  /** One entity's events only. */
  entityId?: string;
  /** Events about one resource only: a change of an entity's limits for it, or of its defaults. */
  resource?: string;
  /** Events at or after this time, epoch ms. */
  sinceMs?: number;
  /** Events older than the event with this sort key (the last one of the previous page). */
  afterSk?: string;
  /** At most this many. */
  limit: number;
}

/** A page of audit events, newest first; `more` when there may be older ones. */
export interface AuditPage {
  /** The events. */
  records: AuditRecord[];
  /** Whether a next page may hold more. */
  more: boolean;
}

/** Partition of the system settings. */
export const SYSTEM_PK = "SYSTEM";
/** Sort key of the audit settings item. */
export const CONFIG_SK = "#CONFIG";

/** The audit settings a table records. */
export interface AuditSettings {
  /** How long audit events are kept, days. */
  retentionDays?: number;
}

/** Whether an audit event matches the resource filter of a query. */
export function matchesResource(r: AuditRecord, resource: string | undefined): boolean {
  if (resource === undefined) return true;
  return r.resource === resource ||
    (r.scope.kind === "resource" && r.scope.resource === resource);
}

/** The sort key of the oldest event a query reads (`since` as a key bound). */
export function sinceSk(sinceMs: number): string {
  return auditSk(sinceMs, "").slice(0, 13);
}

/**
 * Runs `q` on a list of events (the in-memory backend's), as the table does.
 *
 * @example
 * ```ts
 * import { auditPageOf } from "./audit_query.ts";
 * const e = (atMs: number, id: string) => ({ eventId: id, atMs, principal: "p", action: "a",
 *   scope: { kind: "system" as const }, expiresAtSec: 0 });
 * const page = auditPageOf([e(1, "a"), e(2, "b"), e(3, "c")], { limit: 2 });
 * console.assert(page.records.map((r) => r.eventId).join() === "c,b" && page.more);
 * ```
 */
export function auditPageOf(all: readonly AuditRecord[], q: AuditQuery): AuditPage {
  const since = q.sinceMs === undefined ? undefined : sinceSk(q.sinceMs);
  const found = all
    .map((r) => ({ r, sk: auditSk(r.atMs, r.eventId) }))
    .filter(({ r, sk }) =>
      (q.entityId === undefined ||
        (r.scope.kind === "entity" && r.scope.entityId === q.entityId)) &&
      matchesResource(r, q.resource) &&
      (since === undefined || sk >= since) &&
      (q.afterSk === undefined || sk < q.afterSk)
    )
    .sort((a, b) => (a.sk < b.sk ? 1 : a.sk > b.sk ? -1 : 0));
  return {
    records: found.slice(0, q.limit).map(({ r }) => structuredClone(r)),
    more: found.length > q.limit,
  };
}

/**
 * Runs `q` on the table: as many Query pages as it takes to find `q.limit` events.
 *
 * @example
 * ```ts ignore
 * const page = await queryAuditEvents(client, "rate_limits", { entityId: "key-1", limit: 50 });
 * ```
 */
export async function queryAuditEvents(
  client: DynamoDBClient,
  tableName: string,
  q: AuditQuery,
  signal?: AbortSignal,
  space: KeySpace = KeySpace.DEFAULT,
): Promise<AuditPage> {
  const byEntity = q.entityId !== undefined;
  const pk = byEntity ? "GSI1PK" : "PK";
  const sk = byEntity ? "GSI1SK" : "SK";
  const values: Item = {
    ":p": {
      S: byEntity
        ? auditScopeKey({ kind: "entity", entityId: q.entityId! }, space)
        : space.auditPk(),
    },
  };
  let condition = `${pk} = :p`;
  if (q.sinceMs !== undefined) {
    condition += ` AND ${sk} >= :since`;
    values[":since"] = { S: sinceSk(q.sinceMs) };
  }
  const input: QueryCommandInput = {
    TableName: tableName,
    KeyConditionExpression: condition,
    ExpressionAttributeValues: values,
    ScanIndexForward: false,
  };
  if (byEntity) input.IndexName = "GSI1";
  else input.ConsistentRead = true;
  if (q.resource !== undefined) {
    values[":r"] = { S: q.resource };
    input.ExpressionAttributeNames = { "#r": "resource" };
    input.FilterExpression = "#r = :r";
    if (!byEntity) {
      values[":rs"] = { S: auditScopeKey({ kind: "resource", resource: q.resource }, space) };
      input.FilterExpression += " OR GSI1PK = :rs";
    }
  }
  let start: Item | undefined = q.afterSk === undefined ? undefined : {
    PK: { S: space.auditPk() },
    SK: { S: q.afterSk },
    ...(byEntity ? { GSI1PK: values[":p"], GSI1SK: { S: q.afterSk } } : {}),
  };
  const records: AuditRecord[] = [];
  for (;;) {
    const page = await send(
      client,
      QueryCommand,
      {
        ...input,
        // A filter drops items after the limit is applied: read a fuller page then.
        Limit: q.resource === undefined ? q.limit - records.length : 100,
        ExclusiveStartKey: start,
      },
      signal,
    );
    for (const item of page.Items ?? []) {
      if (records.length === q.limit) return { records, more: true };
      records.push(parseAuditItem(item));
    }
    start = page.LastEvaluatedKey;
    if (!start) return { records, more: false };
    if (records.length === q.limit) return { records, more: true };
  }
}

/**
 * The table's audit settings (`SYSTEM / #CONFIG`), `{}` when it has none.
 *
 * @example
 * ```ts ignore
 * const { retentionDays } = await readAuditSettings(client, "rate_limits");
 * ```
 */
export async function readAuditSettings(
  client: DynamoDBClient,
  tableName: string,
  signal?: AbortSignal,
): Promise<AuditSettings> {
  const out = await send(
    client,
    GetItemCommand,
    {
      TableName: tableName,
      Key: { PK: { S: SYSTEM_PK }, SK: { S: CONFIG_SK } },
      ConsistentRead: true,
    },
    signal,
  );
  const days = Number(out.Item?.auditRetentionDays?.N);
  return Number.isInteger(days) && days > 0 ? { retentionDays: days } : {};
}
