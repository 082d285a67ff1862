/**
 * The parent rules of a limits file: no entity is its own ancestor, and there are two levels at
 * most (a parent has no parent), in the file alone and in the table as the file would leave it.
 *
 * @module
 */

import { fieldKey } from "../validate.ts";
import type { FileProblem, LimitsFile } from "./model.ts";
import type { FileEntity } from "./store.ts";

const parentField = (id: string) => `entities.${fieldKey(id)}.parent`;

/**
 * The parent problems the file shows by itself: an entity its own parent, a cycle, a parent that
 * the file makes a child.
 *
 * @example
 * ```ts
 * import { checkParentsInFile } from "./graph.ts";
 * import { parseLimitsFile } from "./parse.ts";
 * const file = parseLimitsFile("entities:\n  a: { parent: b }\n  b: {}\n");
 * console.assert(checkParentsInFile(file).length === 0);
 * ```
 */
export function checkParentsInFile(file: LimitsFile): FileProblem[] {
  const problems: FileProblem[] = [];
  for (const [id, spec] of file.entities) {
    const parent = spec.parentId;
    if (parent === undefined) continue;
    const field = parentField(id);
    const line = file.lines.get(field) ?? 1;
    if (parent === id) {
      problems.push({ line, field, value: parent, rule: "must differ from the entity's id" });
      continue;
    }
    const chain = [id, parent];
    for (let next = file.entities.get(parent)?.parentId; next !== undefined;) {
      if (chain.includes(next)) break;
      chain.push(next);
      next = file.entities.get(next)?.parentId;
    }
    const grand = file.entities.get(parent)?.parentId;
    if (grand === undefined) continue;
    const last = chain.at(-1)!;
    const cycle = file.entities.get(last)?.parentId;
    const rule = cycle !== undefined && chain.includes(cycle)
      ? `makes a cycle of parents: ${[...chain, cycle].join(" -> ")}`
      : `names ${parent}, which is itself a child (of ${grand}); two levels at most`;
    problems.push({ line, field, value: parent, rule });
  }
  return problems;
}

/**
 * The parent problems of the table as the file would leave it: a parent found neither in the
 * file nor in the table (nor kept, with `prune`), a parent that stays a child, an entity given a
 * parent while the table keeps a child under it.
 *
 * @example
 * ```ts
 * import { checkParentsInTable } from "./graph.ts";
 * import { parseLimitsFile } from "./parse.ts";
 * const file = parseLimitsFile("entities:\n  a: { parent: p }\n");
 * const table = [{ entityId: "p", cascade: false, metadata: {} }];
 * console.assert(checkParentsInTable(file, table, false).length === 0);
 * console.assert(checkParentsInTable(file, [], false).length === 1);
 * ```
 */
export function checkParentsInTable(
  file: LimitsFile,
  table: FileEntity[],
  prune: boolean,
): FileProblem[] {
  // The parent of every entity after apply (undefined: top-level).
  const after = new Map<string, string | undefined>();
  if (!prune) { for (const e of table) after.set(e.entityId, e.parentId); }
  for (const [id, spec] of file.entities) after.set(id, spec.parentId);
  const inTable = new Set(table.map((e) => e.entityId));
  const problems: FileProblem[] = [];
  for (const [id, spec] of file.entities) {
    const field = parentField(id);
    const line = file.lines.get(field) ?? file.lines.get(`entities.${fieldKey(id)}`) ?? 1;
    const parent = spec.parentId;
    if (parent !== undefined) {
      if (!after.has(parent)) {
        const rule = prune && inTable.has(parent)
          ? "is not in the file, so --prune would delete it: declare it in the file"
          : "names no entity of the file or the table";
        problems.push({ line, field, value: parent, rule });
        continue;
      }
      const grand = after.get(parent);
      if (grand !== undefined && !file.entities.has(parent)) {
        problems.push({
          line,
          field,
          value: parent,
          rule: `names ${parent}, a child of ${grand} in the table; two levels at most`,
        });
        continue;
      }
      const child = [...after].find(([c, p]) => p === id && !file.entities.has(c))?.[0];
      if (child !== undefined) {
        problems.push({
          line,
          field,
          value: parent,
          rule: `gives ${id} a parent, but the table keeps ${child} as its child; ` +
            "two levels at most (move the child in the file first)",
        });
      }
    }
  }
  return problems;
}
