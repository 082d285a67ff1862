/**
 * Looks a stack up: the CloudFormation client, the stack's name from a table's, and the stack's
 * status, outputs, parameters and tags.
 *
 * @module
 */

import {
  CloudFormationClient,
  DescribeStacksCommand,
  type Stack,
} from "@aws-sdk/client-cloudformation";
import { type AwsOptions, clientConfig, describeAwsError } from "./aws.ts";
import { StackDeployError } from "./stack_error.ts";
import { defaultStackName, validateStackName } from "./template.ts";

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

/** The CloudFormation client of `options`. */
export function cloudFormationClient(options: AwsOptions): CloudFormationClient {
  return new CloudFormationClient(clientConfig(options));
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

/** The stack named by `options`: its `stackName`, or the default stack name of its `tableName`. */
export function resolveStackName(options: { stackName?: string; tableName?: string }): string {
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

/**
 * The stack as CloudFormation describes it, or `undefined` when there is none (a deleted stack
 * is still found by its id, as `DELETE_COMPLETE`).
 */
export async function findStack(
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
