/**
 * The error of a stack operation that failed, with CloudFormation's reasons.
 *
 * @module
 */

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
