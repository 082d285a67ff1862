/**
 * Listing entities: the entity index (GSI3, schema version 2) on DynamoDB, its opaque cursor, and
 * {@link listEntities} as the limiter runs it. GSI3 holds every metadata item (`GSI3SK = {id}`)
 * followed by the entity's stored-limits items (`{id}#LIMIT#{resource}`), so one Query gives the
 * entities and which of them have stored limits.
 *
 * @module
 */

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { queryPages } from "./calls.ts";
import { type Entity, parseEntity } from "./entity_items.ts";
import { ValidationError } from "./errors.ts";
import * as keys from "./keys.ts";
import { KeySpace } from "./keyspace.ts";
import { readSchemaVersion } from "./schema.ts";
import { checkBoolean, checkObject } from "./validate.ts";

/**
 * Options of `RateLimiter.listEntities`.
 *
 * @example
 * ```ts
 * import type { ListEntitiesOptions } from "./entity_list.ts";
 * const options: ListEntitiesOptions = { withCustomLimits: true, limit: 50 };
 * console.assert(options.limit === 50);
 * ```
 */
export interface ListEntitiesOptions {
  /** Only entities with stored limits (entity-wide or for a resource). @default false */
  withCustomLimits?: boolean;
  /** At most this many entities (1 to 1000). @default 100 */
  limit?: number;
  /** Where to go on: the `cursor` of the previous page. @default the first page */
  cursor?: string;
}

/**
 * One page of entities, sorted by id.
 *
 * @example
 * ```ts
 * import type { EntityListPage } from "./entity_list.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * await limiter.createEntity({ entityId: "proj-1" });
 * const page: EntityListPage = await limiter.listEntities();
 * console.assert(page.entities.length === 1 && page.cursor === undefined);
 * ```
 */
export interface EntityListPage {
  /** The entities of this page, by id. */
  entities: Entity[];
  /** Pass as `cursor` for the next page; absent when there are no more entities. */
  cursor?: string;
}

/**
 * One page as a backend returns it: `more` when entities may follow the last one.
 *
 * @example
 * ```ts
 * import type { CatalogPage } from "./entity_list.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const page: CatalogPage = await new InMemoryBackend().catalog.listEntities({
 *   limit: 10,
 *   withCustomLimits: false,
 * });
 * console.assert(page.entities.length === 0 && !page.more);
 * ```
 */
export interface CatalogPage {
  /** The entities, by id. */
  entities: Entity[];
  /** Whether an entity follows the last one returned. */
  more: boolean;
}

/**
 * What a backend is asked for: entities after `after` (by id), at most `limit`.
 *
 * @example
 * ```ts
 * import { catalogQuery, type CatalogQuery, encodeCursor } from "./entity_list.ts";
 * const query: CatalogQuery = catalogQuery({ limit: 5, cursor: encodeCursor("key-1") });
 * console.assert(query.after === "key-1" && query.limit === 5 && !query.withCustomLimits);
 * ```
 */
export interface CatalogQuery {
  /** Only ids after this one. */
  after?: string;
  /** At most this many entities. */
  limit: number;
  /** Only entities with stored limits. */
  withCustomLimits: boolean;
}

/**
 * The table's catalogue: its schema version, and its entities by id.
 *
 * @example
 * ```ts
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const backend = new InMemoryBackend();
 * console.assert(await backend.catalog.readVersion() === 2);
 * ```
 */
export interface CatalogBackend {
  /** The table's schema version (1 when it records none). */
  readVersion(signal?: AbortSignal): Promise<number>;
  /** One page of entities, by id. */
  listEntities(query: CatalogQuery, signal?: AbortSignal): Promise<CatalogPage>;
}

/** Items read per Query page of GSI3. */
const QUERY_PAGE = 500;

/**
 * The catalogue of a DynamoDB table: the version item, and GSI3.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { DynamoCatalog } from "./entity_list.ts";
 * const catalog = new DynamoCatalog(new DynamoDBClient({ region: "us-east-1" }), "rate_limits");
 * console.assert(typeof catalog.listEntities === "function");
 * ```
 */
export class DynamoCatalog implements CatalogBackend {
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #keys: KeySpace;

  /**
   * @param client DynamoDB client. @param tableName Table.
   * @param space The namespace listed (the schema version is the table's, in every namespace).
   */
  constructor(client: DynamoDBClient, tableName: string, space: KeySpace = KeySpace.DEFAULT) {
    this.#client = client;
    this.#table = tableName;
    this.#keys = space;
  }

