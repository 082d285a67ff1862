/**
 * The stacks zae-limiter deployed in a region: every stack `deployStack` (the CLI's `deploy`,
 * `ensureStack`, `createStack`) makes or updates carries the tag {@link STACK_VERSION_TAG}, whose
 * value is the library version that deployed it; {@link listStacks} finds the stacks with it.
 *
 * @module
 */

import { paginateDescribeStacks, type Stack } from "@aws-sdk/client-cloudformation";
import type { AwsOptions } from "./aws.ts";
import { cloudFormationClient } from "./stack_describe.ts";
import { LIBRARY_VERSION } from "../version.ts";

/**
 * The tag `deployStack` puts on every stack it deploys: the library version that deployed it.
 * Tags a user gives are kept beside it; a user's tag may not start with `zae-limiter:`.
 *
 * @example
 * ```ts
 * import { STACK_VERSION_TAG } from "./stack_list.ts";
 * console.assert(STACK_VERSION_TAG === "zae-limiter:version");
 * ```
 */
export const STACK_VERSION_TAG = "zae-limiter:version";

// The version of this library, written in the STACK_VERSION_TAG tag.
export { LIBRARY_VERSION };

/**
 * One stack of {@link listStacks}.
 *
 * @example
 * ```ts ignore
 * import { listStacks, type ListedStack } from "@zae/limiter/infra";
 * const stacks: ListedStack[] = await listStacks({ region: "eu-west-1" });
 * for (const s of stacks) console.log(s.stackName, s.status, s.version, s.tableName);
 * ```
 */
export interface ListedStack {
  /** The stack. */
  stackName: string;
  /** The stack's id (an ARN). */
  stackId: string;
  /** e.g. `CREATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`. */
  status: string;
  /** CloudFormation's reason for the status, if any. */
  statusReason?: string;
  /** The library version that last deployed it (its {@link STACK_VERSION_TAG} tag). */
  version: string;
  /** The table (the stack's `TableName` parameter), when known. */
  tableName?: string;
  /** Creation time. */
  createdAt?: Date;
  /** Last update time. */
  updatedAt?: Date;
}

/**
 * The stacks zae-limiter deployed in the region (those tagged {@link STACK_VERSION_TAG}), sorted
 * by name; one `DescribeStacks` per page of 100 stacks, every page read. Deleted stacks are not
 * listed; a stack deployed before the tag existed shows once it is deployed again.
 *
 * @example
 * ```ts ignore
 * import { listStacks } from "@zae/limiter/infra";
 * for (const s of await listStacks({ region: "eu-west-1" })) {
 *   console.log(`${s.stackName}  ${s.status}  ${s.version}`);
 * }
 * ```
 */
export async function listStacks(options: AwsOptions = {}): Promise<ListedStack[]> {
  const cfn = cloudFormationClient(options);
  const out: ListedStack[] = [];
  try {
    for await (const page of paginateDescribeStacks({ client: cfn }, {})) {
      for (const stack of page.Stacks ?? []) {
        const listed = listedStack(stack);
        if (listed) out.push(listed);
      }
    }
  } finally {
    cfn.destroy();
  }
  return out.sort((a, b) => (a.stackName < b.stackName ? -1 : a.stackName > b.stackName ? 1 : 0));
}

function listedStack(stack: Stack): ListedStack | undefined {
  const version = stack.Tags?.find((t) => t.Key === STACK_VERSION_TAG)?.Value;
  if (version === undefined || stack.StackStatus === "DELETE_COMPLETE") return undefined;
  const tableName = stack.Parameters?.find((p) => p.ParameterKey === "TableName")?.ParameterValue;
  return {
    stackName: stack.StackName ?? "",
    stackId: stack.StackId ?? stack.StackName ?? "",
    status: stack.StackStatus ?? "UNKNOWN",
    ...(stack.StackStatusReason ? { statusReason: stack.StackStatusReason } : {}),
    version,
    ...(tableName ? { tableName } : {}),
    ...(stack.CreationTime ? { createdAt: stack.CreationTime } : {}),
    ...(stack.LastUpdatedTime ? { updatedAt: stack.LastUpdatedTime } : {}),
  };
}

/**
 * The tags a deploy sets: the user's (given, or else the stack's own), with
 * {@link STACK_VERSION_TAG} set to this version.
 */
export function deployTags(
  given: Record<string, string> | undefined,
  existing: Record<string, string> | undefined,
): Record<string, string> {
  return { ...(given ?? existing ?? {}), [STACK_VERSION_TAG]: LIBRARY_VERSION };
}
