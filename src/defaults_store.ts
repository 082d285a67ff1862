/**
 * Default limits in DynamoDB: a resource's (`SYSTEM` / `#LIMIT#{resource}`) and the system's
 * (`SYSTEM` / `#LIMIT#*`), items shaped as an entity's stored limits but without a shard count;
 * and the listing of an entity's stored limits (every level it has).
 *
 * @module
 */

import { type AttributeValue, type DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { type AuditRecord, auditSk } from "./audit_record.ts";
import type { AuditedWrite } from "./audited_write.ts";
import { type Item, queryPages, send } from "./calls.ts";
import * as keys from "./keys.ts";
import { KeySpace } from "./keyspace.ts";
import type { Limit } from "./limit.ts";
import { limitsAttr, parseLimits } from "./limit_items.ts";

/**
 * One stored-limits item of an entity, as {@link RateLimiter.listStoredLimits} returns it.
 *
 * @example
 * ```ts
 * import type { StoredLimitsEntry } from "./defaults_store.ts";
 * import { Limit } from "./limit.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * await limiter.createEntity({ entityId: "key-1" });
 * await limiter.setLimits({ entityId: "key-1", limits: [Limit.perMinute("rpm", 60)] });
 * const [entry]: StoredLimitsEntry[] = await limiter.listStoredLimits({ entityId: "key-1" });
 * console.assert(entry.resource === undefined && entry.limits[0].name === "rpm");
 * ```
 */
export interface StoredLimitsEntry {
  /** The resource; `undefined` for the entity-wide limits (every resource). */
  resource?: string;
  /** The limits. */
  limits: Limit[];
}

/**
 * Default limits as stored: the limits, and the sort key of the audit event of the change that
 * stored them (absent: none recorded).
 *
 * @example
 * ```ts
 * import type { StoredDefaults } from "./defaults_store.ts";
 * import { Limit } from "./limit.ts";
 * const d: StoredDefaults = { limits: [Limit.perMinute("rpm", 60)] };
 * console.assert(d.auditSk === undefined);
 * ```
 */
export interface StoredDefaults {
  /** The limits. */
  limits: Limit[];
  /** The sort key of the audit event that stored them. */
  auditSk?: string;
}

/** A condition of a write, as request fields (empty: none). */
export type WriteCondition = {
  ConditionExpression?: string;
  ExpressionAttributeValues?: Record<string, AttributeValue>;
};

/** Default limits of a table, and the listing of an entity's stored limits. */
export class DefaultsStore {
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #write: AuditedWrite;
  readonly #keys: KeySpace;

  /**
   * @param client DynamoDB client. @param tableName Table.
   * @param write Writes an item with its audit event. @param space The namespace's keys.
   */
  constructor(
    client: DynamoDBClient,
    tableName: string,
    write: AuditedWrite,
    space: KeySpace = KeySpace.DEFAULT,
  ) {
    this.#client = client;
    this.#table = tableName;
    this.#write = write;
    this.#keys = space;
  }

  /**
   * Stores the default limits of a resource (or the system's), replacing earlier ones, with the
   * audit event's sort key; `condition` (the audit record's `replaces`) must hold.
   */
  async putDefaults(
    resource: string | undefined,
    limits: Limit[],
    signal?: AbortSignal,
    audit?: AuditRecord,
    condition?: WriteCondition,
  ): Promise<void> {
    const Item: Record<string, AttributeValue> = {
      ...this.#keys.systemKey(keys.limitSk(resource)),
      limits: limitsAttr(limits),
    };
    if (audit) Item.auditSk = { S: auditSk(audit.atMs, audit.eventId) };
    await this.#write({ Put: { TableName: this.#table, Item, ...condition } }, audit, signal);
  }

  /**
   * The default limits of a resource (or the system's), with the sort key of the audit event
   * that stored them; `undefined` when none are stored.
   */
  async getDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
  ): Promise<StoredDefaults | undefined> {
    const out = await send(this.#client, GetItemCommand, {
      TableName: this.#table,
      Key: this.#keys.systemKey(keys.limitSk(resource)),
      ConsistentRead: true,
    }, signal);
    if (!out.Item) return undefined;
    const sk = out.Item.auditSk?.S;
    return { limits: parseLimits(out.Item), ...(sk === undefined ? {} : { auditSk: sk }) };
  }

  /** Deletes the default limits of a resource (or the system's); `condition` must hold. */
  async deleteDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
    audit?: AuditRecord,
    condition?: WriteCondition,
  ): Promise<void> {
    const Key = this.#keys.systemKey(keys.limitSk(resource));
    await this.#write({ Delete: { TableName: this.#table, Key, ...condition } }, audit, signal);
  }

  /** The resources with default limits, sorted. */
  async listDefaultResources(signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    for await (const items of this.#limitItems(this.#keys.systemPk(), signal)) {
      for (const item of items) {
        const resource = resourceOfLimitSk(item.SK.S ?? "");
        if (resource !== undefined) out.push(resource);
      }
    }
    return out.sort();
  }

  /** Every stored-limits item of an entity: entity-wide first, then by resource. */
  async listStoredLimits(entityId: string, signal?: AbortSignal): Promise<StoredLimitsEntry[]> {
    const out: StoredLimitsEntry[] = [];
    for await (const items of this.#limitItems(this.#keys.entityPk(entityId), signal)) {
      for (const item of items) {
        const resource = resourceOfLimitSk(item.SK.S ?? "");
        out.push(
          resource === undefined
            ? { limits: parseLimits(item) }
            : { resource, limits: parseLimits(item) },
        );
      }
    }
    return out.sort((a, b) =>
      a.resource === b.resource
        ? 0
        : a.resource === undefined
        ? -1
        : b.resource === undefined
        ? 1
        : a.resource < b.resource
        ? -1
        : 1
    );
  }

  /** The pages of a partition's `#LIMIT#` items, strongly consistent. */
  #limitItems(pk: string, signal?: AbortSignal): AsyncGenerator<Item[]> {
    return queryPages(this.#client, {
      TableName: this.#table,
      KeyConditionExpression: "PK = :pk AND begins_with(SK, :limit)",
      ExpressionAttributeValues: { ":pk": { S: pk }, ":limit": { S: keys.LIMIT_PREFIX } },
      ConsistentRead: true,
    }, signal);
  }
}

