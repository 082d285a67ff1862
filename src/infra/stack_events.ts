/**
 * A stack's events while it deploys or is deleted: reading them, reporting the new ones, the
 * reasons of the failed ones, and waiting until the stack is no longer in progress.
 *
 * @module
 */

import {
  type CloudFormationClient,
  DescribeStackEventsCommand,
} from "@aws-sdk/client-cloudformation";
import { describeAwsError } from "./aws.ts";
import { findStack } from "./stack_describe.ts";
import { StackDeployError } from "./stack_error.ts";

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

/** The statuses of a stack deployed as asked. */
export const DONE_OK = new Set(["CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"]);
/** The statuses of a stack whose last operation failed and ended. */
export const FAILED_END = new Set([
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

/** Whether the event is a failure of its own (not one cancelled by another's failure). */
export function isFailure(e: StackEvent): boolean {
  return e.status.endsWith("_FAILED") && !/Resource creation cancelled|Resource update cancelled/
    .test(e.reason ?? "");
}

/** The failed event as a reason: `LogicalId (Type): reason`. */
export function formatFailure(e: StackEvent): string {
  return `${e.logicalId} (${e.resourceType}): ${e.reason ?? e.status}`;
}

/** The stack's events, oldest first, each with an id. */
export async function stackEvents(cfn: CloudFormationClient, stackName: string): Promise<
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

/** The ids of the events the stack has so far, so that only newer ones are reported. */
export async function seenEventIds(
  cfn: CloudFormationClient,
  stackName: string,
): Promise<Set<string>> {
  return new Set((await stackEvents(cfn, stackName)).map((e) => e.id));
}

/** The failures among the events not in `seen`, oldest first. */
export async function failedEvents(
  cfn: CloudFormationClient,
  stackName: string,
  seen: Set<string>,
): Promise<StackEvent[]> {
  return (await stackEvents(cfn, stackName)).filter((e) => !seen.has(e.id) && isFailure(e));
}

/**
 * Polls the stack until it is no longer in progress (or gone) and returns its status, passing each
 * new event to `onEvent`; throws {@link StackDeployError} after `timeoutMs`.
 */
export async function waitForStack(
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
