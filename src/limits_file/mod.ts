/**
 * Limits as code: a YAML file declares system defaults, resource defaults and entities (parents,
 * cascade flags, limits); {@link planLimits} compares it with the table, {@link applyLimits} makes
 * the table match, {@link exportLimits} writes the table as such a file. The format is described
 * in docs/usage.md ("Limits as code") and by docs/limits-file.schema.json.
 *
 * ```ts ignore
 * import { RateLimiter } from "@zae/limiter";
 * import { applyLimits, formatApply, limiterStore, parseLimitsFile } from "@zae/limiter/limits-file";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits" });
 * const file = parseLimitsFile(await Deno.readTextFile("limits.yaml"), "limits.yaml");
 * console.log(formatApply(await applyLimits(file, limiterStore(limiter))));
 * ```
 *
 * @module
 */

export { applyLimits, type ApplyResult, runPlan, type StepResult } from "./apply.ts";
export { exportLimits, stateToYaml } from "./export.ts";
export { applyJson, formatApply, formatPlan, planCounts, planJson } from "./format.ts";
export { MemoryLimitsStore } from "./memory.ts";
export {
  type ConcurrentSpec,
  type EntitySpec,
  type FileProblem,
  type LimitsFile,
  LimitsFileError,
  type LimitSpec,
  limitToSpec,
  type QuotaSpec,
  type RateLimitSpec,
  showLimit,
  showSpec,
  specToLimit,
} from "./model.ts";
export { parseLimitsFile } from "./parse.ts";
export {
  type Plan,
  planAgainst,
  type PlanChange,
  planLimits,
  type PlanOptions,
  type PlanStep,
} from "./plan.ts";
export { ENTITY_WIDE, readState, type StoredEntity, type TableState } from "./state.ts";
export {
  type FileEntity,
  type LimiterAdmin,
  limiterStore,
  type LimitsStore,
  type StoredLimitSet,
} from "./store.ts";
// The library's types these signatures name.
export type { Entity } from "../entities.ts";
export { ValidationError, ZaeLimiterError } from "../error_base.ts";
export type { CustomLimitOptions, Limit } from "../limit.ts";
export type { CreateEntityOptions } from "../options.ts";
