/**
 * Entity items: the shapes of an entity, its stored limits and shard count, and a resource's
 * controls; how their DynamoDB items are built and parsed; and the conditions that guard a change
 * of stored limits (the shard count, the last audited change).
 *
 * @module
 */

import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { type AuditRecord, auditSk } from "./audit_record.ts";
import * as keys from "./keys.ts";
import { KeySpace } from "./keyspace.ts";
import type { Limit } from "./limit.ts";
import { limitsAttr } from "./limit_items.ts";

/** A shard count as stored with limits. */
export interface StoredShards {
  /** How many items the bucket is split into (1: one item, the key of an unsharded bucket). */
  count: number;
  /**
   * Epoch ms (the clock of the limiter that changed it) when this count takes over from `prev`:
   * its items count as empty then.
   */
  sinceMs?: number;
  /** The layout in force until `sinceMs` (absent: none stored, or set before schedules). */
  prev?: { count: number; sinceMs?: number };
}

/** Stored limits with the shard count that splits their buckets. */
export interface StoredLimits {
  /** The limits. */
  limits: Limit[];
  /** Absent: one item (never sharded). */
  shards?: StoredShards;
  /** The sort key of the audit event of the change that stored them (absent: none recorded). */
  auditSk?: string;
}

/**
 * An entity: a project, or an API key that may belong to a project.
 *
 * @example
 * ```ts
 * import type { Entity } from "./entities.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * await limiter.createEntity({ entityId: "proj-1", name: "Project 1" });
 * const key: Entity = await limiter.createEntity({ entityId: "key-1", parentId: "proj-1" });
 * console.assert(key.parentId === "proj-1" && key.cascade === false);
 * console.assert(!Number.isNaN(Date.parse(key.createdAt)));
 * ```
 */
export interface Entity {
  /** The entity's id. */
  entityId: string;
  /** A display name. */
  name?: string;
  /** The parent (project) id, for a child. */
  parentId?: string;
  /** Whether acquires cascade to the parent when the call does not say. */
  cascade: boolean;
  /** Free-form string metadata. */
  metadata: Record<string, string>;
  /** ISO 8601 creation time. */
  createdAt: string;
  /** Switched off: its acquires are refused (`EntityDisabledError`). Absent: enabled. */
  disabled?: boolean;
  /** Admitted without consuming (and counted as bypassed). Absent: off. */
  bypass?: boolean;
}

/** Controls of a resource, for every entity (item `SYSTEM` / `#CONTROL#{resource}`). */
export interface ResourceControls {
  /** Switched off: every acquire on the resource is refused (`EntityDisabledError`). */
  disabled?: boolean;
}

/**
 * The metadata item of a new entity (with its GSI1 keys under a parent, and its GSI3 keys).
 *
 * @example
 * ```ts
 * import { entityItem, parseEntity } from "./entity_items.ts";
 * const entity = { entityId: "key-1", cascade: false, metadata: {}, createdAt: "2025-01-01T00:00:00Z" };
 * console.assert(parseEntity(entityItem(entity)).entityId === "key-1");
 * ```
 */
export function entityItem(
  entity: Entity,
  space: KeySpace = KeySpace.DEFAULT,
): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {
    PK: { S: space.entityPk(entity.entityId) },
    SK: { S: keys.META_SK },
    entityId: { S: entity.entityId },
    cascade: { BOOL: entity.cascade },
    metadata: {
      M: Object.fromEntries(Object.entries(entity.metadata).map(([k, v]) => [k, { S: v }])),
    },
    createdAt: { S: entity.createdAt },
    ...keys.entityIndexKeys(entity.entityId, undefined, space.entitiesKey()),
  };
  if (entity.name !== undefined) item.name = { S: entity.name };
  if (entity.parentId !== undefined) {
    item.parentId = { S: entity.parentId };
    item.GSI1PK = { S: space.parentKey(entity.parentId) };
    item.GSI1SK = { S: space.childKey(entity.entityId) };
  }
  return item;
}

/**
 * The stored-limits item of an entity for a resource (or all resources), with its shard count
 * and, when audited, the sort key of the change's audit event.
 *
 * @example
 * ```ts
 * import { parseShards, storedLimitsItem } from "./entity_items.ts";
 * import { Limit } from "./limit.ts";
 * const item = storedLimitsItem("key-1", "api", [Limit.perMinute("rpm", 5)], { count: 4 });
 * console.assert(parseShards(item)?.count === 4);
 * ```
 */
