/**
 * The in-memory backend's change to an existing entity, with the same rules as DynamoDB's
 * (`src/control_store.ts`).
 *
 * @module
 */

import type { EntityPatch } from "../control_store.ts";
import type { Entity } from "../entities.ts";
import { EntityNotFoundError, ValidationError } from "../errors.ts";

/**
 * The entity `id` of `entities` with `patch` applied (a copy); throws as DynamoDB does when the
 * entity or a new parent is missing, or the new parent has a parent.
 *
 * @example
 * ```ts
 * import { patchEntity } from "./controls.ts";
 * const entities = new Map([["k", { entityId: "k", cascade: false, metadata: {}, createdAt: "" }]]);
 * console.assert(patchEntity(entities, "k", { disabled: true }).disabled === true);
 * ```
 */
export function patchEntity(
  entities: ReadonlyMap<string, Entity>,
  id: string,
  patch: EntityPatch,
): Entity {
  const old = entities.get(id);
  if (!old) throw new EntityNotFoundError(id);
  const parentId = patch.parentId;
  if ("parentId" in patch && parentId !== undefined) {
    const parent = entities.get(parentId);
    if (!parent) throw new EntityNotFoundError(parentId);
    if (parent.parentId !== undefined) {
      throw new ValidationError(
        "parentId",
        parentId,
        `must be a top-level entity, but it has parent ${parent.parentId}`,
      );
    }
  }
  const next: Entity = structuredClone(old);
  for (const flag of ["disabled", "bypass"] as const) {
    if (patch[flag] === true) next[flag] = true;
    else if (patch[flag] === false) delete next[flag];
  }
  if (patch.cascade !== undefined) next.cascade = patch.cascade;
  if ("parentId" in patch) {
    if (parentId === undefined) delete next.parentId;
    else next.parentId = parentId;
  }
  return next;
}
