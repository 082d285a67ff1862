/**
 * The table: its definition (keys, indexes, stream) and its creation for development
 * (`createTable: true`), waiting until it is active. Production tables come from the stack.
 *
 * @module
 */

import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import { send, sleep } from "./calls.ts";
import * as keys from "./keys.ts";
import { writeSchemaVersion } from "./schema.ts";

/** GSI3 (schema version 2): every entity, and its stored limits, by id. */
export function gsi3Definition(): {
  IndexName: string;
  KeySchema: { AttributeName: string; KeyType: "HASH" | "RANGE" }[];
  Projection: { ProjectionType: "ALL" };
} {
  return {
    IndexName: keys.GSI3,
    KeySchema: [
      { AttributeName: "GSI3PK", KeyType: "HASH" },
      { AttributeName: "GSI3SK", KeyType: "RANGE" },
    ],
    Projection: { ProjectionType: "ALL" },
  };
}

/**
 * The CreateTable input (schema version 2): PK/SK, GSI1 (parent → children), GSI2 (resource →
 * buckets), GSI3 (entities), stream.
 */
export function tableDefinition(
  tableName: string,
): ConstructorParameters<typeof CreateTableCommand>[0] {
  return {
    TableName: tableName,
    BillingMode: "PAY_PER_REQUEST",
    AttributeDefinitions: [
      { AttributeName: "PK", AttributeType: "S" },
      { AttributeName: "SK", AttributeType: "S" },
      { AttributeName: "GSI1PK", AttributeType: "S" },
      { AttributeName: "GSI1SK", AttributeType: "S" },
      { AttributeName: "GSI2PK", AttributeType: "S" },
      { AttributeName: "GSI2SK", AttributeType: "S" },
      { AttributeName: "GSI3PK", AttributeType: "S" },
      { AttributeName: "GSI3SK", AttributeType: "S" },
    ],
    KeySchema: [
      { AttributeName: "PK", KeyType: "HASH" },
      { AttributeName: "SK", KeyType: "RANGE" },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: keys.GSI1,
        KeySchema: [
          { AttributeName: "GSI1PK", KeyType: "HASH" },
          { AttributeName: "GSI1SK", KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "ALL" },
      },
      {
        IndexName: keys.GSI2,
        KeySchema: [
          { AttributeName: "GSI2PK", KeyType: "HASH" },
          { AttributeName: "GSI2SK", KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "KEYS_ONLY" },
      },
      gsi3Definition(),
    ],
    StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_AND_OLD_IMAGES" },
  };
}

/** Whether the table exists and is active. */
export async function tableStatus(
  client: DynamoDBClient,
  tableName: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  try {
    const out = await send(
      client,
      DescribeTableCommand,
      { TableName: tableName },
      signal,
    );
    return out.Table?.TableStatus;
  } catch (err) {
    if (err instanceof Error && err.name === "ResourceNotFoundException") return undefined;
    throw err;
  }
}

/**
 * Creates the table with its indexes, TTL and stream when it is missing, and waits until it is
 * active; a table it creates records schema version 2. Another process creating it at the same
 * moment is fine (that one records the version). A table that was there is left as it is: an
 * older one is upgraded by `zae-limiter upgrade`.
 */
export async function createTable(
  client: DynamoDBClient,
  tableName: string,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const { timeoutMs = 60_000 } = options;
  const until = Date.now() + timeoutMs;
  // Every call is bounded: a DynamoDB that accepts connections but never answers must not hang.
  const signal = () => AbortSignal.timeout(Math.max(1, until - Date.now()));
  let created = false;
  if ((await tableStatus(client, tableName, signal())) === undefined) {
    try {
      await send(client, CreateTableCommand, tableDefinition(tableName), signal());
      created = true;
    } catch (err) {
      if (!(err instanceof Error && err.name === "ResourceInUseException")) throw err;
    }
  }
  while ((await tableStatus(client, tableName, signal())) !== "ACTIVE") {
    if (Date.now() > until) {
      throw new Error(`table ${tableName} is not active after ${timeoutMs} ms`);
    }
    await sleep(100);
  }
  try {
    await send(client, UpdateTimeToLiveCommand, {
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: keys.TTL, Enabled: true },
    }, signal());
  } catch (err) {
    // Already enabled (by us or a concurrent creator) is fine.
    if (
      !(err instanceof Error &&
        /already enabled|ValidationException/i.test(`${err.name} ${err.message}`))
    ) {
      throw err;
    }
  }
  if (created) await writeSchemaVersion(client, tableName, keys.SCHEMA_VERSION, signal());
}
