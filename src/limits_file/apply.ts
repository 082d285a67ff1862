/**
 * {@link applyLimits}: runs a plan's steps in order and reports each one.
 *
 * @module
 */

import { ValidationError } from "../error_base.ts";
import type { LimitsFile } from "./model.ts";
import { type Plan, planLimits, type PlanOptions, type PlanStep } from "./plan.ts";
import type { LimitsStore } from "./store.ts";

/**
 * What became of one step: `ok`, `failed` (with the error) or `skipped` (a step it needs did not
 * succeed; nothing was tried).
 *
 * @example
 * ```ts
 * import type { StepResult } from "./apply.ts";
 * const r: StepResult = { key: "system", subject: "system defaults", op: "setSystemDefaults",
 *   status: "ok" };
 * console.assert(r.status === "ok");
 * ```
 */
export interface StepResult {
  /** The step's key. */
  key: string;
  /** What it acted on. */
  subject: string;
  /** The store call. */
  op: PlanStep["op"];
  /** The outcome. */
  status: "ok" | "failed" | "skipped";
  /** The error, when it failed, or why it was skipped. */
  error?: Error;
}

/**
 * The outcome of {@link applyLimits}: the plan that ran, and each step's result.
 *
 * @example
 * ```ts
 * import type { ApplyResult } from "./apply.ts";
 * const r: ApplyResult = { plan: { prune: false, steps: [] }, results: [], failed: 0 };
 * console.assert(r.failed === 0);
 * ```
 */
export interface ApplyResult {
  /** The plan applied. */
  plan: Plan;
  /** One result per step, in order. */
  results: StepResult[];
  /** How many steps failed or were skipped. */
  failed: number;
}

/**
 * Makes the table match the file: plans (see `planLimits`), then runs each step in order —
 * defaults, then entities (top-level before children), their limits, and with `prune` the
 * removals (children before parents). A step that fails is reported and does not stop the others,
 * except those that need it. Running it again plans only what is left, so a run stopped half-way
 * is finished by the next, and a second run changes nothing.
 *
 * @example
 * ```ts
 * import { applyLimits, parseLimitsFile, planLimits } from "./mod.ts";
 * import { MemoryLimitsStore } from "./memory.ts";
 * const store = new MemoryLimitsStore();
 * const file = parseLimitsFile(
 *   "entities:\n  proj-1:\n    limits:\n      '*': [{ name: rpm, rate: 100, per: minute }]\n",
 * );
 * const result = await applyLimits(file, store);
 * console.assert(result.failed === 0 && result.results.length === 2);
 * console.assert((await planLimits(file, store)).steps.length === 0);
 * ```
 */
export async function applyLimits(
  file: LimitsFile,
  store: LimitsStore,
  options: PlanOptions = {},
): Promise<ApplyResult> {
  return await runPlan(await planLimits(file, store, options), store);
}

/**
 * Runs a plan already made (e.g. one shown to the operator and confirmed). Steps run one at a
 * time, in the plan's order.
 *
 * @example
 * ```ts
 * import { runPlan } from "./apply.ts";
 * import { MemoryLimitsStore } from "./memory.ts";
 * const result = await runPlan({ prune: false, steps: [] }, new MemoryLimitsStore());
 * console.assert(result.results.length === 0);
 * ```
 */
export async function runPlan(plan: Plan, store: LimitsStore): Promise<ApplyResult> {
  const done = new Map<string, StepResult["status"]>();
  const results: StepResult[] = [];
  for (const step of plan.steps) {
    const base = { key: step.key, subject: step.subject, op: step.op };
    const blocked = step.needs.find((k) => done.has(k) && done.get(k) !== "ok");
    let result: StepResult;
    if (blocked !== undefined) {
      const needed = plan.steps.find((s) => s.key === blocked)?.subject ?? blocked;
      result = {
        ...base,
        status: "skipped",
        error: new Error(`skipped: ${needed} did not succeed`),
      };
    } else {
      try {
        await runStep(step, store);
        result = { ...base, status: "ok" };
      } catch (err) {
        result = {
          ...base,
          status: "failed",
          error: err instanceof Error ? err : new Error(String(err)),
        };
      }
    }
    // A key shared by two steps (an entity's create or move) fails if either fails.
    if (done.get(step.key) !== "failed" && done.get(step.key) !== "skipped") {
      done.set(step.key, result.status);
    }
    results.push(result);
  }
  return { plan, results, failed: results.filter((r) => r.status !== "ok").length };
}

async function runStep(step: PlanStep, store: LimitsStore): Promise<void> {
  const id = step.entityId!;
  switch (step.op) {
    case "setSystemDefaults":
      return await store.setSystemDefaults(step.limits!);
    case "deleteSystemDefaults":
      return await store.deleteSystemDefaults();
    case "setResourceDefaults":
      return await store.setResourceDefaults(step.resource!, step.limits!);
    case "deleteResourceDefaults":
      return await store.deleteResourceDefaults(step.resource!);
    case "createEntity":
      return await store.createEntity({
        entityId: id,
        cascade: step.cascade ?? false,
        ...(step.parentId === undefined ? {} : { parentId: step.parentId }),
        ...(step.name === undefined ? {} : { name: step.name }),
        ...(step.metadata === undefined ? {} : { metadata: step.metadata }),
      });
    case "setParent":
      return await store.setParent(id, step.parentId);
    case "setCascade":
      return await store.setCascade(id, step.cascade!);
    case "setLimits":
      return await store.setLimits(id, step.resource, step.limits!);
    case "deleteLimits":
      return await store.deleteLimits(id, step.resource);
    case "deleteEntity":
      return await store.deleteEntity(id);
    case "unsupported": {
      const what = step.changes[0]?.what ?? "field";
      throw new ValidationError(`entities.${id}.${what}`, step.changes[0]?.after, step.reason!);
    }
  }
}
