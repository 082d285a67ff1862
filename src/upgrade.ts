/**
 * `upgradeTable`: migrates a table in place to the schema version this library writes
 * ({@link SCHEMA_VERSION}), idempotently. From version 1: adds GSI3 and waits until it is active,
 * gives every entity metadata and stored-limits item its GSI3 keys, then records the version, last.
 *
 * @module
 */

import {
  DescribeTableCommand,
  type DynamoDBClient,
  ScanCommand,
  UpdateItemCommand,
  UpdateTableCommand,
} from "@aws-sdk/client-dynamodb";
import { type Item, send, sleep } from "./calls.ts";
import type * as aws from "./aws_types.ts";
import { RateLimiterUnavailable } from "./errors.ts";
import { limiterError } from "./failure.ts";
import * as keys from "./keys.ts";
import { SCHEMA_VERSION } from "./keys.ts";
import { KeySpace, NAMESPACE_PREFIX } from "./keyspace.ts";
import { readSchemaVersion, schemaNewerError, writeSchemaVersion } from "./schema.ts";
import { gsi3Definition } from "./table.ts";

/**
 * Options of {@link upgradeTable}.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import type { UpgradeOptions } from "./upgrade.ts";
 * const options: UpgradeOptions = {
 *   client: new DynamoDBClient({ region: "us-east-1" }),
 *   tableName: "rate_limits",
 * };
 * console.assert(options.tableName === "rate_limits");
 * options.client.destroy();
 * ```
 */
export interface UpgradeOptions {
  /** A DynamoDB client allowed to describe and update the table, scan and update items. */
  client: aws.DynamoDBClient;
  /** The table. */
  tableName: string;
  /** How long to wait for the new index to become active, ms. @default 1_800_000 (30 min) */
  indexTimeoutMs?: number;
  /** Told of each step, for a progress line. @default nothing */
  progress?: (message: string) => void;
}

/**
 * What {@link upgradeTable} did.
 *
 * @example
 * ```ts
 * import type { UpgradeResult } from "./upgrade.ts";
 * const r: UpgradeResult = { fromVersion: 2, toVersion: 2, changed: false, addedIndex: false,
 *   backfilled: 0 };
 * console.assert(!r.changed);
 * ```
 */
export interface UpgradeResult {
  /** The version the table recorded before (1 when it recorded none). */
  fromVersion: number;
  /** The version it records now. */
  toVersion: number;
  /** Whether anything was changed (false: it was already current). */
  changed: boolean;
  /** Whether GSI3 was added. */
  addedIndex: boolean;
  /** Items given their GSI3 keys. */
  backfilled: number;
}

/** Items updated at once during the backfill. */
const PARALLEL = 16;

/**
 * Upgrades a table to schema version {@link SCHEMA_VERSION} in place. Idempotent: a current table
 * is left unchanged (`changed: false`), and a run stopped half-way is finished by the next. A table
 * newer than this library is refused with `ConfigurationError` `schema-newer`. Upgrade every
 * process's library first: an old library writes entities without GSI3 keys.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { upgradeTable } from "./upgrade.ts";
 * const client = new DynamoDBClient({ region: "eu-west-1" });
 * const r = await upgradeTable({ client, tableName: "rate_limits" });
 * console.log(r.changed ? `upgraded from ${r.fromVersion}` : "already current");
 * ```
 */
export async function upgradeTable(options: UpgradeOptions): Promise<UpgradeResult> {
  try {
    return await upgrade(options);
  } catch (err) {
    // A missing table, denied access... become ConfigurationError; no answer, an outage.
    throw limiterError(err, "upgradeTable", { tableName: options.tableName });
  }
}

