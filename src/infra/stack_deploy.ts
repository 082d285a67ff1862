/**
 * Creates or updates a stack, then uploads the aggregator's code. A deploy whose template,
 * parameters and tags equal the deployed ones changes nothing and says so.
 *
 * @module
 */

import {
  type CloudFormationClient,
  CreateStackCommand,
  GetTemplateCommand,
  UpdateStackCommand,
} from "@aws-sdk/client-cloudformation";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { type UpgradeResult, upgradeTable } from "../upgrade.ts";
import { buildAggregatorZip } from "../aggregator/bundle.ts";
import { type AwsOptions, clientConfig, describeAwsError } from "./aws.ts";
import { type CodeUploadResult, uploadFunctionCode } from "./lambda.ts";
import { deleteAndWait } from "./stack_delete.ts";
import { recordStackConfig } from "./stack_config.ts";
import { cloudFormationClient, findStack, type StackInfo } from "./stack_describe.ts";
import { StackDeployError } from "./stack_error.ts";
import { deployTags, STACK_VERSION_TAG } from "./stack_list.ts";
import {
  DONE_OK,
  failedEvents,
  formatFailure,
  seenEventIds,
  type StackEvent,
  waitForStack,
} from "./stack_events.ts";
import {
  defaultStackName,
  stackParameters,
  type StackSettings,
  TEMPLATE_YAML,
  validateStackName,
} from "./template.ts";

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
   * stack's tags. Every deploy also sets `zae-limiter:version` (the library version, which
   * `listStacks` looks for); a key may not start with `zae-limiter:`.
   * @default a new stack has none; an update keeps the stack's tags
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
  /**
   * The table's schema after the deploy (absent without `wait`): a deploy that completes runs
   * `upgradeTable`, so a new stack records version 2 and an updated one is migrated.
   */
  schema?: UpgradeResult;
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
    if (
      !/^[\p{L}\p{N}\s_.:/=+\-@]{1,128}$/u.test(k) || k.startsWith("aws:") ||
      k.startsWith("zae-limiter:")
    ) {
      throw new StackDeployError(stackName, `Invalid tag key ${JSON.stringify(k)}`, [
        "must be 1-128 letters, digits, spaces or _ . : / = + - @, not starting with aws: or " +
        `zae-limiter: (${STACK_VERSION_TAG} is set by the deploy)`,
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
    // The user's tags (given, or else the stack's own) and the version tag `listStacks` finds.
    const stackTags = deployTags(tags, existing?.tags);
    const input = {
      StackName: stackName,
      TemplateBody: TEMPLATE_YAML,
      Parameters: Object.entries(parameters).map(([ParameterKey, ParameterValue]) => ({
        ParameterKey,
        ParameterValue,
      })),
      Capabilities: ["CAPABILITY_IAM" as const],
      Tags: Object.entries(stackTags).map(([Key, Value]) => ({ Key, Value })),
    };
    let action: DeployStackResult["action"] = create ? "create" : "update";
    let status = existing?.status ?? "UNKNOWN";
    if (!create && await sameDeployment(cfn, existing!, parameters, stackTags)) action = "none";
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
    try {
      await recordStackConfig(options, options.tableName, Number(parameters.AuditRetentionDays));
    } catch (err) {
      throw new StackDeployError(stackName, "Recording the audit retention in the table failed", [
        describeAwsError(err),
      ]);
    }
    const info = await findStack(cfn, stackName);
    const result: DeployStackResult = {
      stackName,
      action,
      status: info?.status ?? status,
      outputs: info?.outputs ?? {},
    };
    // The template makes GSI3, but CloudFormation cannot write an item: the version item (and,
    // for a table that was version 1, the GSI3 keys of its entities) is written here.
    const dynamo = new DynamoDBClient(clientConfig(options));
    try {
      result.schema = await upgradeTable({
        client: dynamo,
        tableName: result.outputs.TableName ?? options.tableName,
      });
    } catch (err) {
      throw new StackDeployError(stackName, `Recording the table's schema version failed`, [
        err instanceof Error ? err.message : String(err),
        "run zae-limiter upgrade to finish",
      ]);
    } finally {
      dynamo.destroy();
    }
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
 * Whether the deployed stack already has this template, these parameters and these tags (so an
 * update would change nothing).
 */
async function sameDeployment(
  cfn: CloudFormationClient,
  stack: StackInfo,
  parameters: Record<string, string>,
  tags: Record<string, string>,
): Promise<boolean> {
  const sameMap = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).length === Object.keys(b).length &&
    Object.entries(a).every(([k, v]) => b[k] === v);
  if (!sameMap(stack.parameters, parameters)) return false;
  if (!sameMap(stack.tags, tags)) return false;
  const tpl = await cfn.send(
    new GetTemplateCommand({ StackName: stack.stackName, TemplateStage: "Original" }),
  );
  return tpl.TemplateBody === TEMPLATE_YAML;
}

function isNoChange(reason: string | undefined): boolean {
  return /didn't contain changes|No updates are to be performed/i.test(reason ?? "");
}
