/**
 * The table's schema version: the item `SYSTEM` / `#VERSION` (absent: version 1), how a limiter
 * reads it (the clock probe's GetItem, or one GetItem of its own) and what it does with it: a
 * version-1 table is warned about once and still served, except by what needs version 2; a newer
 * table than {@link keys.SCHEMA_VERSION} is refused on every call. See "Schema versions and
 * upgrade" in docs/design.md.
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from "@aws-sdk/client-dynamodb";
import { send } from "./calls.ts";
import { ConfigurationError } from "./errors.ts";
import * as keys from "./keys.ts";
import { consoleLogger, type LogFields, logTo } from "./logger.ts";

/** The key of the schema version item. */
export const VERSION_KEY: Record<string, AttributeValue> = {
  PK: { S: keys.SYSTEM_PK },
  SK: { S: keys.VERSION_SK },
};

/** The version an item read at {@link VERSION_KEY} records: 1 when there is none. */
export function versionOf(item: Record<string, AttributeValue> | undefined): number {
  const n = item?.version?.N;
  return n === undefined ? 1 : Number(n);
}

/** Reads the table's schema version (1 when it has no version item). */
export async function readSchemaVersion(
  client: DynamoDBClient,
  tableName: string,
  signal?: AbortSignal,
): Promise<number> {
  const out = await send(client, GetItemCommand, {
    TableName: tableName,
    Key: VERSION_KEY,
    ConsistentRead: true,
  }, signal);
  return versionOf(out.Item);
}

/**
 * Records `version` on the table unless it records a higher one; returns whether it wrote.
 */
export async function writeSchemaVersion(
  client: DynamoDBClient,
  tableName: string,
  version: number = keys.SCHEMA_VERSION,
  signal?: AbortSignal,
): Promise<boolean> {
  try {
    await send(client, PutItemCommand, {
      TableName: tableName,
      Item: {
        ...VERSION_KEY,
        version: { N: String(version) },
        updatedAt: { S: new Date().toISOString() },
      },
      ConditionExpression: "attribute_not_exists(PK) OR version < :v",
      ExpressionAttributeValues: { ":v": { N: String(version) } },
    }, signal);
    return true;
  } catch (err) {
    if (err instanceof Error && err.name === "ConditionalCheckFailedException") return false;
    throw err;
  }
}

/** The error of a table newer than this library. */
export function schemaNewerError(tableName: string, version: number): ConfigurationError {
  return new ConfigurationError(
    "schema-newer",
    `Table "${tableName}" is schema version ${version}, newer than this library knows ` +
      `(${keys.SCHEMA_VERSION}): upgrade @zae/limiter (and the zae-limiter CLI) to a release ` +
      "that reads it",
  );
}

/** The error of an operation that needs version 2 on an older table. */
export function schemaOutdatedError(
  tableName: string,
  version: number,
  operation: string,
): ConfigurationError {
  return new ConfigurationError(
    "schema-outdated",
    `Table "${tableName}" is schema version ${version}; ${operation} needs version ` +
      `${keys.SCHEMA_VERSION}: run \`zae-limiter upgrade --table-name ${tableName}\``,
  );
}

/** Options of {@link SchemaGate}. */
export interface SchemaGateOptions {
  /** The table, for messages. */
  tableName: string;
  /** One read of the version (1 when the table has none). */
  read: (signal: AbortSignal) => Promise<number>;
  /** Whether an outage error (not a misconfiguration) of `read` lets calls go on unchecked. */
  transient: (err: unknown) => boolean;
  /**
   * Where the one warning about an older table goes, with its fields (`schema.outdated`, see
   * docs/usage.md, "Logs"). @default the console (`consoleLogger`)
   */
  warn?: (message: string, fields: LogFields) => void;
}

/**
 * What a limiter knows of its table's schema version, learnt once per limiter: from the clock
 * probe ({@link SchemaGate.observe}) or from one read of its own ({@link SchemaGate.ready}).
 */
export class SchemaGate {
  readonly #options: SchemaGateOptions;
  readonly #warn: (message: string, fields: LogFields) => void;
  #version?: number;
  #reading?: Promise<void>;
  /** When a read last failed for an outage (ms): the next is not sooner than a second after. */
  #failedAt = -Infinity;

  constructor(options: SchemaGateOptions) {
    this.#options = options;
    this.#warn = options.warn ?? ((m, f) => logTo(consoleLogger, "warn", m, f));
  }

  /** The version, once known. */
  get version(): number | undefined {
    return this.#version;
  }

  /** Takes the version read by someone else (the clock probe). */
  observe(version: number): void {
    if (this.#version !== undefined) return;
    this.#version = version;
    if (version < keys.SCHEMA_VERSION) {
      const table = this.#options.tableName;
      this.#warn(
        `zae-limiter: table ${table} is schema version ${version}, this library writes version ` +
          `${keys.SCHEMA_VERSION}; run \`zae-limiter upgrade --table-name ${table}\` (acquires ` +
          "keep working; listing entities needs the upgrade)",
        { event: "schema.outdated", table, version, libraryVersion: keys.SCHEMA_VERSION },
      );
    }
  }

  /**
   * Makes sure the version is known (one read, shared by concurrent callers, when nothing told
   * it), then throws {@link ConfigurationError} `schema-newer` for a newer table. An outage of the
   * read lets the call go on unchecked (tried again a second later); a misconfiguration throws.
   */
  async ready(deadline: number): Promise<void> {
    if (this.#version === undefined && Date.now() - this.#failedAt >= 1000) {
      this.#reading ??= this.#options.read(
        AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      ).then(
        (v) => this.observe(v),
        (err) => {
          if (!this.#options.transient(err)) throw err;
          this.#failedAt = Date.now();
        },
      ).finally(() => {
        this.#reading = undefined;
      });
      await this.#reading;
    }
    this.check();
  }

  /** Throws `schema-newer` when the known version is above this library's. */
  check(): void {
    const v = this.#version;
    if (v !== undefined && v > keys.SCHEMA_VERSION) {
      throw schemaNewerError(this.#options.tableName, v);
    }
  }

  /** Throws `schema-outdated` when the table is older than version 2 (for `operation`). */
  require(operation: string): void {
    this.check();
    const v = this.#version;
    if (v !== undefined && v < keys.SCHEMA_VERSION) {
      throw schemaOutdatedError(this.#options.tableName, v, operation);
    }
  }
}
