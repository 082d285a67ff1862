/**
 * {@link planLimits}: what applying a limits file would change in the table, as ordered steps
 * (one store call each) with their changes (per entity, limit set and limit, before and after).
 *
 * @module
 */

import type { Limit } from "../limit.ts";
import { checkParentsInTable } from "./graph.ts";
import { type LimitsFile, LimitsFileError, limitToSpec } from "./model.ts";
import type { Plan, PlanChange, PlanOptions, PlanStep } from "./plan_types.ts";
import { compare, ENTITY_WIDE, readState, type TableState } from "./state.ts";
import type { LimitsStore } from "./store.ts";

export type { Plan, PlanChange, PlanOptions, PlanStep };

/**
 * Compares a file with the table and plans the steps. Without `prune`, nothing the file does not
 * name is removed: not an entity, a limit set, nor one limit of a set. Throws a
 * `LimitsFileError` (nothing written) when the file's parents do not fit the table.
 *
 * @example
 * ```ts
 * import { parseLimitsFile, planLimits } from "./mod.ts";
 * import { MemoryLimitsStore } from "./memory.ts";
 * const file = parseLimitsFile("system:\n  limits: [{ name: rpm, rate: 100, per: minute }]\n");
 * const plan = await planLimits(file, new MemoryLimitsStore());
 * console.assert(plan.steps[0].op === "setSystemDefaults");
 * ```
 */
export async function planLimits(
  file: LimitsFile,
  store: LimitsStore,
  options: PlanOptions = {},
): Promise<Plan> {
  return planAgainst(file, await readState(store), options);
}

/** {@link planLimits} against a state already read. */
export function planAgainst(file: LimitsFile, state: TableState, options: PlanOptions = {}): Plan {
  const prune = options.prune ?? false;
  const problems = checkParentsInTable(
    file,
    [...state.entities.values()].map((e) => e.entity),
    prune,
  );
  if (problems.length > 0) throw new LimitsFileError(file.path, problems);
  const steps: PlanStep[] = [];
  const add = (step: PlanStep) => void steps.push(step);

  const system = diffSet(state.system, file.system, prune);
  if (system) {
    add({
      key: "system",
      subject: "system defaults",
      needs: [],
      ...(system.limits ? { op: "setSystemDefaults", limits: system.limits } : {
        op: "deleteSystemDefaults",
      }),
      changes: system.changes,
    });
  }
  const resources = [...new Set([...state.resources.keys(), ...file.resources.keys()])].sort(
    compare,
  );
  for (const resource of resources) {
    const d = diffSet(state.resources.get(resource), file.resources.get(resource), prune);
    if (!d) continue;
    add({
      key: `resource:${resource}`,
      subject: `resource ${resource} defaults`,
      resource,
      needs: [],
      ...(d.limits ? { op: "setResourceDefaults", limits: d.limits } : {
        op: "deleteResourceDefaults",
      }),
      changes: d.changes,
    });
  }

  // Entities: detach, then create or attach top-level ones and leaves before current parents.
  const ids = [...file.entities.keys()].sort(compare);
  const creates: PlanStep[] = [];
  const detaches: PlanStep[] = [];
  const attaches: PlanStep[] = [];
  const others: PlanStep[] = [];
  const hasChildren = new Set(
    [...state.entities.values()].map((e) => e.entity.parentId).filter((p) => p !== undefined),
  );
  for (const id of ids) {
    const spec = file.entities.get(id)!;
    const stored = state.entities.get(id)?.entity;
    if (!stored) {
      const changes: PlanChange[] = [{ action: "add", what: "entity" }];
      if (spec.parentId) changes.push({ action: "add", what: "parent", after: spec.parentId });
      if (spec.cascade) changes.push({ action: "add", what: "cascade", after: true });
      if (spec.name !== undefined) changes.push({ action: "add", what: "name", after: spec.name });
      creates.push({
        key: `entity:${id}`,
        op: "createEntity",
        subject: `entity ${id}`,
        entityId: id,
        needs: [],
        changes,
        cascade: spec.cascade,
        ...(spec.parentId === undefined ? {} : { parentId: spec.parentId }),
        ...(spec.name === undefined ? {} : { name: spec.name }),
        ...(spec.metadata === undefined ? {} : { metadata: spec.metadata }),
      });
      continue;
    }
    if (stored.parentId !== spec.parentId) {
      const step: PlanStep = {
        key: `entity:${id}`,
        op: "setParent",
        subject: `entity ${id}`,
        entityId: id,
        needs: [],
        changes: [{
          action: spec.parentId === undefined ? "remove" : stored.parentId ? "change" : "add",
          what: "parent",
          before: stored.parentId ?? null,
          after: spec.parentId ?? null,
        }],
        ...(spec.parentId === undefined ? {} : { parentId: spec.parentId }),
      };
      (spec.parentId === undefined ? detaches : attaches).push(step);
    }
    if (stored.cascade !== spec.cascade) {
      others.push({
        key: `cascade:${id}`,
        op: "setCascade",
        subject: `entity ${id}`,
        entityId: id,
        cascade: spec.cascade,
        needs: [`entity:${id}`],
        changes: [{
          action: "change",
          what: "cascade",
          before: stored.cascade,
          after: spec.cascade,
        }],
      });
    }
    const fixed: [string, unknown, unknown][] = [
      ["name", stored.name, spec.name],
      ["metadata", sortedJson(stored.metadata), spec.metadata && sortedJson(spec.metadata)],
    ];
    for (const [what, before, after] of fixed) {
      if (after === undefined || before === after) continue;
      const shown = (v: unknown) =>
        what === "name"
          ? (v as string | undefined) ?? null
          : v === undefined
          ? null
          : JSON.parse(v as string);
      others.push({
        key: `${what}:${id}`,
        op: "unsupported",
        subject: `entity ${id}`,
        entityId: id,
        needs: [],
        changes: [{ action: "change", what, before: shown(before), after: shown(after) }],
        reason: `the ${what} of an existing entity cannot be changed: write the stored ${what} ` +
          `in the file, or delete the entity and apply again`,
      });
    }
  }
  const keys = new Set([...creates, ...attaches].map((s) => s.key));
  for (const s of [...creates, ...attaches]) {
    if (s.parentId !== undefined && keys.has(`entity:${s.parentId}`)) {
      s.needs.push(`entity:${s.parentId}`);
    }
  }
  const tier = (s: PlanStep) => s.parentId === undefined ? 0 : hasChildren.has(s.entityId!) ? 2 : 1;
  for (const s of detaches) add(s);
  for (const s of [...creates, ...attaches].sort((a, b) => tier(a) - tier(b))) add(s);
  for (const s of others) add(s);

  // Entity limit sets; then, with prune, what the file does not name.
  const removals: PlanStep[] = [];
  for (const [id, stored] of state.entities) {
    if (!file.entities.has(id) && prune) {
      removals.push({
        key: `delete:${id}`,
        op: "deleteEntity",
        subject: `entity ${id}`,
        entityId: id,
        needs: [],
        changes: [
          { action: "remove", what: "entity" },
          ...[...stored.limits].flatMap(([r, list]) =>
            list.map((l): PlanChange => ({
              action: "remove",
              what: `limit ${l.name}${r === ENTITY_WIDE ? "" : ` on ${r}`}`,
              before: limitToSpec(l),
            }))
          ),
        ],
      });
    }
  }
  for (const id of ids) {
    const wanted = file.entities.get(id)!.limits;
    const current = state.entities.get(id)?.limits ?? new Map<string, Limit[]>();
    const names = [...new Set([...current.keys(), ...wanted.keys()])].sort(compare);
    for (const r of names) {
      const d = diffSet(current.get(r), wanted.get(r), prune);
      if (!d) continue;
      const resource = r === ENTITY_WIDE ? {} : { resource: r };
      add({
        key: `limits:${id}:${r}`,
        subject: `entity ${id} limits ${r === ENTITY_WIDE ? "(entity-wide)" : `on ${r}`}`,
        entityId: id,
        ...resource,
        needs: keys.has(`entity:${id}`) && !state.entities.has(id) ? [`entity:${id}`] : [],
        ...(d.limits ? { op: "setLimits", limits: d.limits } : { op: "deleteLimits" }),
        changes: d.changes,
      });
    }
  }
  // Children before their parents.
  const removed = new Set(removals.map((s) => s.entityId!));
  for (const s of removals) {
    for (const [c, e] of state.entities) {
      if (e.entity.parentId === s.entityId && removed.has(c)) s.needs.push(`delete:${c}`);
    }
  }
  const isChild = (s: PlanStep) => state.entities.get(s.entityId!)?.entity.parentId !== undefined;
  removals.sort((a, b) => Number(isChild(b)) - Number(isChild(a)));
  for (const s of removals) add(s);
  return { prune, steps };
}

