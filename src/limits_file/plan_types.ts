/**
 * The shapes of a plan: {@link Plan}, its steps and their changes.
 *
 * @module
 */

import type { Limit } from "../limit.ts";
import type { LimitSpec } from "./model.ts";

/**
 * One change a step makes: `what` is `limit tpm`, `entity`, `parent`, `cascade`, `name` or
 * `metadata`; `before` and `after` are absent when nothing was or will be there.
 *
 * @example
 * ```ts
 * import type { PlanChange } from "./plan.ts";
 * const c: PlanChange = { action: "change", what: "parent", before: "proj-1", after: "proj-2" };
 * console.assert(c.action === "change");
 * ```
 */
export interface PlanChange {
  /** Whether it adds, changes or removes. */
  action: "add" | "change" | "remove";
  /** What changes. */
  what: string;
  /** The value before (a limit as the file writes it, a parent id, a flag). */
  before?: LimitSpec | string | boolean | Record<string, string> | null;
  /** The value after. */
  after?: LimitSpec | string | boolean | Record<string, string> | null;
}

/**
 * One store call of a plan. `unsupported` is a change the store cannot make (an existing
 * entity's name or metadata): applying it fails with `reason`.
 *
 * @example
 * ```ts
 * import type { PlanStep } from "./plan.ts";
 * const s: PlanStep = { key: "entity:k", op: "setCascade", subject: "entity k", entityId: "k",
 *   cascade: true, needs: [], changes: [{ action: "change", what: "cascade", before: false,
 *   after: true }] };
 * console.assert(s.op === "setCascade");
 * ```
 */
export interface PlanStep {
  /** Unique in the plan; `needs` names other steps' keys. */
  key: string;
  /** The store call. */
  op:
    | "setSystemDefaults"
    | "deleteSystemDefaults"
    | "setResourceDefaults"
    | "deleteResourceDefaults"
    | "createEntity"
    | "setParent"
    | "setCascade"
    | "setLimits"
    | "deleteLimits"
    | "deleteEntity"
    | "unsupported";
  /** What it acts on, e.g. `entity key-1 limits on gpt-4`. */
  subject: string;
  /** Steps that must succeed first (else this one is skipped). */
  needs: string[];
  /** The changes it makes. */
  changes: PlanChange[];
  /** The entity. */
  entityId?: string;
  /** The resource (absent for entity-wide limits). */
  resource?: string;
  /** The limits it stores. */
  limits?: Limit[];
  /** The parent it sets (absent: top-level). */
  parentId?: string;
  /** The cascade flag it sets. */
  cascade?: boolean;
  /** The name of a new entity. */
  name?: string;
  /** The metadata of a new entity. */
  metadata?: Record<string, string>;
  /** Why an `unsupported` step cannot be applied. */
  reason?: string;
}

/**
 * The steps that make the table match a file, in the order to run them. Empty when it matches.
 *
 * @example
 * ```ts
 * import type { Plan } from "./plan.ts";
 * const nothing: Plan = { prune: false, steps: [] };
 * console.assert(nothing.steps.length === 0);
 * ```
 */
export interface Plan {
  /** Whether removals were planned. */
  prune: boolean;
  /** The steps. */
  steps: PlanStep[];
}

/**
 * Options of {@link planLimits}.
 *
 * @example
 * ```ts
 * import type { PlanOptions } from "./plan.ts";
 * const options: PlanOptions = { prune: true };
 * console.assert(options.prune);
 * ```
 */
export interface PlanOptions {
  /** Also remove what the file does not name (entities, limit sets, limits). @default false */
  prune?: boolean;
}
