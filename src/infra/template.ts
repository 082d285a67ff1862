/**
 * The CloudFormation template of a zae-limiter stack, its parameters, and its default stack name.
 *
 * @module
 */

import { parse, type Tags } from "yaml";
import { TEMPLATE_YAML } from "./template_generated.ts";

export { TEMPLATE_YAML };

/**
 * A usage snapshot window the aggregator writes.
 *
 * @example
 * ```ts
 * import type { UsageWindowName } from "./template.ts";
 * const windows: UsageWindowName[] = ["hourly", "daily"];
 * console.assert(windows.length === 2);
 * ```
 */
export type UsageWindowName = "hourly" | "daily";

/**
 * The settings of a stack that map to template parameters.
 *
 * @example
 * ```ts
 * import { type StackSettings, stackParameters } from "./template.ts";
 * const settings: StackSettings = { tableName: "rate_limits", snapshotRetentionDays: 30 };
 * console.assert(stackParameters(settings).SnapshotRetentionDays === "30");
 * ```
 */
export interface StackSettings {
  /** The DynamoDB table's name. */
  tableName: string;
  /** Deploy the usage aggregator. @default true */
  aggregator?: boolean;
  /** Days a usage snapshot is kept. @default 90 */
  snapshotRetentionDays?: number;
  /** Days an audit event is kept (the table's TTL removes it after). @default 90 */
  auditRetentionDays?: number;
  /** Snapshot windows. @default ["hourly", "daily"] */
  usageWindows?: UsageWindowName[];
  /** Aggregator memory, MB. @default 256 */
  lambdaMemoryMb?: number;
  /** Aggregator timeout, seconds. @default 60 */
  lambdaTimeoutSeconds?: number;
  /** Days the aggregator's logs are kept (a CloudWatch Logs retention value). @default 30 */
  logRetentionDays?: number;
  /** SNS topic the alarms notify. @default none */
  alarmSnsTopicArn?: string;
  /** Point-in-time recovery of the table. @default true */
  pointInTimeRecovery?: boolean;
  /** Deletion protection of the table. @default false */
  deletionProtection?: boolean;
}

/**
 * Log retention values CloudWatch Logs accepts, in days.
 *
 * @example
 * ```ts
 * import { LOG_RETENTION_DAYS } from "./template.ts";
 * console.assert(LOG_RETENTION_DAYS.includes(30) && !LOG_RETENTION_DAYS.includes(31 as 30));
 * ```
 */
export const LOG_RETENTION_DAYS = [
  1,
  3,
  5,
  7,
  14,
  30,
  60,
  90,
  120,
  150,
  180,
  365,
  400,
  545,
  731,
  1827,
  3653,
] as const;

/**
 * Thrown for settings that do not fit the template; names the field, the value and the rule.
 *
 * @example
 * ```ts
 * import { StackSettingsError } from "./template.ts";
 * const e = new StackSettingsError("snapshotRetentionDays", 0, "must be a whole number >= 1");
 * console.assert(e.message === "Invalid snapshotRetentionDays: 0 (must be a whole number >= 1)");
 * console.assert(e.field === "snapshotRetentionDays" && e.value === 0);
 * ```
 */
export class StackSettingsError extends Error {
  /** The field at fault. */
  readonly field: string;
  /** The value seen. */
  readonly value: unknown;

  /**
   * Builds the error; the message reads `Invalid {field}: {value} ({rule})`.
   *
   * @param field The setting at fault.
   * @param value The value seen.
   * @param rule What it must be.
   */
  constructor(field: string, value: unknown, rule: string) {
    super(`Invalid ${field}: ${JSON.stringify(value)} (${rule})`);
    this.name = "StackSettingsError";
    this.field = field;
    this.value = value;
  }
}

/**
 * The default stack name of a table: `zae-limiter-{tableName}`, with every character a stack name
 * cannot hold (`_`, `.`) turned into `-`.
 *
 * @example
 * ```ts
 * import { defaultStackName } from "./template.ts";
 * console.assert(defaultStackName("rate_limits") === "zae-limiter-rate-limits");
 * ```
 */
export function defaultStackName(tableName: string): string {
  return `zae-limiter-${tableName.replace(/[^A-Za-z0-9-]/g, "-")}`;
}

/** Checks a stack name against CloudFormation's rule. */
export function validateStackName(stackName: unknown): string {
  if (typeof stackName !== "string" || !/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stackName)) {
    throw new StackSettingsError(
      "stackName",
      stackName,
      "must start with a letter, then letters, digits or -, at most 128 characters",
    );
  }
  return stackName;
}

/**
 * The template's parameters for `settings`, validated (every bad value is refused before any AWS
 * call, with the field, the value and the rule).
 *
 * @example
 * ```ts
 * import { stackParameters } from "./template.ts";
 * const params = stackParameters({ tableName: "rate_limits", aggregator: false });
 * console.assert(params.EnableAggregator === "false" && params.TableName === "rate_limits");
 * ```
 */
