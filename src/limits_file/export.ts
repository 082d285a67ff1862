/**
 * {@link exportLimits}: the table's limits and entities as a limits file.
 *
 * @module
 */

import { Document, isSeq, visit } from "yaml";
import type { Limit } from "../limit.ts";
import { limitToSpec } from "./model.ts";
import { readState, type TableState } from "./state.ts";
import type { LimitsStore } from "./store.ts";

/**
 * Writes the table's current state as a limits file (YAML): system defaults, resource defaults,
 * and every entity with its name, parent, cascade flag, metadata and limits, sorted by id.
 * Applying it to the same table changes nothing.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { exportLimits } from "./export.ts";
 * import { MemoryLimitsStore } from "./memory.ts";
 * const store = new MemoryLimitsStore();
 * await store.setSystemDefaults([Limit.perMinute("rpm", 100)]);
 * const text = await exportLimits(store);
 * console.assert(text.includes("name: rpm"));
 * ```
 */
export async function exportLimits(store: LimitsStore): Promise<string> {
  return stateToYaml(await readState(store));
}

/** A state as the text of a limits file. */
export function stateToYaml(state: TableState): string {
  const doc: Record<string, unknown> = { version: 1 };
  if (state.system.length > 0) doc.system = { limits: specs(state.system) };
  if (state.resources.size > 0) {
    doc.resources = Object.fromEntries(
      [...state.resources].map(([r, list]) => [r, { limits: specs(list) }]),
    );
  }
  if (state.entities.size > 0) {
    const entities: Record<string, unknown> = {};
    for (const [id, { entity, limits }] of state.entities) {
      const e: Record<string, unknown> = {};
      if (entity.name !== undefined) e.name = entity.name;
      if (entity.parentId !== undefined) e.parent = entity.parentId;
      if (entity.cascade) e.cascade = true;
      if (Object.keys(entity.metadata).length > 0) e.metadata = entity.metadata;
      if (limits.size > 0) {
        e.limits = Object.fromEntries([...limits].map(([r, list]) => [r, specs(list)]));
      }
      entities[id] = e;
    }
    doc.entities = entities;
  }
  const yaml = new Document(doc);
  // One limit per line: `- { name: rpm, rate: 100, per: minute }`.
  visit(yaml, {
    Map(_key, node, path) {
      const limit = (node.has("rate") && node.has("per")) || node.has("quota") ||
        node.has("concurrent");
      if (isSeq(path.at(-1)) && limit) node.flow = true;
    },
  });
  yaml.commentBefore = " zae-limiter limits file (docs/limits-file.schema.json)";
  return yaml.toString({ lineWidth: 0 });
}

function specs(list: Limit[]) {
  return list.map(limitToSpec);
}
