/**
 * zae-limiter: a distributed rate limiter on Amazon DynamoDB, with exact token buckets.
 *
 * ```ts ignore
 * import { Limit, RateLimiter } from "@zae/limiter";
 *
 * const limiter = new RateLimiter({ tableName: "rate_limits", endpoint: "http://localhost:8000", createTable: true });
 * await limiter.acquire({
 *   entityId: "key-abc",
 *   resource: "gpt-4",
 *   limits: [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)],
 *   consume: { rpm: 1, tpm: 500 },
 * }, async (lease) => {
 *   const used = 742; // from the LLM's answer
 *   await lease.adjust({ tpm: used - 500 });
 * });
 * ```
 *
 * @module
 */

export { Limit } from "./src/limit.ts";
export type {
  ConcurrentLimitOptions,
  CustomLimitOptions,
  QuotaLimitOptions,
  QuotaOptions,
  RateOptions,
} from "./src/limit.ts";
export type { CalendarReset, DailyReset, MonthlyReset, WeeklyReset } from "./src/calendar/reset.ts";
export type { QuotaReset } from "./src/calendar/text.ts";
export { type Weekday, WEEKDAYS } from "./src/calendar/zone.ts";
export type { LimitSchedule, LimitWindow } from "./src/limit_schedule.ts";
export {
  type AcquireOptions,
  type AvailableOptions,
  type BatchOptions,
  type CreateEntityOptions,
  type CreateStackSettings,
  FailureMode,
  RateLimiter,
  type RateLimiterOptions,
  type ResourceBucket,
  type ShadowRefusal,
  type TimeUntilAvailableOptions,
  UncertainOutcome,
} from "./src/limiter.ts";
// The classes RateLimiter inherits its admin calls from (documentation only: use RateLimiter).
export type { LimiterAdmin } from "./src/limiter_admin.ts";
export type { LimiterLimits } from "./src/limiter_limits.ts";
export { Lease } from "./src/lease.ts";
export { consoleLogger, fieldsFirst, type LogFields, type Logger } from "./src/logger.ts";
export type { RefusalCountsOptions } from "./src/refusals.ts";
export type { PingCheck, PingProblemKind, PingResult } from "./src/ping.ts";
export type { Entity, ResourceControls } from "./src/entities.ts";
export type { EntityListPage, ListEntitiesOptions } from "./src/entity_list.ts";
export { type UpgradeOptions, type UpgradeResult, upgradeTable } from "./src/upgrade.ts";
export type { StoredDefaults, StoredLimitsEntry } from "./src/defaults_store.ts";
export type { BucketChangeResult, ResetBucketOptions, TopUpOptions } from "./src/bucket_admin.ts";
export type {
  AuditEvent,
  AuditEventsPage,
  AuditScope,
  GetAuditEventsOptions,
} from "./src/audit_read.ts";
export {
  ConfigurationError,
  type ConfigurationErrorKind,
  EntityDisabledError,
  EntityExistsError,
  EntityNotFoundError,
  LeaseClosedError,
  LeaseExpiredError,
  type LimitStatus,
  type LimitStatusBody,
  RateLimiterUnavailable,
  RateLimitExceeded,
  type RateLimitExceededBody,
  ValidationError,
  ZaeLimiterError,
} from "./src/errors.ts";
export {
  formatUsageChart,
  getUsageSnapshots,
  getUsageSummary,
  iterUsageSnapshots,
  type UsageChartOptions,
  type UsagePeak,
  type UsageQuery,
  type UsageSnapshot,
  type UsageSummary,
  type UsageWindow,
} from "./src/usage.ts";
export {
  createNamespace,
  DEFAULT_NAMESPACE,
  deleteNamespace,
  KeySpace,
  listNamespaces,
  type NamespaceInfo,
  validateNamespace,
} from "./src/namespaces.ts";
