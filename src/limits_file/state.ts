/**
 * The table's limits as one value ({@link TableState}), read through a `LimitsStore`: what plan
 * compares the file with, and what export writes.
 *
 * @module
 */

import type { Limit } from "../limit.ts";
import type { FileEntity, LimitsStore } from "./store.ts";

/** The key of an entity's entity-wide limit set, as the file writes it. */
export const ENTITY_WIDE = "*";

/**
 * An entity with its stored limit sets (by resource; `*` is the entity-wide set).
 *
 * @example
 * ```ts
 * import type { StoredEntity } from "./state.ts";
 * const e: StoredEntity = { entity: { entityId: "k", cascade: false, metadata: {} },
 *   limits: new Map() };
 * console.assert(e.limits.size === 0);
 * ```
 */
export interface StoredEntity {
  /** The entity. */
  entity: FileEntity;
  /** Its limit sets. */
  limits: Map<string, Limit[]>;
}

/**
 * Every stored limit of the table, and its entities.
 *
 * @example
 * ```ts
 * import type { TableState } from "./state.ts";
 * const empty: TableState = { system: [], resources: new Map(), entities: new Map() };
 * console.assert(empty.system.length === 0);
 * ```
 */
export interface TableState {
  /** System defaults ([] when none). */
  system: Limit[];
  /** Resource defaults by resource. */
  resources: Map<string, Limit[]>;
  /** Entities by id. */
  entities: Map<string, StoredEntity>;
}

/** How many reads run at once. */
const READS_AT_ONCE = 8;

/**
 * Reads the whole state: one call for the system defaults, one per resource with defaults, one
 * listing of the entities and one call per entity for its limits.
 *
 * @example
 * ```ts ignore
 * const state = await readState(limiterStore(limiter));
 * ```
 */
export async function readState(store: LimitsStore): Promise<TableState> {
  const [system, resources, entities] = await Promise.all([
    store.getSystemDefaults(),
    store.listResources(),
    store.listEntities(),
  ]);
  const state: TableState = { system, resources: new Map(), entities: new Map() };
  const sorted = [...resources].sort();
  const lists = await pool(sorted, (r) => store.getResourceDefaults(r));
  sorted.forEach((r, i) => {
    if (lists[i].length > 0) state.resources.set(r, lists[i]);
  });
  const byId = [...entities].sort((a, b) => compare(a.entityId, b.entityId));
  const sets = await pool(byId, (e) => store.listStoredLimits(e.entityId));
  byId.forEach((entity, i) => {
    const limits = new Map<string, Limit[]>();
    const ordered = [...sets[i]].sort((a, b) =>
      compare(a.resource ?? ENTITY_WIDE, b.resource ?? ENTITY_WIDE)
    );
    for (const set of ordered) {
      if (set.limits.length > 0) limits.set(set.resource ?? ENTITY_WIDE, set.limits);
    }
    state.entities.set(entity.entityId, { entity, limits });
  });
  return state;
}

/** Code-point order (locale-independent), for stable output. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function pool<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_AT_ONCE, items.length) }, worker));
  return out;
}
