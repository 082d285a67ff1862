/**
 * Uploads the aggregator's code through the Lambda API (a zip built in memory, no S3).
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  GetFunctionCommand,
  GetFunctionConfigurationCommand,
  type LambdaClient,
  UpdateFunctionCodeCommand,
} from "@aws-sdk/client-lambda";
import type * as aws from "../aws_types.ts";

/**
 * What {@link uploadFunctionCode} did.
 *
 * @example
 * ```ts ignore
 * import { type CodeUploadResult, uploadFunctionCode } from "./lambda.ts";
 * const result: CodeUploadResult = await uploadFunctionCode(lambda, "rate_limits-aggregator", zip);
 * if (!result.updated) console.log(`already deployed: ${result.codeSha256}`);
 * ```
 */
export interface CodeUploadResult {
  /** The function. */
  functionName: string;
  /** Whether new code was uploaded (`false`: the deployed code already was this zip). */
  updated: boolean;
  /** Base64 SHA-256 of the zip, as Lambda reports it (`CodeSha256`). */
  codeSha256: string;
  /** Size of the zip in bytes. */
  codeSize: number;
}

/**
 * Lambda's `CodeSha256` of a zip: its SHA-256, base64.
 *
 * @example
 * ```ts
 * import { codeSha256 } from "./lambda.ts";
 * console.assert(codeSha256(new Uint8Array()) === "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
 * ```
 */
export function codeSha256(zip: Uint8Array): string {
  return createHash("sha256").update(zip).digest("base64");
}

/**
 * Uploads `zip` as the function's code unless the deployed code has the same SHA-256, then waits
 * until the update has finished (a failed update throws its reason).
 *
 * @example
 * ```ts ignore
 * import { LambdaClient } from "@aws-sdk/client-lambda";
 * import { buildAggregatorZip } from "../aggregator/bundle.ts";
 * import { uploadFunctionCode } from "./lambda.ts";
 * const lambda = new LambdaClient({ region: "eu-west-1" });
 * const result = await uploadFunctionCode(lambda, "rate_limits-aggregator", buildAggregatorZip());
 * console.log(result.updated ? `uploaded ${result.codeSize} bytes` : "already up to date");
 * ```
 */
export async function uploadFunctionCode(
  lambda: aws.LambdaClient,
  functionName: string,
  zip: Uint8Array,
  options: { timeoutMs?: number; pollMs?: number } = {},
): Promise<CodeUploadResult> {
  const { timeoutMs = 120_000, pollMs = 1000 } = options;
  const sha = codeSha256(zip);
  const current = await lambda.send(new GetFunctionCommand({ FunctionName: functionName }));
  if (current.Configuration?.CodeSha256 === sha) {
    return { functionName, updated: false, codeSha256: sha, codeSize: zip.length };
  }
  await waitForUpdate(lambda, functionName, timeoutMs, pollMs);
  const out = await lambda.send(
    new UpdateFunctionCodeCommand({ FunctionName: functionName, ZipFile: zip }),
  );
  await waitForUpdate(lambda, functionName, timeoutMs, pollMs);
  if (out.CodeSha256 !== undefined && out.CodeSha256 !== sha) {
    throw new Error(
      `Lambda ${functionName} reports code ${out.CodeSha256} after upload, expected ${sha}`,
    );
  }
  return { functionName, updated: true, codeSha256: sha, codeSize: zip.length };
}

async function waitForUpdate(
  lambda: LambdaClient,
  functionName: string,
  timeoutMs: number,
  pollMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const cfg = await lambda.send(
      new GetFunctionConfigurationCommand({ FunctionName: functionName }),
    );
    if (cfg.LastUpdateStatus === "Failed") {
      throw new Error(
        `Lambda ${functionName} update failed: ${cfg.LastUpdateStatusReason ?? "no reason given"}`,
      );
    }
    if (cfg.LastUpdateStatus !== "InProgress" && cfg.State !== "Pending") return;
    if (Date.now() > until) {
      throw new Error(`Lambda ${functionName} is still updating after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