/** The resource of a `#LIMIT#` sort key; `undefined` for `#LIMIT#*` (every resource). */
function resourceOfLimitSk(sk: string): string | undefined {
  const rest = sk.slice(keys.LIMIT_PREFIX.length);
  return rest === keys.ALL_RESOURCES ? undefined : rest;
}

/** What the system partition holds for one resource: its defaults, the system's, its controls. */
export interface SystemConfig {
  /** The resource's default limits. */
  resourceDefaults?: Limit[];
  /** The system default limits. */
  systemDefaults?: Limit[];
  /** The resource's controls, when any is set. */
  resourceControls?: { disabled?: boolean };
}

/** The keys of the system items the config of a call on `resource` reads. */
export function systemConfigKeys(
  resource: string,
  space: KeySpace = KeySpace.DEFAULT,
): Record<string, AttributeValue>[] {
  return [
    space.systemKey(keys.limitSk(resource)),
    space.systemKey(keys.limitSk()),
    space.systemKey(keys.controlSk(resource)),
  ];
}

/**
 * Puts a system item read by {@link systemConfigKeys} into `into`; false when `item` is not one
 * (an entity's item).
 */
export function readSystemItem(
  item: Item,
  resource: string,
  into: SystemConfig,
  space: KeySpace = KeySpace.DEFAULT,
): boolean {
  if (item.PK?.S !== space.systemPk()) return false;
  const sk = item.SK?.S;
  if (sk === keys.limitSk(resource)) into.resourceDefaults = parseLimits(item);
  else if (sk === keys.limitSk()) into.systemDefaults = parseLimits(item);
  else if (sk === keys.controlSk(resource) && item.disabled?.BOOL) {
    into.resourceControls = { disabled: true };
  }
  return true;
}