async function upgrade(options: UpgradeOptions): Promise<UpgradeResult> {
  const { client, tableName, indexTimeoutMs = 1_800_000, progress = () => {} } = options;
  const fromVersion = await readSchemaVersion(client, tableName);
  if (fromVersion > SCHEMA_VERSION) throw schemaNewerError(tableName, fromVersion);
  const result: UpgradeResult = {
    fromVersion,
    toVersion: fromVersion,
    changed: false,
    addedIndex: false,
    backfilled: 0,
  };
  if (fromVersion === SCHEMA_VERSION && (await indexStatus(client, tableName)) === "ACTIVE") {
    return result;
  }
  if ((await indexStatus(client, tableName)) === undefined) {
    progress(`adding index ${keys.GSI3} to ${tableName}`);
    try {
      await send(client, UpdateTableCommand, {
        TableName: tableName,
        AttributeDefinitions: [
          { AttributeName: "GSI3PK", AttributeType: "S" },
          { AttributeName: "GSI3SK", AttributeType: "S" },
        ],
        GlobalSecondaryIndexUpdates: [{ Create: gsi3Definition() }],
      });
      result.addedIndex = true;
    } catch (err) {
      // A concurrent upgrade added it first: wait for that one.
      if (!(err instanceof Error && /already exists/i.test(err.message))) throw err;
    }
  }
  const until = Date.now() + indexTimeoutMs;
  while ((await indexStatus(client, tableName)) !== "ACTIVE") {
    if (Date.now() > until) {
      throw new RateLimiterUnavailable(
        `upgradeTable (index ${keys.GSI3} of ${tableName} is not active after ` +
          `${indexTimeoutMs} ms; run the upgrade again to go on waiting)`,
      );
    }
    await sleep(1000);
  }
  progress(`giving entity items their ${keys.GSI3} keys`);
  result.backfilled = await backfill(client, tableName);
  await writeSchemaVersion(client, tableName, SCHEMA_VERSION);
  result.toVersion = SCHEMA_VERSION;
  result.changed = true;
  return result;
}

/** The status of GSI3 (with the table's), or `undefined` when the table has no GSI3. */
async function indexStatus(client: DynamoDBClient, tableName: string): Promise<string | undefined> {
  const out = await send(client, DescribeTableCommand, { TableName: tableName });
  const index = out.Table?.GlobalSecondaryIndexes?.find((i) => i.IndexName === keys.GSI3);
  if (!index) return undefined;
  return out.Table?.TableStatus === "ACTIVE" ? index.IndexStatus : out.Table?.TableStatus;
}

/**
 * Every entity metadata and stored-limits item without GSI3 keys gets them (a paged Scan); each
 * update is conditional on the item still being there, so a concurrent delete stays deleted.
 */
async function backfill(client: DynamoDBClient, tableName: string): Promise<number> {
  let done = 0;
  let start: Item | undefined;
  do {
    const page = await send(client, ScanCommand, {
      TableName: tableName,
      ProjectionExpression: "PK, SK",
      // Entity items of every namespace (a namespace's keys start `NS#{name}#ENTITY#`).
      FilterExpression: "(begins_with(PK, :e) OR begins_with(PK, :ns)) AND " +
        "(SK = :meta OR begins_with(SK, :lim)) AND attribute_not_exists(GSI3PK)",
      ExpressionAttributeValues: {
        ":e": { S: keys.entityPk("") },
        ":ns": { S: NAMESPACE_PREFIX },
        ":meta": { S: keys.META_SK },
        ":lim": { S: keys.LIMIT_PREFIX },
      },
      ...(start ? { ExclusiveStartKey: start } : {}),
    });
    const items = page.Items ?? [];
    for (let i = 0; i < items.length; i += PARALLEL) {
      const updated = await Promise.all(items.slice(i, i + PARALLEL).map((it) => index(it)));
      done += updated.filter(Boolean).length;
    }
    start = page.LastEvaluatedKey;
  } while (start);
  return done;

  async function index(item: Item): Promise<boolean> {
    const parsed = KeySpace.parse(item.PK.S ?? "");
    const space = parsed?.space ?? KeySpace.DEFAULT;
    const entityId = space.entityIdOf(item.PK.S ?? "");
    if (entityId === undefined) return false; // another namespaced item (not an entity's)
    const sk = item.SK.S ?? "";
    const ks = keys.entityIndexKeys(
      entityId,
      sk === keys.META_SK ? undefined : { resource: sk.slice(keys.LIMIT_PREFIX.length) },
      space.entitiesKey(),
    );
    try {
      await send(client, UpdateItemCommand, {
        TableName: tableName,
        Key: { PK: item.PK, SK: item.SK },
        UpdateExpression: "SET GSI3PK = :p, GSI3SK = :s",
        ConditionExpression: "attribute_exists(PK)",
        ExpressionAttributeValues: { ":p": ks.GSI3PK, ":s": ks.GSI3SK },
      });
      return true;
    } catch (err) {
      if (err instanceof Error && err.name === "ConditionalCheckFailedException") return false;
      throw err;
    }
  }
}
