/**
 * Plans and apply results as text (a readable diff) and as JSON.
 *
 * @module
 */

import { escapeControls } from "../error_base.ts";
import type { ApplyResult } from "./apply.ts";
import { type LimitSpec, showSpec } from "./model.ts";
import type { Plan, PlanChange } from "./plan.ts";

const SIGN = { add: "+", change: "~", remove: "-" } as const;

/**
 * How many changes of each kind a plan holds.
 *
 * @example
 * ```ts
 * import { planCounts } from "./format.ts";
 * console.assert(planCounts({ prune: false, steps: [] }).add === 0);
 * ```
 */
export function planCounts(plan: Plan): { add: number; change: number; remove: number } {
  const counts = { add: 0, change: 0, remove: 0 };
  for (const s of plan.steps) for (const c of s.changes) counts[c.action]++;
  return counts;
}

/**
 * A plan as a diff: one line per step (`+` add, `~` change, `-` remove), its changes indented
 * below, and a summary line.
 *
 * @example
 * ```ts
 * import { formatPlan } from "./format.ts";
 * console.assert(formatPlan({ prune: false, steps: [] }) === "No changes: the table matches the file.\n");
 * ```
 */
export function formatPlan(plan: Plan): string {
  if (plan.steps.length === 0) return "No changes: the table matches the file.\n";
  const lines: string[] = [];
  for (const step of plan.steps) {
    const actions = new Set(step.changes.map((c) => c.action));
    const sign = actions.size === 1 ? SIGN[[...actions][0]] : "~";
    lines.push(`${sign} ${step.subject}`);
    for (const c of step.changes) {
      if (c.what === "entity") continue;
      lines.push(`    ${SIGN[c.action]} ${showChange(c)}`);
    }
  }
  const n = planCounts(plan);
  lines.push(
    "",
    `Plan: ${n.add} to add, ${n.change} to change, ${n.remove} to remove.` +
      (plan.prune ? "" : " (Without --prune: nothing the file does not name is removed.)"),
  );
  return lines.map(escapeControls).join("\n") + "\n";
}

function showChange(c: PlanChange): string {
  const show = (v: PlanChange["before"]) =>
    v === null || v === undefined
      ? "none"
      : typeof v === "object" && ("rate" in v || "quota" in v || "concurrent" in v)
      ? showSpec(v as LimitSpec)
      : typeof v === "object"
      ? JSON.stringify(v)
      : String(v);
  if (c.action === "add") return c.after === undefined ? c.what : `${c.what}: ${show(c.after)}`;
  if (c.action === "remove") {
    return c.before === undefined ? c.what : `${c.what}: ${show(c.before)}`;
  }
  return `${c.what}: ${show(c.before)} -> ${show(c.after)}`;
}

/**
 * A plan as plain data: each step's op, subject, entity, resource and changes.
 *
 * @example
 * ```ts
 * import { planJson } from "./format.ts";
 * console.assert(planJson({ prune: true, steps: [] }).prune === true);
 * ```
 */
export function planJson(plan: Plan): {
  prune: boolean;
  counts: { add: number; change: number; remove: number };
  steps: {
    op: string;
    subject: string;
    entityId?: string;
    resource?: string;
    changes: PlanChange[];
  }[];
} {
  return {
    prune: plan.prune,
    counts: planCounts(plan),
    steps: plan.steps.map((s) => ({
      op: s.op,
      subject: s.subject,
      ...(s.entityId === undefined ? {} : { entityId: s.entityId }),
      ...(s.resource === undefined ? {} : { resource: s.resource }),
      changes: s.changes,
    })),
  };
}

/**
 * An apply's report: one line per step (`ok`, `FAILED` with the error, `skipped`) and a summary.
 *
 * @example
 * ```ts
 * import { formatApply } from "./format.ts";
 * const text = formatApply({ plan: { prune: false, steps: [] }, results: [], failed: 0 });
 * console.assert(text.includes("nothing to do"));
 * ```
 */
export function formatApply(result: ApplyResult): string {
  if (result.results.length === 0) return "Applied: nothing to do (the table matches the file).\n";
  const lines = result.results.map((r) => {
    const what = `${r.subject} (${r.op})`;
    if (r.status === "ok") return `ok       ${what}`;
    const tag = r.status === "failed" ? "FAILED " : "skipped";
    return `${tag}  ${what}: ${r.error?.name ?? "Error"}: ${r.error?.message ?? ""}`;
  });
  const ok = result.results.length - result.failed;
  lines.push(
    "",
    result.failed === 0
      ? `Applied: ${ok} of ${result.results.length} steps.`
      : `Applied ${ok} of ${result.results.length} steps; ${result.failed} did not ` +
        "(run apply again to finish once the cause is fixed).",
  );
  return lines.map(escapeControls).join("\n") + "\n";
}

/**
 * An apply's result as plain data.
 *
 * @example
 * ```ts
 * import { applyJson } from "./format.ts";
 * console.assert(applyJson({ plan: { prune: false, steps: [] }, results: [], failed: 0 }).ok);
 * ```
 */
export function applyJson(result: ApplyResult): {
  ok: boolean;
  failed: number;
  results: {
    subject: string;
    op: string;
    status: string;
    error?: { type: string; message: string };
  }[];
} {
  return {
    ok: result.failed === 0,
    failed: result.failed,
    results: result.results.map((r) => ({
      subject: r.subject,
      op: r.op,
      status: r.status,
      ...(r.error ? { error: { type: r.error.name, message: r.error.message } } : {}),
    })),
  };
}
