/**
 * What a deploy records in the table for the library to read: the audit retention
 * (`SYSTEM / #CONFIG`, attribute `auditRetentionDays`), so that the stack's `AuditRetentionDays`
 * sets how long every limiter's audit events are kept.
 *
 * @module
 */

import { DynamoDBClient, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { CONFIG_SK, SYSTEM_PK } from "../audit_query.ts";
import { type AwsOptions, clientConfig } from "./aws.ts";

/**
 * Records the stack's audit retention in its table (idempotent; other attributes of the item are
 * kept).
 *
 * @example
 * ```ts ignore
 * await recordStackConfig({ region: "eu-west-1" }, "rate_limits", 30);
 * ```
 */
export async function recordStackConfig(
  options: AwsOptions,
  tableName: string,
  auditRetentionDays: number,
): Promise<void> {
  const ddb = new DynamoDBClient(clientConfig(options));
  try {
    await ddb.send(
      new UpdateItemCommand({
        TableName: tableName,
        Key: { PK: { S: SYSTEM_PK }, SK: { S: CONFIG_SK } },
        UpdateExpression: "SET auditRetentionDays = :d",
        ExpressionAttributeValues: { ":d": { N: String(auditRetentionDays) } },
      }),
    );
  } finally {
    ddb.destroy();
  }
}
