/**
 * Default limits in DynamoDB: a resource's (`SYSTEM` / `#LIMIT#{resource}`) and the system's
 * (`SYSTEM` / `#LIMIT#*`), items shaped as an entity's stored limits but without a shard count;
 * and the listing of an entity's stored limits (every level it has).
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  GetItemCommand,
  type TransactWriteItem,
} from "@aws-sdk/client-dynamodb";
import { type AuditRecord, auditSk } from "./audit_record.ts";
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

/** Writes one item alone, or with its audit event in one transaction (the entity store's). */
export type AuditedWrite = (
  op: TransactWriteItem,
  audit: AuditRecord | undefined,
  signal?: AbortSignal,
) => Promise<void>;

/**
 * Stored default limits with the sort key of the audit event that made them (`auditSk`; absent
 * for items written without one).
 */
export interface StoredDefaults {
  /** The limits. */
  limits: Limit[];
  /** The sort key of the audit event of the change that stored them. */
  auditSk?: string;
}

/**
 * Thrown when default limits changed between their read and a write that names the state it
 * replaces (`AuditRecord.replaces`): the change is decided again on what is stored now.
 *
 * @example
 * ```ts
 * import { DefaultsChanged } from "./defaults_store.ts";
 * console.assert(new DefaultsChanged().name === "DefaultsChanged");
 * ```
 */
export class DefaultsChanged extends Error {
  constructor() {
    super("the default limits changed meanwhile");
    this.name = "DefaultsChanged";
  }
}

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

  /** Stores the default limits of a resource (or the system's), replacing earlier ones. */
  async putDefaults(
    resource: string | undefined,
    limits: Limit[],
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void> {
    const Item: Record<string, AttributeValue> = {
      ...this.#keys.systemKey(keys.limitSk(resource)),
      limits: limitsAttr(limits),
    };
    if (audit) Item.auditSk = { S: auditSk(audit.atMs, audit.eventId) };
    await this.#guarded(
      { Put: { TableName: this.#table, Item, ...replaces(audit) } },
      audit,
      signal,
    );
  }

  /** The default limits of a resource (or the system's); `undefined` when none are stored. */
  async getDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
  ): Promise<Limit[] | undefined> {
    return (await this.getDefaultsState(resource, signal))?.limits;
  }

  /** The default limits of a resource (or the system's) with their `auditSk`, when stored. */
  async getDefaultsState(
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
    return sk === undefined ? { limits: parseLimits(out.Item) } : {
      limits: parseLimits(out.Item),
      auditSk: sk,
    };
  }

  /** Deletes the default limits of a resource (or the system's). */
  async deleteDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void> {
    const Key = this.#keys.systemKey(keys.limitSk(resource));
    await this.#guarded(
      { Delete: { TableName: this.#table, Key, ...replaces(audit) } },
      audit,
      signal,
    );
  }

  /** Writes `op` with its audit event; a failed `replaces` condition throws `DefaultsChanged`. */
  async #guarded(op: TransactWriteItem, audit?: AuditRecord, signal?: AbortSignal): Promise<void> {
    try {
      await this.#write(op, audit, signal);
    } catch (err) {
      if (err instanceof Error && err.name === "ConditionalCheckFailedException") {
        throw new DefaultsChanged();
      }
      throw err;
    }
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

/** The condition that the item still carries the event `audit.replaces` names, when it names one. */
function replaces(audit: AuditRecord | undefined): {
  ConditionExpression?: string;
  ExpressionAttributeValues?: Record<string, AttributeValue>;
} {
  if (audit?.replaces === undefined) return {};
  if (audit.replaces === null) return { ConditionExpression: "attribute_not_exists(auditSk)" };
  return {
    ConditionExpression: "auditSk = :replaces",
    ExpressionAttributeValues: { ":replaces": { S: audit.replaces } },
  };
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