/** The limits to store for a set (`undefined`: delete it), and the changes, or `undefined`. */
function diffSet(
  current: Limit[] | undefined,
  wanted: Limit[] | undefined,
  prune: boolean,
): { limits?: Limit[]; changes: PlanChange[] } | undefined {
  const before = new Map((current ?? []).map((l) => [l.name, l]));
  const changes: PlanChange[] = [];
  if (wanted === undefined) {
    if (!prune || before.size === 0) return undefined;
    for (const l of before.values()) {
      changes.push({ action: "remove", what: `limit ${l.name}`, before: limitToSpec(l) });
    }
    return { changes };
  }
  const names = new Set(wanted.map((l) => l.name));
  for (const l of wanted) {
    const old = before.get(l.name);
    if (!old) changes.push({ action: "add", what: `limit ${l.name}`, after: limitToSpec(l) });
    else if (!old.equals(l)) {
      changes.push({
        action: "change",
        what: `limit ${l.name}`,
        before: limitToSpec(old),
        after: limitToSpec(l),
      });
    }
  }
  const kept: Limit[] = [];
  for (const l of before.values()) {
    if (names.has(l.name)) continue;
    if (prune) changes.push({ action: "remove", what: `limit ${l.name}`, before: limitToSpec(l) });
    else kept.push(l);
  }
  return changes.length === 0 ? undefined : { limits: [...wanted, ...kept], changes };
}

function sortedJson(record: Record<string, string>): string {
  return JSON.stringify(
    Object.fromEntries(Object.entries(record).sort(([a], [b]) => compare(a, b))),
  );
}
