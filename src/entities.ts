/**
 * Entities (projects, API keys) and their stored limits, in DynamoDB: {@link EntityStore}, one
 * object per table and namespace that the backend hands out. The items' shapes are in
 * `entity_items.ts`, audited writes in `audited_write.ts`, the hot path's config read in
 * `entity_config.ts`; default limits and controls in `defaults_store.ts` and `control_store.ts`.
 *
 * @module
 */

import {
  BatchWriteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import {
  type AuditPage,
  type AuditQuery,
  type AuditSettings,
  queryAuditEvents,
  readAuditSettings,
} from "./audit_query.ts";
import type { AuditRecord } from "./audit_record.ts";
import { AuditedWriter } from "./audited_write.ts";
import { queryPages, send, untilProcessed } from "./calls.ts";
import { ControlStore, type EntityPatch } from "./control_store.ts";
import { type EntityConfig, loadEntityConfig } from "./entity_config.ts";
import type { Telemetry } from "./telemetry.ts";
import {
  both,
  type Entity,
  entityItem,
  parseEntity,
  parseShards,
  replacesCondition,
  type ResourceControls,
  shardCondition,
  type StoredLimits,
  storedLimitsItem,
  type StoredShards,
} from "./entity_items.ts";
import { EntityExistsError, EntityNotFoundError, ValidationError } from "./errors.ts";
import * as keys from "./keys.ts";
import type { Limit } from "./limit.ts";
import { parseLimits } from "./limit_items.ts";
import { DefaultsStore, type StoredDefaults, type StoredLimitsEntry } from "./defaults_store.ts";
import { KeySpace } from "./keyspace.ts";
import { NamespaceRegistration } from "./namespaces.ts";

export type { EntityConfig } from "./entity_config.ts";
export {
  type Entity,
  parseEntity,
  type ResourceControls,
  type StoredLimits,
  type StoredShards,
} from "./entity_items.ts";

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

/** Entity and stored-limit storage for one table, in one namespace. */
export class EntityStore {
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #defaults: DefaultsStore;
  readonly #controls: ControlStore;
  /** The namespace's keys: every partition key is built through it. */
  readonly #keys: KeySpace;
  readonly #registration: NamespaceRegistration;
  readonly #writer: AuditedWriter;
  /** Spans and metrics of the hot path's config read. */
  readonly #telemetry?: Telemetry;

  /**
   * @param client DynamoDB client. @param tableName Table.
   * @param space The namespace's keys. @default the default namespace
   * @param telemetry Spans and metrics of the config read (`telemetry.ts`). @default none
   */
  constructor(
    client: DynamoDBClient,
    tableName: string,
    space: KeySpace = KeySpace.DEFAULT,
    telemetry?: Telemetry,
  ) {
    this.#telemetry = telemetry;
    this.#client = client;
    this.#table = tableName;
    this.#keys = space;
    this.#registration = new NamespaceRegistration(client, tableName, space);
    this.#writer = new AuditedWriter(client, tableName, space, this.#registration);
    this.#defaults = new DefaultsStore(
      client,
      tableName,
      (op, a, s) => this.#writer.write(op, a, s),
      space,
    );
    this.#controls = new ControlStore(client, tableName, space, this.#registration);
  }

  /**
   * Stores the default limits of a resource (`undefined`: the system's); `ShardsChanged` when
   * they no longer carry the event `audit.replaces` names.
   */
  async putDefaults(
    r: string | undefined,
    l: Limit[],
    s?: AbortSignal,
    a?: AuditRecord,
  ): Promise<void> {
    await this.#defaults.putDefaults(r, l, s, a, both(undefined, replacesCondition(a)))
      .catch(changed);
  }

  /** The default limits of a resource (`undefined`: the system's), or `undefined`. */
  getDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
  ): Promise<StoredDefaults | undefined> {
    return this.#defaults.getDefaults(resource, signal);
  }

  /** Deletes the default limits of a resource (`undefined`: the system's), as `putDefaults`. */
  async deleteDefaults(r: string | undefined, s?: AbortSignal, a?: AuditRecord): Promise<void> {
    await this.#defaults.deleteDefaults(r, s, a, both(undefined, replacesCondition(a)))
      .catch(changed);
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

  /** Adds `n` refused requests to the entity's hourly usage of the resource. */
  countRefused(entityId: string, resource: string, atMs: number, n: number, signal?: AbortSignal) {
    return this.#controls.addToHour("refused", n, entityId, resource, atMs, signal);
  }

  /** Creates an entity; the parent must exist and have no parent itself. */
  async create(entity: Entity, signal?: AbortSignal, audit?: AuditRecord): Promise<void> {
    const item = entityItem(entity, this.#keys);
    const put = { Item: item, ConditionExpression: "attribute_not_exists(PK)" };
    if (entity.parentId === undefined) {
      try {
        await this.#writer.write({ Put: { TableName: this.#table, ...put } }, audit, signal);
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
      if (audit) await this.#writer.transact(items, audit, signal);
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
    const out = await send(this.#client, GetItemCommand, {
      TableName: this.#table,
      Key: this.#keys.itemKey(entityId, keys.META_SK),
      ConsistentRead: true,
    }, signal);
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
      await this.#writer.write(
        { Delete: { TableName: this.#table, Key: this.#keys.itemKey(entityId, keys.META_SK) } },
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
    const item = storedLimitsItem(entityId, resource, limits, shards, audit, this.#keys);
    try {
      await this.#writer.write(
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
    const out = await send(this.#client, GetItemCommand, {
      TableName: this.#table,
      Key: this.#keys.itemKey(entityId, keys.limitSk(resource)),
      ConsistentRead: true,
    }, signal);
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
      await this.#writer.write(
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
      await this.#writer.write(
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
   * system's default limits and the resource's controls too (set on every entity's config). See
   * `entity_config.ts`.
   */
  loadConfig(
    entityIds: string[],
    resource: string,
    want: { meta: boolean; limits: boolean; defaults?: boolean },
    signal?: AbortSignal,
  ): Promise<Map<string, EntityConfig>> {
    const load = () =>
      loadEntityConfig(this.#client, this.#table, this.#keys, entityIds, resource, want, signal);
    return this.#telemetry ? this.#telemetry.dynamo("BatchGetItem", load) : load();
  }
}

/** A failed condition as `ShardsChanged` (the stored state changed meanwhile). */
function changed(err: unknown): never {
  if (err instanceof Error && err.name === "ConditionalCheckFailedException") {
    throw new ShardsChanged();
  }
  throw err;
}
