/**
 * Entity and resource controls in DynamoDB: changes to an existing entity (disabled, bypass,
 * cascade, parent), a resource's controls (`SYSTEM` / `#CONTROL#{resource}`), and the counts of
 * bypassed and refused requests in the hourly usage snapshots. Each change is one transaction
 * with its audit event.
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  GetItemCommand,
  TransactionCanceledException,
  type TransactWriteItem,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { isoSeconds, usageSk, windowAt } from "./aggregator/snapshot.ts";
import { type AuditRecord, auditSk } from "./audit_record.ts";
import { AuditedWriter } from "./audited_write.ts";
import { send } from "./calls.ts";
import { EntityNotFoundError, ValidationError } from "./errors.ts";
import { both, replacesCondition, type ResourceControls } from "./entity_items.ts";
import * as keys from "./keys.ts";
import { KeySpace } from "./keyspace.ts";
import { NamespaceRegistration } from "./namespaces.ts";

/**
 * A change to an existing entity: each field given is set (`parentId: undefined` given detaches
 * the entity from its parent; a field left out is kept).
 *
 * @example
 * ```ts
 * import type { EntityPatch } from "./control_store.ts";
 * const patch: EntityPatch = { disabled: true };
 * const detach: EntityPatch = { parentId: undefined };
 * console.assert("parentId" in detach && !("parentId" in patch));
 * ```
 */
export interface EntityPatch {
  /** Switched off. */
  disabled?: boolean;
  /** Admitted without consuming. */
  bypass?: boolean;
  /** Cascades to its parent by default. */
  cascade?: boolean;
  /** The new parent (must exist and be top-level); `undefined` given: no parent. */
  parentId?: string;
}

/** How long a bypass or refusal count is kept after its hour ends, days (as the aggregator's). */
const BYPASS_RETENTION_DAYS = 90;

/** Controls storage for one table. */
export class ControlStore {
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #keys: KeySpace;
  readonly #writer: AuditedWriter;

  /**
   * @param client DynamoDB client. @param tableName Table. @param space The namespace's keys.
   * @param registration Registers the namespace before the first change.
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
    this.#writer = new AuditedWriter(client, tableName, space, registration);
  }

  /**
   * Changes an existing entity (`EntityNotFoundError` when missing). A new parent must exist and
   * be top-level, checked in the same transaction; GSI1 follows the parent.
   */
  async updateEntity(
    entityId: string,
    patch: EntityPatch,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void> {
    const sets: string[] = [];
    const removes: string[] = [];
    const values: Record<string, AttributeValue> = {};
    const names: Record<string, string> = {}; // some are reserved words (cascade)
    for (const flag of ["disabled", "bypass"] as const) {
      if (patch[flag] === undefined) continue;
      names[`#${flag}`] = flag;
      if (patch[flag]) {
        sets.push(`#${flag} = :${flag}`);
        values[`:${flag}`] = { BOOL: true };
      } else removes.push(`#${flag}`); // absent: off
    }
    if (patch.cascade !== undefined) {
      names["#cascade"] = "cascade";
      sets.push("#cascade = :cascade");
      values[":cascade"] = { BOOL: patch.cascade };
    }
    const parentId = patch.parentId;
    const ops: TransactWriteItem[] = [];
    if ("parentId" in patch) {
      if (parentId === undefined) removes.push("parentId", "GSI1PK", "GSI1SK");
      else {
        sets.push("parentId = :parent", "GSI1PK = :g1pk", "GSI1SK = :g1sk");
        values[":parent"] = { S: parentId };
        values[":g1pk"] = { S: this.#keys.parentKey(parentId) };
        values[":g1sk"] = { S: keys.childKey(entityId) };
        ops.push({
          ConditionCheck: {
            TableName: this.#table,
            Key: this.#keys.itemKey(parentId, keys.META_SK),
            ConditionExpression: "attribute_exists(PK) AND attribute_not_exists(parentId)",
            ReturnValuesOnConditionCheckFailure: "ALL_OLD",
          },
        });
      }
    }
    if (sets.length === 0 && removes.length === 0) return;
    if (audit) {
      sets.push("auditSk = :auditSk");
      values[":auditSk"] = { S: auditSk(audit.atMs, audit.eventId) };
    }
    const exists = { ConditionExpression: "attribute_exists(PK)", ExpressionAttributeValues: {} };
    const guard = both(exists, replacesCondition(audit));
    Object.assign(values, guard.ExpressionAttributeValues);
    ops.push({
      Update: {
        TableName: this.#table,
        Key: this.#keys.itemKey(entityId, keys.META_SK),
        UpdateExpression: [
          sets.length ? `SET ${sets.join(", ")}` : "",
          removes.length ? `REMOVE ${removes.join(", ")}` : "",
        ].join(" ").trim(),
        ConditionExpression: guard.ConditionExpression,
        ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        ...(Object.keys(values).length ? { ExpressionAttributeValues: values } : {}),
        ...(Object.keys(names).length ? { ExpressionAttributeNames: names } : {}),
      },
    });
    try {
      await this.#writer.transact(ops, audit, signal);
    } catch (err) {
      if (!(err instanceof TransactionCanceledException)) throw err;
      const reasons = err.CancellationReasons ?? [];
      const failed = (i: number) => reasons[i]?.Code === "ConditionalCheckFailed";
      if (failed(ops.length - 1)) {
        // Missing, or changed since `audit.replaces` was read (then decided again).
        const item = reasons[ops.length - 1].Item;
        if (audit?.replaces !== undefined && item) throw new ControlsChanged();
        throw new EntityNotFoundError(entityId);
      }
      if (parentId !== undefined && failed(0)) {
        const parent = reasons[0].Item;
        if (!parent) throw new EntityNotFoundError(parentId);
        throw new ValidationError(
          "parentId",
          parentId,
          `must be a top-level entity, but it has parent ${parent.parentId?.S}`,
        );
      }
      throw err;
    }
  }

  /**
   * The sort key of the audit event of an entity's last audited change of its metadata
   * (`null`: none, or no such entity).
   */
  async entityAuditSk(entityId: string, signal?: AbortSignal): Promise<string | null> {
    const out = await send(this.#client, GetItemCommand, {
      TableName: this.#table,
      Key: this.#keys.itemKey(entityId, keys.META_SK),
      ProjectionExpression: "auditSk",
      ConsistentRead: true,
    }, signal);
    return out.Item?.auditSk?.S ?? null;
  }

  /** A resource's controls, `undefined` when none are set. */
  async getResourceControls(
    resource: string,
    signal?: AbortSignal,
  ): Promise<ResourceControls | undefined> {
    const out = await send(this.#client, GetItemCommand, {
      TableName: this.#table,
      Key: this.#keys.systemKey(keys.controlSk(resource)),
      ConsistentRead: true,
    }, signal);
    return out.Item ? parseResourceControls(out.Item) : undefined;
  }

