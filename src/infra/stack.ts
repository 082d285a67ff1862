/**
 * Deploys, describes and deletes a zae-limiter CloudFormation stack. A deploy whose template,
 * parameters and tags equal the deployed ones changes nothing and says so.
 *
 * @module
 */

import {
  CloudFormationClient,
  CreateStackCommand,
  DeleteStackCommand,
  DescribeStackEventsCommand,
  DescribeStacksCommand,
  GetTemplateCommand,
  type Stack,
  UpdateStackCommand,
} from "@aws-sdk/client-cloudformation";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { buildAggregatorZip } from "../aggregator/bundle.ts";
import { type AwsOptions, clientConfig, describeAwsError } from "./aws.ts";
import { type CodeUploadResult, uploadFunctionCode } from "./lambda.ts";
import {
  defaultStackName,
  stackParameters,
  type StackSettings,
  TEMPLATE_YAML,
  validateStackName,
} from "./template.ts";

/**
 * One stack event, as shown while waiting.
 *
 * @example
 * ```ts
 * import { failureReasons, type StackEvent } from "./stack.ts";
 * const event: StackEvent = { timestamp: new Date(), logicalId: "AggregatorFunction",
 *   resourceType: "AWS::Lambda::Function", status: "CREATE_FAILED", reason: "Memory too low" };
 * console.assert(failureReasons([event])[0] === "AggregatorFunction (AWS::Lambda::Function): Memory too low");
 * ```
 */
export interface StackEvent {
  /** When it happened. */
  timestamp: Date;
  /** The template's name of the resource (the stack's own name for the stack). */
  logicalId: string;
  /** e.g. `AWS::DynamoDB::Table`. */
  resourceType: string;
  /** e.g. `CREATE_COMPLETE`. */
  status: string;
  /** CloudFormation's reason, when it gives one. */
  reason?: string;
}

/**
 * Options of {@link deployStack}.
 *
 * @example
 * ```ts ignore
 * import { deployStack, type DeployStackOptions } from "./mod.ts";
 * const options: DeployStackOptions = {
 *   tableName: "rate_limits",
 *   region: "eu-west-1",
 *   snapshotRetentionDays: 30,
 *   tags: { team: "platform" },
 *   onEvent: (e) => console.log(e.logicalId, e.status, e.reason ?? ""),
 * };
 * await deployStack(options);
 * ```
 */
export interface DeployStackOptions extends AwsOptions, StackSettings {
  /** The stack. @default {@link defaultStackName}(tableName) */
  stackName?: string;
  /**
   * Tags of the stack (and, through CloudFormation, its resources): given, they replace the
   * stack's tags. @default a new stack has none; an update keeps the stack's tags
   */
  tags?: Record<string, string>;
  /** Wait until the stack is deployed (and upload the aggregator's code). @default true */
  wait?: boolean;
  /** How long to wait, ms. @default 1800000 */
  timeoutMs?: number;
  /** How often to poll, ms. @default 2000 */
  pollMs?: number;
  /** Called for every new stack event while waiting. */
  onEvent?: (event: StackEvent) => void;
  /**
   * The aggregator's code to upload once the stack is deployed (skipped when the deployed code is
   * the same); `false` to leave the function's code alone.
   * @default the aggregator bundled with this library (`buildAggregatorZip()`)
   */
  aggregatorCode?: { zip: Uint8Array } | false;
}

/**
 * What {@link deployStack} did.
 *
 * @example
 * ```ts ignore
 * import { deployStack, type DeployStackResult } from "./mod.ts";
 * const result: DeployStackResult = await deployStack({ tableName: "rate_limits" });
 * console.log(`${result.stackName}: ${result.action}, ${result.status}`);
 * console.log(result.outputs.AggregatorFunctionName);
 * ```
 */
export interface DeployStackResult {
  /** The stack. */
  stackName: string;
  /** `create`, `update`, or `none` when the stack already matched. */
  action: "create" | "update" | "none";
  /** The stack's status at the end (`*_IN_PROGRESS` without `wait`). */
  status: string;
  /** The stack's outputs (empty without `wait`). */
  outputs: Record<string, string>;
  /** The aggregator's code upload, when there was code to upload. */
  code?: CodeUploadResult;
}

