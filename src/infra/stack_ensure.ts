/**
 * Makes sure a table's stack exists and is deployed, creating it when it is missing.
 *
 * @module
 */

import { deployStack, type DeployStackOptions } from "./stack_deploy.ts";
import { cloudFormationClient, findStack, type StackInfo } from "./stack_describe.ts";
import { StackDeployError } from "./stack_error.ts";
import { DONE_OK, FAILED_END } from "./stack_events.ts";
import { defaultStackName, stackParameters, validateStackName } from "./template.ts";

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
