/**
 * Infrastructure of zae-limiter: deploy, describe and delete the CloudFormation stack (table,
 * usage aggregator, alarms, IAM policies) from code, as the `zae-limiter` CLI does.
 *
 * ```ts ignore
 * import { deployStack, deploymentStatus, listStacks } from "@zae/limiter/infra";
 * await deployStack({ tableName: "rate_limits", region: "eu-west-1",
 *   onEvent: (e) => console.log(e.logicalId, e.status, e.reason ?? "") });
 * console.log(await deploymentStatus({ tableName: "rate_limits", region: "eu-west-1" }));
 * for (const s of await listStacks({ region: "eu-west-1" })) console.log(s.stackName, s.version);
 * ```
 *
 * @module
 */

export { type AwsOptions, clientConfig, describeAwsError } from "./aws.ts";
export { codeSha256, type CodeUploadResult, uploadFunctionCode } from "./lambda.ts";
export {
  deleteStack,
  type DeleteStackOptions,
  deployStack,
  type DeployStackOptions,
  type DeployStackResult,
  describeStack,
  ensureStack,
  type EnsureStackOptions,
  failureReasons,
  StackDeployError,
  type StackEvent,
  type StackInfo,
} from "./stack.ts";
export { LIBRARY_VERSION, type ListedStack, listStacks, STACK_VERSION_TAG } from "./stack_list.ts";
export {
  type AggregatorState,
  type DeploymentStatus,
  deploymentStatus,
  type TableState,
} from "./status.ts";
export {
  defaultStackName,
  LOG_RETENTION_DAYS,
  parseTemplate,
  stackParameters,
  type StackSettings,
  StackSettingsError,
  TEMPLATE_YAML,
  type UsageWindowName,
} from "./template.ts";
