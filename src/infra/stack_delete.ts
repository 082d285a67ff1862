/**
 * Deletes a stack (and with it the table and its data), waiting until it is gone.
 *
 * @module
 */

import { type CloudFormationClient, DeleteStackCommand } from "@aws-sdk/client-cloudformation";
import { type AwsOptions, describeAwsError } from "./aws.ts";
import { cloudFormationClient, findStack, resolveStackName } from "./stack_describe.ts";
import { StackDeployError } from "./stack_error.ts";
import {
  failedEvents,
  formatFailure,
  seenEventIds,
  type StackEvent,
  waitForStack,
} from "./stack_events.ts";

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
 * Deletes the stack and waits until it is gone, reporting its events; throws
 * {@link StackDeployError} with the last reasons when the deletion fails.
 */
export async function deleteAndWait(
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
