/**
 * {@link MemoryLimitsStore}: a `LimitsStore` in a process's memory, with the library's entity
 * rules (a parent exists and is top-level; an entity with children is not deleted).
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";
import { EntityExistsError, EntityNotFoundError } from "../errors.ts";
import type { Limit } from "../limit.ts";
import type { CreateEntityOptions } from "../options.ts";
import { ENTITY_WIDE } from "./state.ts";
import type { FileEntity, LimitsStore, StoredLimitSet } from "./store.ts";

/**
 * A `LimitsStore` held in memory: to try a limits file, or to test code that plans and applies
 * one, without a table.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { MemoryLimitsStore } from "./memory.ts";
 * const store = new MemoryLimitsStore();
 * await store.createEntity({ entityId: "proj-1" });
 * await store.setLimits("proj-1", undefined, [Limit.perMinute("rpm", 100)]);
 * console.assert((await store.listStoredLimits("proj-1")).length === 1);
 * ```
 */
export class MemoryLimitsStore implements LimitsStore {
  /** System defaults. */
  system: Limit[] = [];
  /** Resource defaults. */
  readonly resources: Map<string, Limit[]> = new Map();
  /** Entities. */
  readonly entities: Map<string, FileEntity> = new Map();
  /** Entity limit sets, by entity then resource (`*`: entity-wide). */
  readonly limits: Map<string, Map<string, Limit[]>> = new Map();
  /** How many writes were made. */
  writes = 0;

  /** The system defaults. */
  getSystemDefaults(): Promise<Limit[]> {
    return Promise.resolve([...this.system]);
  }
  /** Stores the system defaults. */
  setSystemDefaults(limits: Limit[]): Promise<void> {
    this.writes++;
    this.system = [...limits];
    return Promise.resolve();
  }
  /** Deletes the system defaults. */
  deleteSystemDefaults(): Promise<void> {
    this.writes++;
    this.system = [];
    return Promise.resolve();
  }
  /** Resources with defaults. */
  listResources(): Promise<string[]> {
    return Promise.resolve([...this.resources.keys()]);
  }
  /** A resource's defaults. */
  getResourceDefaults(resource: string): Promise<Limit[]> {
    return Promise.resolve([...(this.resources.get(resource) ?? [])]);
  }
  /** Stores a resource's defaults. */
  setResourceDefaults(resource: string, limits: Limit[]): Promise<void> {
    this.writes++;
    this.resources.set(resource, [...limits]);
    return Promise.resolve();
  }
  /** Deletes a resource's defaults. */
  deleteResourceDefaults(resource: string): Promise<void> {
    this.writes++;
    this.resources.delete(resource);
    return Promise.resolve();
  }
  /** Every entity. */
  listEntities(): Promise<FileEntity[]> {
    return Promise.resolve([...this.entities.values()].map((e) => structuredClone(e)));
  }
  /** An entity's limit sets. */
  listStoredLimits(entityId: string): Promise<StoredLimitSet[]> {
    const sets = [...(this.limits.get(entityId) ?? new Map<string, Limit[]>())];
    return Promise.resolve(
      sets.map(([r, limits]) => (r === ENTITY_WIDE ? { limits } : { resource: r, limits })),
    );
  }
  /** Creates an entity (its parent must exist and be top-level). */
  async createEntity(options: CreateEntityOptions): Promise<void> {
    if (this.entities.has(options.entityId)) throw new EntityExistsError(options.entityId);
    if (options.parentId !== undefined) this.#checkParent(options.entityId, options.parentId);
    this.writes++;
    this.entities.set(options.entityId, {
      entityId: options.entityId,
      cascade: options.cascade ?? false,
      metadata: { ...options.metadata },
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.parentId === undefined ? {} : { parentId: options.parentId }),
    });
    await Promise.resolve();
  }
  /** Moves an entity. */
  setParent(entityId: string, parentId: string | undefined): Promise<void> {
    const e = this.#get(entityId);
    if (parentId !== undefined) {
      this.#checkParent(entityId, parentId);
      if ([...this.entities.values()].some((c) => c.parentId === entityId)) {
        throw new ValidationError("parentId", parentId, `${entityId} has children`);
      }
    }
    this.writes++;
    if (parentId === undefined) delete e.parentId;
    else e.parentId = parentId;
    return Promise.resolve();
  }
  /** Sets the cascade flag. */
  setCascade(entityId: string, cascade: boolean): Promise<void> {
    this.writes++;
    this.#get(entityId).cascade = cascade;
    return Promise.resolve();
  }
  /** Stores an entity's limits. */
  setLimits(entityId: string, resource: string | undefined, limits: Limit[]): Promise<void> {
    this.#get(entityId);
    this.writes++;
    const sets = this.limits.get(entityId) ?? new Map<string, Limit[]>();
    sets.set(resource ?? ENTITY_WIDE, [...limits]);
    this.limits.set(entityId, sets);
    return Promise.resolve();
  }
  /** Deletes an entity's limits. */
  deleteLimits(entityId: string, resource: string | undefined): Promise<void> {
    this.writes++;
    this.limits.get(entityId)?.delete(resource ?? ENTITY_WIDE);
    return Promise.resolve();
  }
  /** Deletes an entity and its limits (refused while it has children). */
  deleteEntity(entityId: string): Promise<void> {
    const child = [...this.entities.values()].find((c) => c.parentId === entityId);
    if (child) {
      throw new ValidationError("entityId", entityId, `has children (${child.entityId})`);
    }
    this.writes++;
    this.entities.delete(entityId);
    this.limits.delete(entityId);
    return Promise.resolve();
  }

  #get(entityId: string): FileEntity {
    const e = this.entities.get(entityId);
    if (!e) throw new EntityNotFoundError(entityId);
    return e;
  }

  #checkParent(entityId: string, parentId: string): void {
    const parent = this.entities.get(parentId);
    if (!parent) throw new ValidationError("parentId", parentId, "names no entity");
    if (parent.parentId !== undefined || parentId === entityId) {
      throw new ValidationError("parentId", parentId, "must be a top-level entity");
    }
  }
}