/**
 * A stack operation that failed; `reasons` are CloudFormation's, one per failed resource.
 *
 * @example
 * ```ts
 * import { StackDeployError } from "./stack.ts";
 * const e = new StackDeployError("zae-limiter-rate-limits", "Stack creation failed",
 *   ["RateLimitTable: rate_limits already exists"], "ROLLBACK_COMPLETE");
 * console.assert(e.message === "Stack creation failed: RateLimitTable: rate_limits already exists");
 * console.assert(e.status === "ROLLBACK_COMPLETE" && e.reasons.length === 1);
 * ```
 */
export class StackDeployError extends Error {
  /** The stack. */
  readonly stackName: string;
  /** The stack's status at the end, when known. */
  readonly status?: string;
  /** Why, from the failed events (or the API error). */
  readonly reasons: string[];

  /**
   * Builds the error; the message is `summary`, followed by the reasons when there are any.
   *
   * @param stackName The stack.
   * @param summary What failed, e.g. `"Stack creation failed"`.
   * @param reasons Why, one per failed resource.
   * @param status The stack's status at the end, when known.
   */
  constructor(stackName: string, summary: string, reasons: string[], status?: string) {
    super(reasons.length ? `${summary}: ${reasons.join("; ")}` : summary);
    this.name = "StackDeployError";
    this.stackName = stackName;
    this.status = status;
    this.reasons = reasons;
  }
}

/**
 * A stack as {@link describeStack} reports it.
 *
 * @example
 * ```ts ignore
 * import { describeStack } from "./mod.ts";
 * const info = await describeStack({ stackName: "zae-limiter-rate-limits", region: "eu-west-1" });
 * if (info) console.log(info.status, info.parameters.TableName, info.outputs);
 * ```
 */
export interface StackInfo {
  /** The stack. */
  stackName: string;
  /** The stack's id (an ARN). */
  stackId: string;
  /** e.g. `CREATE_COMPLETE`. */
  status: string;
  /** CloudFormation's reason for the status, if any. */
  statusReason?: string;
  /** Outputs by key. */
  outputs: Record<string, string>;
  /** Parameters by key. */
  parameters: Record<string, string>;
  /** Tags by key. */
  tags: Record<string, string>;
  /** Creation time. */
  createdAt?: Date;
  /** Last update time. */
  updatedAt?: Date;
}

const DONE_OK = new Set(["CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"]);
const FAILED_END = new Set([
  "CREATE_FAILED",
  "ROLLBACK_COMPLETE",
  "ROLLBACK_FAILED",
  "UPDATE_ROLLBACK_COMPLETE",
  "UPDATE_ROLLBACK_FAILED",
  "UPDATE_FAILED",
  "DELETE_FAILED",
  "IMPORT_ROLLBACK_COMPLETE",
  "IMPORT_ROLLBACK_FAILED",
]);

/** The CloudFormation client of `options`. */
export function cloudFormationClient(options: AwsOptions): CloudFormationClient {
  return new CloudFormationClient(clientConfig(options));
}

/**
 * Creates or updates the stack of a table and, when it has an aggregator and `aggregatorCode` is
 * given, uploads that code through the Lambda API (skipped when the deployed code is the same).
 * Stack events are passed to `onEvent` as they happen; a rollback throws
 * {@link StackDeployError} with CloudFormation's reasons. A stack left `ROLLBACK_COMPLETE` by a
 * failed first deploy is deleted and created again.
 *
 * @example
 * ```ts ignore
 * import { deployStack } from "@zae/limiter/infra";
 * const result = await deployStack({ tableName: "rate_limits", region: "eu-west-1",
 *   onEvent: (e) => console.log(e.logicalId, e.status) });
 * console.log(result.action, result.outputs.AcquirePolicyArn);
 * ```
 */