  /** A resource's controls with the `auditSk` of their last audited change, when stored. */
  async getResourceControlsState(
    resource: string,
    signal?: AbortSignal,
  ): Promise<{ controls: ResourceControls; auditSk?: string } | undefined> {
    const out = await send(this.#client, GetItemCommand, {
      TableName: this.#table,
      Key: this.#keys.systemKey(keys.controlSk(resource)),
      ConsistentRead: true,
    }, signal);
    if (!out.Item) return undefined;
    const sk = out.Item.auditSk?.S;
    const controls = parseResourceControls(out.Item);
    return sk === undefined ? { controls } : { controls, auditSk: sk };
  }

  /**
   * Stores a resource's controls. With `audit`, the item keeps the event's sort key (also when
   * no control is set, so that the next change can name it), and `audit.replaces`, when given,
   * must still be the stored one (else `ControlsChanged`).
   */
  async putResourceControls(
    resource: string,
    controls: ResourceControls,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void> {
    const Key = this.#keys.systemKey(keys.controlSk(resource));
    const op: TransactWriteItem = audit
      ? {
        Put: {
          TableName: this.#table,
          Item: {
            ...Key,
            resource: { S: resource },
            ...(controls.disabled ? { disabled: { BOOL: true } } : {}),
            auditSk: { S: auditSk(audit.atMs, audit.eventId) },
          },
          ...both(undefined, replacesCondition(audit)),
        },
      }
      : controls.disabled
      ? {
        Put: {
          TableName: this.#table,
          Item: { ...Key, resource: { S: resource }, disabled: { BOOL: true } },
        },
      }
      : { Delete: { TableName: this.#table, Key } };
    try {
      await this.#writer.transact([op], audit, signal);
    } catch (err) {
      if (
        err instanceof TransactionCanceledException &&
        err.CancellationReasons?.[0]?.Code === "ConditionalCheckFailed"
      ) throw new ControlsChanged();
      throw err;
    }
  }

  /**
   * Counts one bypassed request in the hourly usage snapshot of the entity and resource (attribute
   * `bypassed`; the aggregator's updates leave it alone): one `UpdateItem`.
   */
  countBypassed(
    entityId: string,
    resource: string,
    atMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    return this.addToHour("bypassed", 1, entityId, resource, atMs, signal);
  }

  /**
   * Adds `n` to a counter (`bypassed`, `refused`) of the hourly usage snapshot of the entity and
   * resource that holds `atMs`, making the item if missing (keys, and a TTL only if it has none;
   * the aggregator's updates leave the counters alone): one `UpdateItem`.
   */
  async addToHour(
    counter: "bypassed" | "refused",
    n: number,
    entityId: string,
    resource: string,
    atMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const { startMs, endMs } = windowAt("hourly", atMs);
    const windowStart = isoSeconds(startMs);
    await send(this.#client, UpdateItemCommand, {
      TableName: this.#table,
      Key: {
        PK: { S: this.#keys.entityPk(entityId) },
        SK: { S: usageSk(resource, "hourly", windowStart) },
      },
      UpdateExpression: "SET entityId = :e, #r = :r, #w = :w, windowStart = :ws, " +
        "windowEnd = :we, #ttl = if_not_exists(#ttl, :ttl) ADD #n :n",
      ExpressionAttributeNames: {
        "#r": "resource",
        "#w": "window",
        "#ttl": keys.TTL,
        "#n": counter,
      },
      ExpressionAttributeValues: {
        ":e": { S: entityId },
        ":r": { S: resource },
        ":w": { S: "hourly" },
        ":ws": { S: windowStart },
        ":we": { S: isoSeconds(endMs) },
        ":ttl": { N: String(Math.floor(endMs / 1000) + BYPASS_RETENTION_DAYS * 86_400) },
        ":n": { N: String(n) },
      },
    }, signal);
  }
}

/**
 * Thrown when a resource's controls changed between their read and a write that names the state
 * it replaces (`AuditRecord.replaces`): the change is decided again on what is stored now.
 *
 * @example
 * ```ts
 * import { ControlsChanged } from "./control_store.ts";
 * console.assert(new ControlsChanged().name === "ControlsChanged");
 * ```
 */
export class ControlsChanged extends Error {
  constructor() {
    super("the resource's controls changed meanwhile");
    this.name = "ControlsChanged";
  }
}

/** The controls of a `#CONTROL#{resource}` item. */
export function parseResourceControls(item: Record<string, AttributeValue>): ResourceControls {
  return item.disabled?.BOOL ? { disabled: true } : {};
}
