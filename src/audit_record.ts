/**
 * The audit event of one admin change, and the table item it is stored as. A store writes the
 * event in the same transaction as the change it records, so there is no change without its event.
 *
 * Item: `PK = AUDIT` (`NS#{namespace}#AUDIT` in a namespace, see src/keyspace.ts), `SK = {atMs, 13 digits}#{eventId}` (newest last, so a query read backwards is
 * newest first), `GSI1PK = AUDIT#{scope}`, `GSI1SK = SK` (one scope's events), `ttl` (epoch s).
 *
 * @module
 */

import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { KeySpace } from "./keyspace.ts";

/** Partition key of every audit event. */
export const AUDIT_PK = "AUDIT";

/** What an audit event is about: an entity, a resource's defaults and controls, or the system. */
export type AuditScope =
  | { kind: "entity"; entityId: string }
  | { kind: "resource"; resource: string }
  | { kind: "system" };

/**
 * One admin change: who made it, when, what, and the value before and after (JSON values,
 * `undefined` when there was none).
 *
 * @example
 * ```ts
 * import { type AuditRecord, auditItem, parseAuditItem } from "./audit_record.ts";
 * const record: AuditRecord = {
 *   eventId: "e1", atMs: 1_700_000_000_000, principal: "local", action: "limits.set",
 *   scope: { kind: "entity", entityId: "key-1" }, resource: "api",
 *   before: undefined, after: [{ name: "rpm", capacity: 10 }], expiresAtSec: 1_707_776_000,
 * };
 * const back = parseAuditItem(auditItem(record));
 * console.assert(back.eventId === "e1" && back.scope.kind === "entity" && back.before === undefined);
 * ```
 */
export interface AuditRecord {
  /** Unique id of the event. */
  eventId: string;
  /** When, epoch ms. */
  atMs: number;
  /** Who: the caller's identity (an ARN on AWS), a configured principal, or `local`. */
  principal: string;
  /** What was done, e.g. `entity.create`, `limits.set`. */
  action: string;
  /** What it was done to. */
  scope: AuditScope;
  /** The resource, for a change to one resource of an entity. */
  resource?: string;
  /** The value before (JSON), `undefined` when there was none. */
  before?: unknown;
  /** The value after (JSON), `undefined` when there is none. */
  after?: unknown;
  /** When the event expires (the table's TTL), epoch s. */
  expiresAtSec: number;
  /**
   * The sort key of the event that made the state this change replaces (`null`: none, or a state
   * from before audit events). Given, the store makes the change only if the item still carries
   * it (else `ShardsChanged`, to decide again), and marks the item with this event's key: so
   * concurrent changes apply in the order of their events, each `before` is what it replaced, and
   * the newest event's `after` is the stored state. Not stored in the event.
   */
  replaces?: string | null;
}

/** The GSI1 partition key of a scope's events, in the namespace of `space`. */
export function auditScopeKey(scope: AuditScope, space: KeySpace = KeySpace.DEFAULT): string {
  switch (scope.kind) {
    case "entity":
      return space.auditScopePk(`ENTITY#${scope.entityId}`);
    case "resource":
      return space.auditScopePk(`RESOURCE#${scope.resource}`);
    case "system":
      return space.auditScopePk("SYSTEM");
  }
}

/** The sort key of an event: its time (13 digits, so it sorts), then its id. */
export function auditSk(atMs: number, eventId: string): string {
  return `${String(atMs).padStart(13, "0")}#${eventId}`;
}

/** The table item of an audit event, in the namespace of `space`. */
export function auditItem(
  r: AuditRecord,
  space: KeySpace = KeySpace.DEFAULT,
): Record<string, AttributeValue> {
  const sk = auditSk(r.atMs, r.eventId);
  const item: Record<string, AttributeValue> = {
    PK: { S: space.auditPk() },
    SK: { S: sk },
    GSI1PK: { S: auditScopeKey(r.scope, space) },
    GSI1SK: { S: sk },
    eventId: { S: r.eventId },
    atMs: { N: String(r.atMs) },
    principal: { S: r.principal },
    action: { S: r.action },
    scope: { S: JSON.stringify(r.scope) },
    ttl: { N: String(r.expiresAtSec) },
  };
  if (r.resource !== undefined) item.resource = { S: r.resource };
  if (r.before !== undefined) item.before = { S: JSON.stringify(r.before) };
  if (r.after !== undefined) item.after = { S: JSON.stringify(r.after) };
  return item;
}

/** The audit event of a table item written by {@link auditItem}. */
export function parseAuditItem(item: Record<string, AttributeValue>): AuditRecord {
  const r: AuditRecord = {
    eventId: item.eventId?.S ?? "",
    atMs: Number(item.atMs?.N ?? 0),
    principal: item.principal?.S ?? "",
    action: item.action?.S ?? "",
    scope: JSON.parse(item.scope?.S ?? '{"kind":"system"}'),
    expiresAtSec: Number(item.ttl?.N ?? 0),
  };
  if (item.resource?.S !== undefined) r.resource = item.resource.S;
  if (item.before?.S !== undefined) r.before = JSON.parse(item.before.S);
  if (item.after?.S !== undefined) r.after = JSON.parse(item.after.S);
  return r;
}