export async function deployStack(options: DeployStackOptions): Promise<DeployStackResult> {
  const {
    wait = true,
    timeoutMs = 1_800_000,
    pollMs = 2000,
    onEvent,
    tags,
    aggregatorCode = { zip: buildAggregatorZip() },
  } = options;
  const parameters = stackParameters(options);
  const stackName = validateStackName(options.stackName ?? defaultStackName(options.tableName));
  for (const [k, v] of Object.entries(tags ?? {})) {
    if (!/^[\p{L}\p{N}\s_.:/=+\-@]{1,128}$/u.test(k) || k.startsWith("aws:")) {
      throw new StackDeployError(stackName, `Invalid tag key ${JSON.stringify(k)}`, [
        "must be 1-128 letters, digits, spaces or _ . : / = + - @, not starting with aws:",
      ]);
    }
    if (typeof v !== "string" || v.length > 256) {
      throw new StackDeployError(stackName, `Invalid tag value ${JSON.stringify(v)}`, [
        "must be a string of at most 256 characters",
      ]);
    }
  }
  const cfn = cloudFormationClient(options);
  try {
    let existing = await findStack(cfn, stackName);
    if (
      existing && existing.status.endsWith("_IN_PROGRESS") &&
      existing.status !== "REVIEW_IN_PROGRESS"
    ) {
      throw new StackDeployError(
        stackName,
        `Stack ${stackName} is ${existing.status}`,
        ["wait until it finishes, then deploy again"],
        existing.status,
      );
    }
    if (existing?.status === "ROLLBACK_COMPLETE" || existing?.status === "REVIEW_IN_PROGRESS") {
      // A first deploy that failed (or a change set never run) leaves a stack that can only be
      // deleted.
      await deleteAndWait(cfn, stackName, { timeoutMs, pollMs, onEvent });
      existing = undefined;
    }
    const create = !existing;
    const input = {
      StackName: stackName,
      TemplateBody: TEMPLATE_YAML,
      Parameters: Object.entries(parameters).map(([ParameterKey, ParameterValue]) => ({
        ParameterKey,
        ParameterValue,
      })),
      Capabilities: ["CAPABILITY_IAM" as const],
      ...(tags ? { Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) } : {}),
    };
    let action: DeployStackResult["action"] = create ? "create" : "update";
    let status = existing?.status ?? "UNKNOWN";
    if (!create && await sameDeployment(cfn, existing!, parameters, tags)) action = "none";
    if (action !== "none") {
      const seen = await seenEventIds(cfn, stackName);
      try {
        await cfn.send(create ? new CreateStackCommand(input) : new UpdateStackCommand(input));
      } catch (err) {
        if (!create && isNoChange(describeAwsError(err))) {
          action = "none";
        } else {
          const now = await findStack(cfn, stackName).catch(() => undefined);
          const failed = await failedEvents(cfn, stackName, seen).catch(() => []);
          throw new StackDeployError(
            stackName,
            `Deploying ${stackName} failed`,
            [describeAwsError(err), ...failed.map(formatFailure)],
            now?.status,
          );
        }
      }
      if (action !== "none") {
        if (!wait) {
          const now = await findStack(cfn, stackName);
          return { stackName, action, status: now?.status ?? "UNKNOWN", outputs: {} };
        }
        status = await waitForStack(cfn, stackName, { seen, timeoutMs, pollMs, onEvent });
        if (!DONE_OK.has(status)) {
          const failed = await failedEvents(cfn, stackName, seen);
          throw new StackDeployError(
            stackName,
            `Deploying ${stackName} ended ${status}`,
            failed.map(formatFailure),
            status,
          );
        }
      }
    }
    const info = await findStack(cfn, stackName);
    const result: DeployStackResult = {
      stackName,
      action,
      status: info?.status ?? status,
      outputs: info?.outputs ?? {},
    };
    if (parameters.EnableAggregator === "true" && aggregatorCode) {
      const functionName = result.outputs.AggregatorFunctionName ??
        `${options.tableName}-aggregator`;
      const lambda = new LambdaClient(clientConfig(options));
      try {
        result.code = await uploadFunctionCode(lambda, functionName, aggregatorCode.zip);
      } catch (err) {
        throw new StackDeployError(stackName, `Uploading the aggregator's code failed`, [
          describeAwsError(err),
        ]);
      } finally {
        lambda.destroy();
      }
    }
    return result;
  } finally {
    cfn.destroy();
  }
}