export function stackParameters(settings: StackSettings): Record<string, string> {
  const {
    tableName,
    aggregator = true,
    snapshotRetentionDays = 90,
    auditRetentionDays = 90,
    usageWindows = ["hourly", "daily"],
    lambdaMemoryMb = 256,
    lambdaTimeoutSeconds = 60,
    logRetentionDays = 30,
    alarmSnsTopicArn = "",
    pointInTimeRecovery = true,
    deletionProtection = false,
  } = settings;
  if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new StackSettingsError(
      "tableName",
      tableName,
      "must be 3-255 characters of letters, digits, _ . -",
    );
  }
  const int = (field: string, v: unknown, min: number, max: number): string => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      throw new StackSettingsError(field, v, `must be a whole number from ${min} to ${max}`);
    }
    return String(v);
  };
  const bool = (field: string, v: unknown): string => {
    if (typeof v !== "boolean") throw new StackSettingsError(field, v, "must be true or false");
    return String(v);
  };
  if (
    !Array.isArray(usageWindows) || usageWindows.length === 0 || usageWindows.length > 2 ||
    usageWindows.some((w) => w !== "hourly" && w !== "daily") ||
    new Set(usageWindows).size !== usageWindows.length
  ) {
    throw new StackSettingsError(
      "usageWindows",
      usageWindows,
      "must be hourly, daily, or both, each at most once",
    );
  }
  if (!(LOG_RETENTION_DAYS as readonly unknown[]).includes(logRetentionDays)) {
    throw new StackSettingsError(
      "logRetentionDays",
      logRetentionDays,
      `must be one of ${LOG_RETENTION_DAYS.join(", ")}`,
    );
  }
  if (
    typeof alarmSnsTopicArn !== "string" ||
    (alarmSnsTopicArn !== "" && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/
      .test(alarmSnsTopicArn))
  ) {
    throw new StackSettingsError(
      "alarmSnsTopicArn",
      alarmSnsTopicArn,
      "must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
    );
  }
  return {
    TableName: tableName,
    EnableAggregator: bool("aggregator", aggregator),
    SnapshotRetentionDays: int("snapshotRetentionDays", snapshotRetentionDays, 1, 3650),
    AuditRetentionDays: int("auditRetentionDays", auditRetentionDays, 1, 3650),
    UsageWindows: usageWindows.join(","),
    LambdaMemorySize: int("lambdaMemoryMb", lambdaMemoryMb, 128, 10240),
    LambdaTimeout: int("lambdaTimeoutSeconds", lambdaTimeoutSeconds, 1, 900),
    LogRetentionDays: String(logRetentionDays),
    AlarmSnsTopicArn: alarmSnsTopicArn,
    EnablePointInTimeRecovery: bool("pointInTimeRecovery", pointInTimeRecovery),
    EnableDeletionProtection: bool("deletionProtection", deletionProtection),
  };
}

/** CloudFormation's short-form intrinsic functions, as `yaml` custom tags. */
const CFN_TAGS: Tags = [
  ["Ref", "scalar"],
  ["Sub", "scalar"],
  ["Sub", "seq"],
  ["GetAtt", "scalar"],
  ["GetAtt", "seq"],
  ["If", "seq"],
  ["Equals", "seq"],
  ["Not", "seq"],
  ["And", "seq"],
  ["Or", "seq"],
  ["Condition", "scalar"],
  ["Join", "seq"],
  ["Select", "seq"],
  ["Split", "seq"],
  ["GetAZs", "scalar"],
  ["ImportValue", "scalar"],
  ["FindInMap", "seq"],
  ["Base64", "scalar"],
].map(([name, kind]) => {
  const key = name === "Ref" || name === "Condition" ? name : `Fn::${name}`;
  if (kind === "seq") {
    return {
      tag: `!${name}`,
      collection: "seq" as const,
      resolve: (seq: { toJSON(): unknown }) => ({ [key]: seq.toJSON() }),
    };
  }
  return {
    tag: `!${name}`,
    resolve: (text: string) => ({ [key]: name === "GetAtt" ? text.split(".") : text }),
  };
}) as Tags;

/**
 * The template as a JSON object (short-form tags such as `!Ref` become their long forms).
 *
 * @example
 * ```ts
 * import { parseTemplate } from "./template.ts";
 * const t = parseTemplate() as { Resources: Record<string, { Type: string }> };
 * console.assert(t.Resources.RateLimitsTable.Type === "AWS::DynamoDB::Table");
 * ```
 */
export function parseTemplate(yaml: string = TEMPLATE_YAML): Record<string, unknown> {
  return parse(yaml, { customTags: CFN_TAGS }) as Record<string, unknown>;
}
