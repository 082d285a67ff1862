/**
 * Entities (projects, API keys) and their stored limits, in DynamoDB.
 *
 * @module
 */

import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type ServiceInputTypes,
  type ServiceOutputTypes,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import {
  type AuditPage,
  type AuditQuery,
  type AuditSettings,
  queryAuditEvents,
  readAuditSettings,
} from "./audit_query.ts";
import { auditItem, type AuditRecord, auditSk } from "./audit_record.ts";
import { type CommandClass, type Item, queryPages, send, untilProcessed } from "./calls.ts";
import { ControlStore, type EntityPatch } from "./control_store.ts";
import { EntityExistsError, EntityNotFoundError, ValidationError } from "./errors.ts";
import * as keys from "./keys.ts";
import type { Limit } from "./limit.ts";
import { limitsAttr, parseLimits } from "./limit_items.ts";
import {
  DefaultsStore,
  readSystemItem,
  type StoredDefaults,
  type StoredLimitsEntry,
  systemConfigKeys,
} from "./defaults_store.ts";
import { KeySpace } from "./keyspace.ts";
import { NamespaceRegistration } from "./namespaces.ts";

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
 * The stored limits changed since they were read: their shard count (`putLimits` with
 * `expectShards`) or their last audited change (an audit record's `replaces`).
 */
export class ShardsChanged extends Error {
  constructor() {
    super("the stored limits (their shard count or last audited change) changed meanwhile");
    this.name = "ShardsChanged";
  }
}

/** Items read per page when deleting an entity: bounds memory on entities with many items. */
const DELETE_PAGE = 500;

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

/** Entity and stored-limit storage for one table, in one namespace. */
export class EntityStore {
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #defaults: DefaultsStore;
  readonly #controls: ControlStore;
  /** The namespace's keys: every partition key is built through it. */
  readonly #keys: KeySpace;
  readonly #registration: NamespaceRegistration;

  /**
   * @param client DynamoDB client. @param tableName Table.
   * @param space The namespace's keys. @default the default namespace
   */
  constructor(client: DynamoDBClient, tableName: string, space: KeySpace = KeySpace.DEFAULT) {
    this.#client = client;
    this.#table = tableName;
    this.#keys = space;
    this.#registration = new NamespaceRegistration(client, tableName, space);
    this.#defaults = new DefaultsStore(
      client,
      tableName,
      (op, a, s) => this.#write(op, a, s),
      space,
    );
    this.#controls = new ControlStore(client, tableName, space, this.#registration);
  }

  /** Stores the default limits of a resource (`undefined`: the system's). */
  putDefaults(r: string | undefined, l: Limit[], s?: AbortSignal, a?: AuditRecord): Promise<void> {
    return this.#defaults.putDefaults(r, l, s, a);
  }

  /** The default limits of a resource (`undefined`: the system's), or `undefined`. */
  getDefaults(resource: string | undefined, signal?: AbortSignal): Promise<Limit[] | undefined> {
    return this.#defaults.getDefaults(resource, signal);
  }

  /** The default limits with the `auditSk` of their last change, or `undefined`. */
  getDefaultsState(r: string | undefined, s?: AbortSignal): Promise<StoredDefaults | undefined> {
    return this.#defaults.getDefaultsState(r, s);
  }

  /** Deletes the default limits of a resource (`undefined`: the system's). */
  deleteDefaults(r: string | undefined, s?: AbortSignal, a?: AuditRecord): Promise<void> {
    return this.#defaults.deleteDefaults(r, s, a);
  }

  /** The resources with default limits, sorted. */
  listDefaultResources(signal?: AbortSignal): Promise<string[]> {
    return this.#defaults.listDefaultResources(signal);
  }

  /** Every stored-limits item of an entity. */
  listStoredLimits(entityId: string, signal?: AbortSignal): Promise<StoredLimitsEntry[]> {
    return this.#defaults.listStoredLimits(entityId, signal);
  }

  /** Changes an existing entity's controls, cascade flag or parent (see `ControlStore`). */
  updateEntity(id: string, patch: EntityPatch, signal?: AbortSignal, audit?: AuditRecord) {
    return this.#controls.updateEntity(id, patch, signal, audit);
  }

  /** The `auditSk` of an entity's last audited metadata change, `null` when none. */
  entityAuditSk(entityId: string, signal?: AbortSignal): Promise<string | null> {
    return this.#controls.entityAuditSk(entityId, signal);
  }

  /** A resource's controls, `undefined` when none are set. */
  getResourceControls(resource: string, signal?: AbortSignal) {
    return this.#controls.getResourceControls(resource, signal);
  }

  /** A resource's controls with the `auditSk` of their last change, or `undefined`. */
  getResourceControlsState(resource: string, signal?: AbortSignal) {
    return this.#controls.getResourceControlsState(resource, signal);
  }

  /** Stores a resource's controls; with none set, deletes the item. */
  putResourceControls(r: string, c: ResourceControls, signal?: AbortSignal, audit?: AuditRecord) {
    return this.#controls.putResourceControls(r, c, signal, audit);
  }

  /** Counts one bypassed request in the entity's hourly usage of the resource. */
  countBypassed(entityId: string, resource: string, atMs: number, signal?: AbortSignal) {
    return this.#controls.countBypassed(entityId, resource, atMs, signal);
  }

  /** Sends `new C(input)` with this store's table, aborted on `signal`. */
  #send<I extends ServiceInputTypes & { TableName?: string }, O extends ServiceOutputTypes>(
    C: CommandClass<I, O>,
    input: Omit<I, "TableName">,
    signal?: AbortSignal,
  ): Promise<O> {
    return send(this.#client, C, { TableName: this.#table, ...input } as I, signal);
  }

  /**
   * Writes `op` (one Put, Update or Delete, without its table) alone, or with `audit` in one
   * transaction (idempotent under retries: the event id is the request token). A failed condition
   * of `op` throws an error named `ConditionalCheckFailedException` either way.
   */
  async #write(op: TransactWriteItem, audit?: AuditRecord, signal?: AbortSignal): Promise<void> {
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
    await this.#transact([op], audit, signal);
  }

  /** Writes `ops` and the audit event of `audit` in one transaction. */
  async #transact(
    ops: TransactWriteItem[],
    audit: AuditRecord,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.#registration.ensure(signal);
    const TableName = this.#table;
    const withTable = ops.map((op): TransactWriteItem =>
      op.Put
        ? { Put: { ...op.Put, TableName } }
        : op.Update
        ? { Update: { ...op.Update, TableName } }
        : op.Delete
        ? { Delete: { ...op.Delete, TableName } }
        : { ConditionCheck: { ...op.ConditionCheck!, TableName } }
    );
    try {
      await send(
        this.#client,
        TransactWriteItemsCommand,
        {
          TransactItems: [...withTable, { Put: { TableName, Item: auditItem(audit, this.#keys) } }],
          ClientRequestToken: audit.eventId,
        },
        signal,
      );
    } catch (err) {
      if (
        ops.length === 1 && err instanceof TransactionCanceledException &&
        err.CancellationReasons?.[0]?.Code === "ConditionalCheckFailed"
      ) {
        const failed = new Error("the condition of the write failed");
        failed.name = "ConditionalCheckFailedException";
        throw failed;
      }
      throw err;
    }
  }

  /** Creates an entity; the parent must exist and have no parent itself. */
  async create(entity: Entity, signal?: AbortSignal, audit?: AuditRecord): Promise<void> {
    const item: Record<string, AttributeValue> = {
      PK: { S: this.#keys.entityPk(entity.entityId) },
      SK: { S: keys.META_SK },
      entityId: { S: entity.entityId },
      cascade: { BOOL: entity.cascade },
      metadata: {
        M: Object.fromEntries(Object.entries(entity.metadata).map(([k, v]) => [k, { S: v }])),
      },
      createdAt: { S: entity.createdAt },
      ...keys.entityIndexKeys(entity.entityId, undefined, this.#keys.entitiesKey()),
    };
    if (entity.name !== undefined) item.name = { S: entity.name };
    if (entity.parentId !== undefined) {
      item.parentId = { S: entity.parentId };
      item.GSI1PK = { S: this.#keys.parentKey(entity.parentId) };
      item.GSI1SK = { S: this.#keys.childKey(entity.entityId) };
    }
    const put = { Item: item, ConditionExpression: "attribute_not_exists(PK)" };
    if (entity.parentId === undefined) {
      try {
        await this.#write({ Put: { TableName: this.#table, ...put } }, audit, signal);
      } catch (err) {
        if (err instanceof Error && err.name === "ConditionalCheckFailedException") {
          throw new EntityExistsError(entity.entityId);
        }
        throw err;
      }
      return;
    }
    try {
      const items: TransactWriteItem[] = [
        {
          ConditionCheck: {
            TableName: this.#table,
            Key: this.#keys.itemKey(entity.parentId, keys.META_SK),
            ConditionExpression: "attribute_exists(PK) AND attribute_not_exists(parentId)",
            ReturnValuesOnConditionCheckFailure: "ALL_OLD",
          },
        },
        { Put: { ...put, TableName: this.#table, ReturnValuesOnConditionCheckFailure: "NONE" } },
      ];
      await this.#registration.ensure(signal);
      if (audit) await this.#transact(items, audit, signal);
      else await send(this.#client, TransactWriteItemsCommand, { TransactItems: items }, signal);
    } catch (err) {
      if (err instanceof TransactionCanceledException) {
        const [parent, child] = err.CancellationReasons ?? [];
        if (child?.Code === "ConditionalCheckFailed") throw new EntityExistsError(entity.entityId);
        if (parent?.Code === "ConditionalCheckFailed") {
          if (!parent.Item) throw new EntityNotFoundError(entity.parentId);
          throw new ValidationError(
            "parentId",
            entity.parentId,
            `must be a top-level entity, but it has parent ${parent.Item.parentId?.S}`,
          );
        }
      }
      throw err;
    }
  }

  /** Reads an entity. */
  async get(entityId: string, signal?: AbortSignal): Promise<Entity | undefined> {
    const out = await this.#send(
      GetItemCommand,
      { Key: this.#keys.itemKey(entityId, keys.META_SK), ConsistentRead: true },
      signal,
    );
    return out.Item ? parseEntity(out.Item) : undefined;
  }

  /** Every child of a parent, all pages. */
  async children(parentId: string, signal?: AbortSignal): Promise<Entity[]> {
    const out: Entity[] = [];
    for await (
      const items of queryPages(this.#client, {
        TableName: this.#table,
        IndexName: keys.GSI1,
        KeyConditionExpression: "GSI1PK = :p",
        ExpressionAttributeValues: { ":p": { S: this.#keys.parentKey(parentId) } },
      }, signal)
    ) {
      for (const item of items) out.push(parseEntity(item));
    }
    return out.sort((a, b) => (a.entityId < b.entityId ? -1 : a.entityId > b.entityId ? 1 : 0));
  }

  /**
   * Deletes every item of an entity (metadata, limits, buckets, usage), all pages. With `audit`,
   * the metadata goes first, in one transaction with the event.
   */
  async deleteAll(
    entityId: string,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<number> {
    let deleted = 0;
    await this.#registration.ensure(signal);
    if (audit) {
      await this.#transact(
        [{ Delete: { TableName: this.#table, Key: this.#keys.itemKey(entityId, keys.META_SK) } }],
        audit,
        signal,
      );
    }
    for await (
      const items of queryPages(this.#client, {
        TableName: this.#table,
        KeyConditionExpression: "PK = :pk",
        ExpressionAttributeValues: { ":pk": { S: this.#keys.entityPk(entityId) } },
        ProjectionExpression: "PK, SK",
        ConsistentRead: true,
        Limit: DELETE_PAGE,
      }, signal)
    ) {
      for (let i = 0; i < items.length; i += 25) {
        await untilProcessed<WriteRequest>(
          items.slice(i, i + 25).map((it) => ({
            DeleteRequest: { Key: { PK: it.PK, SK: it.SK } },
          })),
          async (left) =>
            (await send(
              this.#client,
              BatchWriteItemCommand,
              { RequestItems: { [this.#table]: left } },
              signal,
            )).UnprocessedItems?.[this.#table],
          20,
          1000,
          (left) => new Error(`could not delete ${left.length} items after retries`),
        );
      }
      deleted += items.length;
    }
    return deleted;
  }

  /**
   * Stores the limits of an entity for a resource (or all resources), replacing earlier ones, with
   * their shard count. With `expectShards`, only if the stored count is still that (1: none stored).
   */
  async putLimits(
    entityId: string,
    resource: string | undefined,
    limits: Limit[],
    signal?: AbortSignal,
    shards?: StoredShards,
    expectShards?: number,
    audit?: AuditRecord,
  ): Promise<void> {
    const item: Record<string, AttributeValue> = {
      PK: { S: this.#keys.entityPk(entityId) },
      SK: { S: keys.limitSk(resource) },
      ...keys.entityIndexKeys(entityId, { resource }, this.#keys.entitiesKey()),
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
    try {
      await this.#write(
        {
          Put: {
            TableName: this.#table,
            Item: item,
            ...both(
              expectShards === undefined ? undefined : shardCondition(expectShards),
              replacesCondition(audit),
            ),
          },
        },
        audit,
        signal,
      );
    } catch (err) {
      if (err instanceof Error && err.name === "ConditionalCheckFailedException") {
        throw new ShardsChanged();
      }
      throw err;
    }
  }

  /** Stored limits for a resource (or all resources); `undefined` when none are stored. */
  async getLimits(
    entityId: string,
    resource: string | undefined,
    signal?: AbortSignal,
  ): Promise<StoredLimits | undefined> {
    const out = await this.#send(
      GetItemCommand,
      { Key: this.#keys.itemKey(entityId, keys.limitSk(resource)), ConsistentRead: true },
      signal,
    );
    if (!out.Item) return undefined;
    const stored: StoredLimits = { limits: parseLimits(out.Item), shards: parseShards(out.Item) };
    if (out.Item.auditSk?.S !== undefined) stored.auditSk = out.Item.auditSk.S;
    return stored;
  }

  /**
   * Sets the shard count of stored limits from `from` to `to` (with the layout it replaces), if
   * it is still `from`, no change is pending at `nowMs` and the limits are there; false when not.
   */
  async reshard(
    entityId: string,
    resource: string | undefined,
    from: number,
    to: StoredShards,
    nowMs: number,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<boolean> {
    const cond = shardCondition(from);
    const prevSince = to.prev?.sinceMs;
    try {
      await this.#write(
        {
          Update: {
            TableName: this.#table,
            Key: this.#keys.itemKey(entityId, keys.limitSk(resource)),
            UpdateExpression: "SET shards = :to, shardsSince = :since, shardsPrev = :prev" +
              (prevSince === undefined ? " REMOVE shardsPrevSince" : ", shardsPrevSince = :ps"),
            ConditionExpression: `attribute_exists(PK) AND (${cond.ConditionExpression}) AND ` +
              "(attribute_not_exists(shardsPrev) OR shardsSince <= :now)",
            ExpressionAttributeValues: {
              ...cond.ExpressionAttributeValues,
              ":to": { N: String(to.count) },
              ":since": { N: String(to.sinceMs ?? 0) },
              ":prev": { N: String(to.prev?.count ?? 1) },
              ":now": { N: String(nowMs) },
              ...(prevSince === undefined ? {} : { ":ps": { N: String(prevSince) } }),
            },
          },
        },
        audit,
        signal,
      );
      return true;
    } catch (err) {
      if (err instanceof Error && err.name === "ConditionalCheckFailedException") return false;
      throw err;
    }
  }

  /** Deletes stored limits for a resource (or the entity-wide ones). */
  async deleteLimits(
    entityId: string,
    resource: string | undefined,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void> {
    const Key = this.#keys.itemKey(entityId, keys.limitSk(resource));
    try {
      await this.#write(
        { Delete: { TableName: this.#table, Key, ...both(undefined, replacesCondition(audit)) } },
        audit,
        signal,
      );
    } catch (err) {
      if (err instanceof Error && err.name === "ConditionalCheckFailedException") {
        throw new ShardsChanged();
      }
      throw err;
    }
  }

  /** Audit events, newest first (src/audit_query.ts). */
  auditEvents(query: AuditQuery, signal?: AbortSignal): Promise<AuditPage> {
    return queryAuditEvents(this.#client, this.#table, query, signal, this.#keys);
  }

  /** The table's audit settings (`SYSTEM / #CONFIG`). */
  auditSettings(signal?: AbortSignal): Promise<AuditSettings> {
    return readAuditSettings(this.#client, this.#table, signal);
  }

  /**
   * Everything the hot path needs of some entities, in one BatchGetItem: metadata and the
   * resource's and entity-wide stored limits of each; with `want.defaults`, the resource's and the
   * system's default limits and the resource's controls too (set on every entity's config).
   */
  async loadConfig(
    entityIds: string[],
    resource: string,
    want: { meta: boolean; limits: boolean; defaults?: boolean },
    signal?: AbortSignal,
  ): Promise<Map<string, EntityConfig>> {
    const wanted: Record<string, AttributeValue>[] = want.defaults
      ? systemConfigKeys(resource, this.#keys)
      : [];
    for (const id of entityIds) {
      const pk = { S: this.#keys.entityPk(id) };
      if (want.meta) wanted.push({ PK: pk, SK: { S: keys.META_SK } });
      if (want.limits) {
        wanted.push({ PK: pk, SK: { S: keys.limitSk(resource) } });
        wanted.push({ PK: pk, SK: { S: keys.limitSk() } });
      }
    }
    const found: Item[] = [];
    await untilProcessed(
      wanted,
      async (left) => {
        const out = await send(
          this.#client,
          BatchGetItemCommand,
          { RequestItems: { [this.#table]: { Keys: left, ConsistentRead: true } } },
          signal,
        );
        found.push(...(out.Responses?.[this.#table] ?? []));
        return out.UnprocessedKeys?.[this.#table]?.Keys;
      },
      10,
      200,
    );
    const result = new Map<string, EntityConfig>();
    for (const id of entityIds) result.set(id, {});
    const system: EntityConfig = {};
    for (const item of found) {
      if (readSystemItem(item, resource, system, this.#keys)) continue;
      const id = this.#keys.entityIdOf(item.PK.S ?? "");
      const cfg = id === undefined ? undefined : result.get(id);
      if (!cfg) continue;
      const sk = item.SK.S;
      if (sk === keys.META_SK) cfg.entity = parseEntity(item);
      else if (sk === keys.limitSk()) {
        cfg.defaultLimits = parseLimits(item);
        cfg.defaultShards = parseShards(item);
      } else if (sk === keys.limitSk(resource)) {
        cfg.resourceLimits = parseLimits(item);
        cfg.resourceShards = parseShards(item);
      }
    }
    if (want.defaults) { for (const cfg of result.values()) Object.assign(cfg, system); }
    return result;
  }
}

/**
 * What {@link EntityStore.loadConfig} found of one entity.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const backend = new InMemoryBackend();
 * const limiter = new RateLimiter({ tableName: "unit-test", backend });
 * await limiter.createEntity({ entityId: "key-1" });
 * await limiter.setLimits({ entityId: "key-1", resource: "api", limits: [Limit.perMinute("rpm", 5)] });
 * const configs = await backend.entities.loadConfig(["key-1"], "api", { meta: true, limits: true });
 * const config = configs.get("key-1");
 * console.assert(config?.entity?.entityId === "key-1" && config.resourceLimits?.[0].name === "rpm");
 * ```
 */
export interface EntityConfig {
  /** Metadata, when the entity exists. */
  entity?: Entity;
  /** Stored limits for the resource. */
  resourceLimits?: Limit[];
  /** Stored entity-wide limits. */
  defaultLimits?: Limit[];
  /** The shard count stored with the resource's limits. */
  resourceShards?: StoredShards;
  /** The shard count stored with the entity-wide limits. */
  defaultShards?: StoredShards;
  /** The resource's default limits (for every entity), when loaded and stored. */
  resourceDefaults?: Limit[];
  /** The system default limits (every entity, every resource), when loaded and stored. */
  systemDefaults?: Limit[];
  /** The resource's controls, when loaded and any are set. */
  resourceControls?: ResourceControls;
}

/** The condition that the stored shard count is `count` (1: none stored, or 1). */
/** The condition of `audit.replaces` (see `AuditRecord.replaces`), when given. */
function replacesCondition(audit: AuditRecord | undefined): Condition | undefined {
  if (audit?.replaces === undefined) return undefined;
  if (audit.replaces === null) {
    return { ConditionExpression: "attribute_not_exists(auditSk)", ExpressionAttributeValues: {} };
  }
  return {
    ConditionExpression: "auditSk = :replaces",
    ExpressionAttributeValues: { ":replaces": { S: audit.replaces } },
  };
}

type Condition = {
  ConditionExpression: string;
  ExpressionAttributeValues: Record<string, AttributeValue>;
};

/** Both conditions (either may be absent), as request fields. */
function both(a: Condition | undefined, b: Condition | undefined): Partial<Condition> {
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

function shardCondition(count: number): {
  ConditionExpression: string;
  ExpressionAttributeValues: Record<string, AttributeValue>;
} {
  return {
    ConditionExpression: count === 1
      ? "attribute_not_exists(shards) OR shards = :from"
      : "shards = :from",
    ExpressionAttributeValues: { ":from": { N: String(count) } },
  };
}

function parseShards(item: Record<string, AttributeValue>): StoredShards | undefined {
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