/**
 * Options of {@link deleteStack}.
 *
 * @example
 * ```ts ignore
 * import { deleteStack, type DeleteStackOptions } from "./mod.ts";
 * const options: DeleteStackOptions = { tableName: "rate_limits", region: "eu-west-1" };
 * const deleted = await deleteStack(options); // false when there was no stack
 * ```
 */
export interface DeleteStackOptions extends AwsOptions {
  /** The stack; or give `tableName` for its default stack name. */
  stackName?: string;
  /** The table, for the default stack name. */
  tableName?: string;
  /** Wait until it is gone. @default true */
  wait?: boolean;
  /** How long to wait, ms. @default 1800000 */
  timeoutMs?: number;
  /** How often to poll, ms. @default 2000 */
  pollMs?: number;
  /** Called for every new stack event while waiting. */
  onEvent?: (event: StackEvent) => void;
}

/**
 * Deletes a stack (and with it the table and its data) and waits until it is gone. Returns
 * `false` when there was no such stack. A failed deletion (e.g. deletion protection on the
 * table) throws {@link StackDeployError} with the reasons.
 *
 * @example
 * ```ts ignore
 * import { deleteStack } from "@zae/limiter/infra";
 * await deleteStack({ tableName: "rate_limits", region: "eu-west-1" });
 * ```
 */
export async function deleteStack(options: DeleteStackOptions): Promise<boolean> {
  const { wait = true, timeoutMs = 1_800_000, pollMs = 2000, onEvent } = options;
  const stackName = resolveStackName(options);
  const cfn = cloudFormationClient(options);
  try {
    const existing = await findStack(cfn, stackName);
    if (!existing || existing.status === "DELETE_COMPLETE") return false;
    if (!wait) {
      await cfn.send(new DeleteStackCommand({ StackName: stackName }));
      return true;
    }
    await deleteAndWait(cfn, stackName, { timeoutMs, pollMs, onEvent });
    return true;
  } finally {
    cfn.destroy();
  }
}

/**
 * The stack's status, outputs, parameters and tags, or `undefined` when there is none.
 *
 * @example
 * ```ts ignore
 * import { describeStack } from "@zae/limiter/infra";
 * const stack = await describeStack({ tableName: "rate_limits" });
 * console.log(stack?.status, stack?.outputs.TableArn);
 * ```
 */
export async function describeStack(
  options: AwsOptions & { stackName?: string; tableName?: string },
): Promise<StackInfo | undefined> {
  const stackName = resolveStackName(options);
  const cfn = cloudFormationClient(options);
  try {
    const found = await findStack(cfn, stackName);
    return found?.status === "DELETE_COMPLETE" ? undefined : found;
  } finally {
    cfn.destroy();
  }
}

/**
 * Options of {@link ensureStack}: those of {@link deployStack}, which always waits here.
 *
 * @example
 * ```ts ignore
 * import { ensureStack, type EnsureStackOptions } from "./mod.ts";
 * const options: EnsureStackOptions = { tableName: "rate_limits", aggregator: false };
 * const { created } = await ensureStack(options);
 * ```
 */
export interface EnsureStackOptions extends Omit<DeployStackOptions, "wait"> {}

/**
 * Makes sure the table's stack exists and is deployed: waits for a stack that is being deployed,
 * creates a missing one (or one whose first deploy failed), and leaves a deployed one as it is
 * (it never updates it: that is `deployStack`'s job). Returns the stack and whether it was created.
 * Two processes calling it at once are fine: the second waits for the first one's stack.
 *
 * @example
 * ```ts ignore
 * import { ensureStack } from "@zae/limiter/infra";
 * const { stack, created } = await ensureStack({ tableName: "rate_limits", region: "eu-west-1" });
 * ```
 */
