/**
 * Whether a DynamoDB endpoint answers.
 *
 * @module
 */

/**
 * Whether a DynamoDB(-Local) endpoint answers a `ListTables` call. Never throws.
 *
 * @example
 * ```ts
 * import { isDynamoDBReady } from "./mod.ts";
 * console.log(await isDynamoDBReady("http://127.0.0.1:8000"));
 * ```
 */
export async function isDynamoDBReady(endpoint: string, timeoutMs = 2_000): Promise<boolean> {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  try {
    const res = await fetch(endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.ListTables",
        // DynamoDB Local checks that the access key id is alphanumeric, not the signature.
        authorization:
          "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, " +
          "SignedHeaders=content-type;host;x-amz-target, Signature=0",
      },
      body: "{}",
      signal: ctrl.signal,
    });
    const text = await res.text();
    return res.ok && text.includes("TableNames");
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