export function storedLimitsItem(
  entityId: string,
  resource: string | undefined,
  limits: Limit[],
  shards?: StoredShards,
  audit?: AuditRecord,
  space: KeySpace = KeySpace.DEFAULT,
): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {
    PK: { S: space.entityPk(entityId) },
    SK: { S: keys.limitSk(resource) },
    ...keys.entityIndexKeys(entityId, { resource }, space.entitiesKey()),
    limits: limitsAttr(limits),
  };
  if (shards) {
    item.shards = { N: String(shards.count) };
    if (shards.sinceMs !== undefined) item.shardsSince = { N: String(shards.sinceMs) };
    if (shards.prev) {
      item.shardsPrev = { N: String(shards.prev.count) };
      if (shards.prev.sinceMs !== undefined) {
        item.shardsPrevSince = { N: String(shards.prev.sinceMs) };
      }
    }
  }
  if (audit) item.auditSk = { S: auditSk(audit.atMs, audit.eventId) };
  return item;
}

/** The condition of `audit.replaces` (see `AuditRecord.replaces`), when given. */
export function replacesCondition(audit: AuditRecord | undefined): Condition | undefined {
  if (audit?.replaces === undefined) return undefined;
  if (audit.replaces === null) {
    return { ConditionExpression: "attribute_not_exists(auditSk)", ExpressionAttributeValues: {} };
  }
  return {
    ConditionExpression: "auditSk = :replaces",
    ExpressionAttributeValues: { ":replaces": { S: audit.replaces } },
  };
}

/** A condition, as the fields of a request. */
export type Condition = {
  ConditionExpression: string;
  ExpressionAttributeValues: Record<string, AttributeValue>;
};

/** Both conditions (either may be absent), as request fields. */
export function both(a: Condition | undefined, b: Condition | undefined): Partial<Condition> {
  if (!a || !b) {
    const one = a ?? b;
    if (!one) return {};
    return Object.keys(one.ExpressionAttributeValues).length
      ? one
      : { ConditionExpression: one.ConditionExpression };
  }
  return {
    ConditionExpression: `(${a.ConditionExpression}) AND (${b.ConditionExpression})`,
    ExpressionAttributeValues: { ...a.ExpressionAttributeValues, ...b.ExpressionAttributeValues },
  };
}

/** The condition that the stored shard count is `count` (1: none stored, or 1). */
export function shardCondition(count: number): Condition {
  return {
    ConditionExpression: count === 1
      ? "attribute_not_exists(shards) OR shards = :from"
      : "shards = :from",
    ExpressionAttributeValues: { ":from": { N: String(count) } },
  };
}

/** The shard count stored on a stored-limits item, if any. */
export function parseShards(item: Record<string, AttributeValue>): StoredShards | undefined {
  if (item.shards?.N === undefined) return undefined;
  const since = item.shardsSince?.N;
  const prev = item.shardsPrev?.N;
  const prevSince = item.shardsPrevSince?.N;
  return {
    count: Number(item.shards.N),
    ...(since === undefined ? {} : { sinceMs: Number(since) }),
    ...(prev === undefined ? {} : {
      prev: {
        count: Number(prev),
        ...(prevSince === undefined ? {} : { sinceMs: Number(prevSince) }),
      },
    }),
  };
}

/** An entity of its metadata item. */
export function parseEntity(item: Record<string, AttributeValue>): Entity {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(item.metadata?.M ?? {})) metadata[k] = v.S ?? "";
  const entity: Entity = {
    entityId: item.entityId?.S ?? keys.entityIdOf(KeySpace.parse(item.PK.S ?? "")?.local ?? "") ??
      "",
    cascade: item.cascade?.BOOL ?? false,
    metadata,
    createdAt: item.createdAt?.S ?? "",
  };
  if (item.name?.S !== undefined) entity.name = item.name.S;
  if (item.parentId?.S !== undefined) entity.parentId = item.parentId.S;
  if (item.disabled?.BOOL) entity.disabled = true;
  if (item.bypass?.BOOL) entity.bypass = true;
  return entity;
}
