/**
 * {@link loadEntityConfig}: everything the hot path needs of some entities (metadata, stored
 * limits, default limits, a resource's controls), in one BatchGetItem.
 *
 * @module
 */

import {
  type AttributeValue,
  BatchGetItemCommand,
  type DynamoDBClient,
} from "@aws-sdk/client-dynamodb";
import { type Item, send, untilProcessed } from "./calls.ts";
import { readSystemItem, systemConfigKeys } from "./defaults_store.ts";
import {
  type Entity,
  parseEntity,
  parseShards,
  type ResourceControls,
  type StoredShards,
} from "./entity_items.ts";
import * as keys from "./keys.ts";
import type { KeySpace } from "./keyspace.ts";
import type { Limit } from "./limit.ts";
import { parseLimits } from "./limit_items.ts";

/**
 * What `EntityStore.loadConfig` ({@link loadEntityConfig}) found of one entity.
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

/**
 * Everything the hot path needs of some entities, in one BatchGetItem: metadata and the
 * resource's and entity-wide stored limits of each; with `want.defaults`, the resource's and the
 * system's default limits and the resource's controls too (set on every entity's config).
 *
 * @example
 * ```ts ignore
 * import { loadEntityConfig } from "./entity_config.ts";
 * const configs = await loadEntityConfig(client, "rate_limits", KeySpace.DEFAULT, ["key-1"], "api",
 *   { meta: true, limits: true });
 * ```
 */
export async function loadEntityConfig(
  client: DynamoDBClient,
  tableName: string,
  space: KeySpace,
  entityIds: string[],
  resource: string,
  want: { meta: boolean; limits: boolean; defaults?: boolean },
  signal?: AbortSignal,
): Promise<Map<string, EntityConfig>> {
  const wanted: Record<string, AttributeValue>[] = want.defaults
    ? systemConfigKeys(resource, space)
    : [];
  for (const id of entityIds) {
    const pk = { S: space.entityPk(id) };
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
        client,
        BatchGetItemCommand,
        { RequestItems: { [tableName]: { Keys: left, ConsistentRead: true } } },
        signal,
      );
      found.push(...(out.Responses?.[tableName] ?? []));
      return out.UnprocessedKeys?.[tableName]?.Keys;
    },
    10,
    200,
  );
  const result = new Map<string, EntityConfig>();
  for (const id of entityIds) result.set(id, {});
  const system: EntityConfig = {};
  for (const item of found) {
    if (readSystemItem(item, resource, system, space)) continue;
    const id = space.entityIdOf(item.PK.S ?? "");
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