export async function ensureStack(
  options: EnsureStackOptions,
): Promise<{ stack: StackInfo; created: boolean }> {
  const { timeoutMs = 1_800_000, pollMs = 2000, onEvent } = options;
  stackParameters(options);
  const stackName = validateStackName(options.stackName ?? defaultStackName(options.tableName));
  const cfn = cloudFormationClient(options);
  try {
    const until = Date.now() + timeoutMs;
    for (let attempt = 0;; attempt++) {
      const found = await findStack(cfn, stackName);
      const status = found?.status;
      if (status && (DONE_OK.has(status) || status === "UPDATE_ROLLBACK_COMPLETE")) {
        return { stack: found!, created: false };
      }
      if (status && status.endsWith("_IN_PROGRESS") && status !== "REVIEW_IN_PROGRESS") {
        if (Date.now() > until) {
          throw new StackDeployError(stackName, `Stack ${stackName} is still ${status}`, [
            `waited ${timeoutMs} ms`,
          ]);
        }
        await new Promise((r) => setTimeout(r, pollMs));
        continue;
      }
      if (status && FAILED_END.has(status) && status !== "ROLLBACK_COMPLETE") {
        throw new StackDeployError(
          stackName,
          `Stack ${stackName} is ${status}`,
          [found?.statusReason ?? "fix it with `zae-limiter deploy` or delete it"],
          status,
        );
      }
      try {
        await deployStack({ ...options, stackName, wait: true, timeoutMs, pollMs, onEvent });
      } catch (err) {
        // Another process created it first: wait for theirs.
        if (attempt < 3 && /already exists|AlreadyExists|is .*_IN_PROGRESS/.test(String(err))) {
          continue;
        }
        throw err;
      }
      const stack = await findStack(cfn, stackName);
      return { stack: stack!, created: true };
    }
  } finally {
    cfn.destroy();
  }
}

/**
 * The reasons of the failed events, oldest first, formatted `LogicalId (Type): reason`.
 *
 * @example
 * ```ts
 * import { failureReasons } from "./stack.ts";
 * const reasons = failureReasons([
 *   { timestamp: new Date(), logicalId: "RateLimitsTable", resourceType: "AWS::DynamoDB::Table",
 *     status: "CREATE_FAILED", reason: "rate_limits already exists" },
 * ]);
 * console.assert(reasons[0] === "RateLimitsTable (AWS::DynamoDB::Table): rate_limits already exists");
 * ```
 */
export function failureReasons(events: StackEvent[]): string[] {
  return events.filter(isFailure).map(formatFailure);
}

function isFailure(e: StackEvent): boolean {
  return e.status.endsWith("_FAILED") && !/Resource creation cancelled|Resource update cancelled/
    .test(e.reason ?? "");
}

function formatFailure(e: StackEvent): string {
  return `${e.logicalId} (${e.resourceType}): ${e.reason ?? e.status}`;
}

function isNoChange(reason: string | undefined): boolean {
  return /didn't contain changes|No updates are to be performed/i.test(reason ?? "");
}

function resolveStackName(options: { stackName?: string; tableName?: string }): string {
  if (options.stackName !== undefined) return validateStackName(options.stackName);
  if (typeof options.tableName !== "string" || options.tableName === "") {
    throw new StackDeployError("", "Either stackName or tableName is needed", [
      "give the stack name, or the table name for the default stack name",
    ]);
  }
  return defaultStackName(options.tableName);
}

function toInfo(stack: Stack): StackInfo {
  const kv = <T>(list: T[] | undefined, k: keyof T, v: keyof T) =>
    Object.fromEntries((list ?? []).map((x) => [String(x[k]), String(x[v] ?? "")]));
  return {
    stackName: stack.StackName ?? "",
    stackId: stack.StackId ?? stack.StackName ?? "",
    status: stack.StackStatus ?? "UNKNOWN",
    ...(stack.StackStatusReason ? { statusReason: stack.StackStatusReason } : {}),
    outputs: kv(stack.Outputs, "OutputKey", "OutputValue"),
    parameters: kv(stack.Parameters, "ParameterKey", "ParameterValue"),
    tags: kv(stack.Tags, "Key", "Value"),
    ...(stack.CreationTime ? { createdAt: stack.CreationTime } : {}),
    ...(stack.LastUpdatedTime ? { updatedAt: stack.LastUpdatedTime } : {}),
  };
}

async function findStack(
  cfn: CloudFormationClient,
  stackName: string,
): Promise<StackInfo | undefined> {
  try {
    const out = await cfn.send(new DescribeStacksCommand({ StackName: stackName }));
    const stack = out.Stacks?.[0];
    return stack ? toInfo(stack) : undefined;
  } catch (err) {
    if (/does not exist/i.test(describeAwsError(err))) return undefined;
    throw err;
  }
}

