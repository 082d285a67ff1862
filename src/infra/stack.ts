/**
 * Deploys, describes and deletes a zae-limiter CloudFormation stack. A deploy whose template,
 * parameters and tags equal the deployed ones changes nothing and says so.
 *
 * This module gathers the stack's parts, one concept a file: `stack_deploy.ts` (create or update,
 * then the aggregator's code), `stack_ensure.ts` (create when missing), `stack_delete.ts`,
 * `stack_describe.ts` (look-ups), `stack_events.ts` (events, failures, waiting) and
 * `stack_error.ts`. `src/setup.ts` loads this file on first use of `createStack`.
 *
 * @module
 */

export { deleteStack, type DeleteStackOptions } from "./stack_delete.ts";
export { deployStack, type DeployStackOptions, type DeployStackResult } from "./stack_deploy.ts";
export { cloudFormationClient, describeStack, type StackInfo } from "./stack_describe.ts";
export { ensureStack, type EnsureStackOptions } from "./stack_ensure.ts";
export { StackDeployError } from "./stack_error.ts";
export { failureReasons, type StackEvent } from "./stack_events.ts";
