/**
 * {@link LimitsStore}: what plan, apply and export read and write, and {@link limiterStore}, the
 * store of a `RateLimiter`.
 *
 * @module
 */

import type { Entity } from "../entities.ts";
import type { Limit } from "../limit.ts";
import type { RateLimiter } from "../limiter.ts";
import type { CreateEntityOptions } from "../options.ts";

/**
 * An entity as the limits file sees it: its id, name, parent, cascade flag and metadata.
 *
 * @example
 * ```ts
 * import type { FileEntity } from "./store.ts";
 * const key: FileEntity = { entityId: "key-1", parentId: "proj-1", cascade: true, metadata: {} };
 * console.assert(key.cascade);
 * ```
 */
export type FileEntity = Pick<Entity, "entityId" | "name" | "parentId" | "cascade" | "metadata">;

/**
 * A stored limit set of an entity: `resource` undefined is the entity-wide set.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import type { StoredLimitSet } from "./store.ts";
 * const set: StoredLimitSet = { limits: [Limit.perMinute("rpm", 100)] };
 * console.assert(set.resource === undefined);
 * ```
 */
export interface StoredLimitSet {
  /** The resource, or undefined for the entity-wide limits. */
  resource?: string;
  /** The stored limits. */
  limits: Limit[];
}

/**
 * The table as `planLimits`, `applyLimits` and `exportLimits` see it: system defaults, resource
 * defaults, entities and their stored limits. {@link limiterStore} gives a `RateLimiter`'s.
 *
 * @example
 * ```ts
 * import type { LimitsStore } from "./store.ts";
 * const reads: (keyof LimitsStore)[] = ["getSystemDefaults", "listResources", "listEntities"];
 * console.assert(reads.length === 3);
 * ```
 */
export interface LimitsStore {
  /** The system default limits ([] when none). */
  getSystemDefaults(): Promise<Limit[]>;
  /** Stores the system default limits (replaces them). */
  setSystemDefaults(limits: Limit[]): Promise<void>;
  /** Deletes the system default limits. */
  deleteSystemDefaults(): Promise<void>;
  /** The resources that have default limits. */
  listResources(): Promise<string[]>;
  /** A resource's default limits ([] when none). */
  getResourceDefaults(resource: string): Promise<Limit[]>;
  /** Stores a resource's default limits (replaces them). */
  setResourceDefaults(resource: string, limits: Limit[]): Promise<void>;
  /** Deletes a resource's default limits. */
  deleteResourceDefaults(resource: string): Promise<void>;
  /** Every entity. */
  listEntities(): Promise<FileEntity[]>;
  /** An entity's stored limit sets. */
  listStoredLimits(entityId: string): Promise<StoredLimitSet[]>;
  /** Creates an entity. */
  createEntity(entity: CreateEntityOptions): Promise<void>;
  /** Moves an entity under `parentId`, or makes it top-level (undefined). */
  setParent(entityId: string, parentId: string | undefined): Promise<void>;
  /** Sets whether the entity's acquires cascade to its parent. */
  setCascade(entityId: string, cascade: boolean): Promise<void>;
  /** Stores an entity's limits on `resource` (undefined: entity-wide), replacing them. */
  setLimits(entityId: string, resource: string | undefined, limits: Limit[]): Promise<void>;
  /** Deletes an entity's limits on `resource` (undefined: entity-wide). */
  deleteLimits(entityId: string, resource: string | undefined): Promise<void>;
  /** Deletes an entity with its stored limits. */
  deleteEntity(entityId: string): Promise<void>;
}

/**
 * The `RateLimiter` methods {@link limiterStore} calls, with their real signatures (so the
 * compiler checks the store against the limiter).
 *
 * @example
 * ```ts
 * import type { LimiterAdmin } from "./store.ts";
 * const names: (keyof LimiterAdmin)[] = ["setSystemDefaults", "listEntities", "setParent"];
 * console.assert(names.includes("setParent"));
 * ```
 */
export type LimiterAdmin = Pick<
  RateLimiter,
  | "setSystemDefaults"
  | "getSystemDefaults"
  | "deleteSystemDefaults"
  | "setResourceDefaults"
  | "getResourceDefaults"
  | "deleteResourceDefaults"
  | "listResources"
  | "createEntity"
  | "deleteEntity"
  | "setLimits"
  | "deleteLimits"
  | "listEntities"
  | "listStoredLimits"
  | "setParent"
  | "setCascade"
>;

const ADMIN_METHODS: (keyof LimiterAdmin)[] = [
  "setSystemDefaults",
  "getSystemDefaults",
  "deleteSystemDefaults",
  "setResourceDefaults",
  "getResourceDefaults",
  "deleteResourceDefaults",
  "listResources",
  "createEntity",
  "deleteEntity",
  "setLimits",
  "deleteLimits",
  "listEntities",
  "listStoredLimits",
  "setParent",
  "setCascade",
];

/**
 * The {@link LimitsStore} of a `RateLimiter`. Entities are read a page at a time from the
 * entity index, every page. Throws a `TypeError` naming the methods a (JavaScript) caller's
 * object lacks.
 *
 * @example
 * ```ts ignore
 * import { RateLimiter } from "@zae/limiter";
 * import { exportLimits, limiterStore } from "@zae/limiter/limits-file";
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * console.log(await exportLimits(limiterStore(limiter)));
 * ```
 */
export function limiterStore(limiter: LimiterAdmin): LimitsStore {
  const missing = ADMIN_METHODS.filter((m) => typeof limiter[m] !== "function");
  if (missing.length > 0) {
    throw new TypeError(`limiterStore: the limiter has no ${missing.join(", ")}`);
  }
  return {
    getSystemDefaults: () => limiter.getSystemDefaults(),
    setSystemDefaults: async (limits) => void await limiter.setSystemDefaults({ limits }),
    deleteSystemDefaults: async () => void await limiter.deleteSystemDefaults(),
    listResources: () => limiter.listResources(),
    getResourceDefaults: (resource) => limiter.getResourceDefaults({ resource }),
    setResourceDefaults: async (resource, limits) =>
      void await limiter.setResourceDefaults({ resource, limits }),
    deleteResourceDefaults: async (resource) =>
      void await limiter.deleteResourceDefaults({ resource }),
    listEntities: async () => {
      const all: FileEntity[] = [];
      let cursor: string | undefined;
      do {
        const page = await limiter.listEntities(cursor === undefined ? {} : { cursor });
        all.push(...page.entities);
        cursor = page.cursor;
      } while (cursor !== undefined);
      return all;
    },
    listStoredLimits: (entityId) => limiter.listStoredLimits({ entityId }),
    createEntity: async (entity) => void await limiter.createEntity(entity),
    setParent: async (entityId, parentId) =>
      void await limiter.setParent(parentId === undefined ? { entityId } : { entityId, parentId }),
    setCascade: async (entityId, cascade) => void await limiter.setCascade({ entityId, cascade }),
    setLimits: async (entityId, resource, limits) =>
      void await limiter.setLimits(
        resource === undefined ? { entityId, limits } : { entityId, resource, limits },
      ),
    deleteLimits: async (entityId, resource) =>
      void await limiter.deleteLimits(
        resource === undefined ? { entityId } : { entityId, resource },
      ),
    deleteEntity: async (entityId) => void await limiter.deleteEntity(entityId),
  };
}