/**
 * Whether the deployed stack already has this template, these parameters and these tags (so an
 * update would change nothing).
 */
async function sameDeployment(
  cfn: CloudFormationClient,
  stack: StackInfo,
  parameters: Record<string, string>,
  tags: Record<string, string> | undefined,
): Promise<boolean> {
  const sameMap = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).length === Object.keys(b).length &&
    Object.entries(a).every(([k, v]) => b[k] === v);
  if (!sameMap(stack.parameters, parameters)) return false;
  if (tags !== undefined && !sameMap(stack.tags, tags)) return false;
  const tpl = await cfn.send(
    new GetTemplateCommand({ StackName: stack.stackName, TemplateStage: "Original" }),
  );
  return tpl.TemplateBody === TEMPLATE_YAML;
}

async function stackEvents(cfn: CloudFormationClient, stackName: string): Promise<
  (StackEvent & { id: string })[]
> {
  try {
    const out = await cfn.send(new DescribeStackEventsCommand({ StackName: stackName }));
    return (out.StackEvents ?? []).map((e) => ({
      id: e.EventId ?? `${e.LogicalResourceId}/${e.ResourceStatus}/${e.Timestamp?.getTime()}`,
      timestamp: e.Timestamp ?? new Date(),
      logicalId: e.LogicalResourceId ?? stackName,
      resourceType: e.ResourceType ?? "",
      status: e.ResourceStatus ?? "",
      ...(e.ResourceStatusReason ? { reason: e.ResourceStatusReason } : {}),
    })).reverse();
  } catch (err) {
    if (/does not exist/i.test(describeAwsError(err))) return [];
    throw err;
  }
}

async function seenEventIds(cfn: CloudFormationClient, stackName: string): Promise<Set<string>> {
  return new Set((await stackEvents(cfn, stackName)).map((e) => e.id));
}

async function failedEvents(
  cfn: CloudFormationClient,
  stackName: string,
  seen: Set<string>,
): Promise<StackEvent[]> {
  return (await stackEvents(cfn, stackName)).filter((e) => !seen.has(e.id) && isFailure(e));
}

async function waitForStack(
  cfn: CloudFormationClient,
  stackName: string,
  opts: {
    seen: Set<string>;
    timeoutMs: number;
    pollMs: number;
    onEvent?: (e: StackEvent) => void;
    gone?: boolean;
  },
): Promise<string> {
  const until = Date.now() + opts.timeoutMs;
  const report = async () => {
    for (const e of await stackEvents(cfn, stackName)) {
      if (opts.seen.has(e.id)) continue;
      opts.seen.add(e.id);
      const { id: _id, ...event } = e;
      opts.onEvent?.(event);
    }
  };
  for (;;) {
    const info = await findStack(cfn, stackName);
    if (!info) return "DELETE_COMPLETE";
    await report();
    if (!info.status.endsWith("_IN_PROGRESS")) return info.status;
    if (Date.now() > until) {
      throw new StackDeployError(stackName, `Stack ${stackName} is still ${info.status}`, [
        `waited ${opts.timeoutMs} ms`,
      ], info.status);
    }
    await new Promise((r) => setTimeout(r, opts.pollMs));
  }
}

async function deleteAndWait(
  cfn: CloudFormationClient,
  stackName: string,
  opts: { timeoutMs: number; pollMs: number; onEvent?: (e: StackEvent) => void },
): Promise<void> {
  // Once deleted, a stack is only found by its id.
  const stackId = (await findStack(cfn, stackName))?.stackId ?? stackName;
  const seen = await seenEventIds(cfn, stackId);
  const before = new Set(seen);
  try {
    await cfn.send(new DeleteStackCommand({ StackName: stackName }));
  } catch (err) {
    throw new StackDeployError(stackName, `Deleting ${stackName} failed`, [
      describeAwsError(err),
    ]);
  }
  const status = await waitForStack(cfn, stackId, { ...opts, seen });
  if (status !== "DELETE_COMPLETE") {
    const failed = await failedEvents(cfn, stackId, before);
    throw new StackDeployError(
      stackName,
      `Deleting ${stackName} ended ${status}`,
      failed.slice(-5).map(formatFailure),
      status,
    );
  }
}