  /** The table's schema version (a strongly consistent GetItem). */
  readVersion(signal?: AbortSignal): Promise<number> {
    return readSchemaVersion(this.#client, this.#table, signal);
  }

  /** Queries GSI3 from `after` until `limit` entities are found or the index ends. */
  async listEntities(query: CatalogQuery, signal?: AbortSignal): Promise<CatalogPage> {
    const values: Record<string, { S: string }> = { ":p": { S: this.#keys.entitiesKey() } };
    let condition = "GSI3PK = :p";
    if (query.after !== undefined) {
      // Every id allowed sorts after `$`, and every stored-limits key of `after` before it.
      values[":a"] = { S: `${query.after}$` };
      condition += " AND GSI3SK > :a";
    }
    const entities: Entity[] = [];
    let current: { entity: Entity; limits: boolean } | undefined;
    const keep = (c: typeof current) => c && (!query.withCustomLimits || c.limits);
    for await (
      const items of queryPages(this.#client, {
        TableName: this.#table,
        IndexName: keys.GSI3,
        KeyConditionExpression: condition,
        ExpressionAttributeValues: values,
        Limit: QUERY_PAGE,
      }, signal)
    ) {
      for (const item of items) {
        const sk = item.SK?.S;
        if (sk === keys.META_SK) {
          if (keep(current)) {
            entities.push(current!.entity);
            if (entities.length >= query.limit) return { entities, more: true };
          }
          current = { entity: parseEntity(item), limits: false };
        } else if (
          sk?.startsWith(keys.LIMIT_PREFIX) && current &&
          this.#keys.entityIdOf(item.PK?.S ?? "") === current.entity.entityId
        ) {
          current.limits = true;
        }
      }
    }
    if (keep(current)) entities.push(current!.entity);
    return { entities, more: false };
  }
}

/** The cursor of a page that ended at `entityId`. */
export function encodeCursor(entityId: string): string {
  return btoa(`e1:${entityId}`).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

/** The entity id a cursor continues after; `ValidationError` for one this library did not make. */
export function decodeCursor(cursor: unknown): string {
  const bad = () =>
    new ValidationError("cursor", cursor, "must be the cursor of a previous listEntities page");
  if (typeof cursor !== "string" || !/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) throw bad();
  let text: string;
  try {
    text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    throw bad();
  }
  const id = text.startsWith("e1:") ? text.slice(3) : "";
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$/.test(id)) throw bad();
  return id;
}

/** The query of some {@link ListEntitiesOptions}, validated (before any call). */
export function catalogQuery(options: ListEntitiesOptions = {}): CatalogQuery {
  checkObject("options", options);
  const { withCustomLimits = false, limit = 100, cursor } = options;
  checkBoolean("withCustomLimits", withCustomLimits);
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new ValidationError("limit", limit, "must be a whole number from 1 to 1000");
  }
  return {
    limit,
    withCustomLimits,
    ...(cursor === undefined ? {} : { after: decodeCursor(cursor) }),
  };
}

/** What {@link listEntities} runs with. */
export interface EntityListDeps {
  /** The backend's catalogue; absent on a custom backend without one. */
  catalog?: CatalogBackend;
  /** Runs a call: waits for the set-up, checks the schema, retries within a deadline. */
  run: <T>(operation: string, fn: (signal: AbortSignal) => Promise<T>) => Promise<T>;
  /** Throws when the table's schema is older than `operation` needs (or newer than known). */
  requireCurrent: (operation: string) => void;
}

/** One page of entities (the logic of `RateLimiter.listEntities`). */
export async function listEntities(
  deps: EntityListDeps,
  options: ListEntitiesOptions = {},
): Promise<EntityListPage> {
  const query = catalogQuery(options);
  const catalog = deps.catalog;
  if (!catalog) {
    throw new ValidationError("backend", "custom", "must have a catalog to list entities");
  }
  const page = await deps.run("listEntities", (signal) => {
    deps.requireCurrent("listing entities");
    return catalog.listEntities(query, signal);
  });
  const last = page.entities.at(-1);
  return {
    entities: page.entities,
    ...(page.more && last ? { cursor: encodeCursor(last.entityId) } : {}),
  };
}
