/**
 * The namespaces of a table: a registry (`PK = NAMESPACES`, `SK = {name}`, in the default key
 * space), and listing, creating and deleting namespaces. A namespaced limiter registers its
 * namespace on its first admin change in a process (a `Put` if absent); the hot path never does.
 * See docs/design.md, "Namespaces".
 *
 * @module
 */

import {
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  PutItemCommand,
  ScanCommand,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import type * as aws from "./aws_types.ts";
import { type Item, queryPages, send, untilProcessed } from "./calls.ts";
import { ValidationError } from "./error_base.ts";
import { KeySpace, NAMESPACES_PK } from "./keyspace.ts";

export { DEFAULT_NAMESPACE, KeySpace, validateNamespace } from "./keyspace.ts";

/**
 * A registered namespace.
 *
 * @example
 * ```ts
 * import type { NamespaceInfo } from "./namespaces.ts";
 * const info: NamespaceInfo = { name: "billing", createdAt: "2026-11-29T12:00:00.000Z" };
 * console.assert(info.name === "billing");
 * ```
 */
export interface NamespaceInfo {
  /** The namespace's name. */
  name: string;
  /** When it was registered (ISO 8601). */
  createdAt: string;
}

/** A named (not the default) namespace's key space, or a `ValidationError`. */
function named(namespace: string, field = "namespace"): KeySpace {
  const space = KeySpace.of(namespace, field);
  if (space.namespace === undefined) {
    throw new ValidationError(field, namespace, "must name a namespace other than the default");
  }
  return space;
}

/**
 * Registers a namespace (a `Put` if absent). Returns whether it was new.
 *
 * @example
 * ```ts ignore
 * await createNamespace(client, "rate_limits", "billing"); // true, then false
 * ```
 */
export async function createNamespace(
  client: aws.DynamoDBClient,
  tableName: string,
  namespace: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const space = named(namespace);
  try {
    await send(client, PutItemCommand, {
      TableName: tableName,
      Item: {
        PK: { S: NAMESPACES_PK },
        SK: { S: space.name },
        namespace: { S: space.name },
        createdAt: { S: new Date().toISOString() },
      },
      ConditionExpression: "attribute_not_exists(PK)",
    }, signal);
    return true;
  } catch (err) {
    if (err instanceof ConditionalCheckFailedException) return false;
    throw err;
  }
}

/**
 * The registered namespaces, sorted by name (the default namespace is never listed: it always
 * exists).
 *
 * @example
 * ```ts ignore
 * for (const ns of await listNamespaces(client, "rate_limits")) console.log(ns.name);
 * ```
 */
export async function listNamespaces(
  client: aws.DynamoDBClient,
  tableName: string,
  signal?: AbortSignal,
): Promise<NamespaceInfo[]> {
  const out: NamespaceInfo[] = [];
  for await (
    const items of queryPages(client, {
      TableName: tableName,
      KeyConditionExpression: "PK = :pk",
      ExpressionAttributeValues: { ":pk": { S: NAMESPACES_PK } },
      ConsistentRead: true,
    }, signal)
  ) {
    for (const item of items) {
      out.push({ name: item.SK.S ?? "", createdAt: item.createdAt?.S ?? "" });
    }
  }
  return out;
}

/**
 * Deletes every item of a namespace (a paged `Scan` for its partition-key prefix, then batch
 * deletes, retrying unprocessed items), then its registry item. Returns how many items of the
 * namespace were deleted (the registry item not counted). The default namespace is refused.
 *
 * @example
 * ```ts ignore
 * const deleted = await deleteNamespace(client, "rate_limits", "billing");
 * ```
 */
export async function deleteNamespace(
  client: aws.DynamoDBClient,
  tableName: string,
  namespace: string,
  signal?: AbortSignal,
): Promise<number> {
  const space = named(namespace);
  let deleted = 0;
  let start: Item | undefined;
  do {
    const page = await send(client, ScanCommand, {
      TableName: tableName,
      FilterExpression: "begins_with(PK, :prefix)",
      ExpressionAttributeValues: { ":prefix": { S: space.prefix } },
      ProjectionExpression: "PK, SK",
      ConsistentRead: true,
      ExclusiveStartKey: start,
    }, signal);
    const items = page.Items ?? [];
    for (let i = 0; i < items.length; i += 25) {
      await untilProcessed<WriteRequest>(
        items.slice(i, i + 25).map((it) => ({ DeleteRequest: { Key: { PK: it.PK, SK: it.SK } } })),
        async (left) =>
          (await send(
            client,
            BatchWriteItemCommand,
            { RequestItems: { [tableName]: left } },
            signal,
          )).UnprocessedItems?.[tableName],
        20,
        1000,
        (left) => new Error(`could not delete ${left.length} items after retries`),
      );
    }
    deleted += items.length;
    start = page.LastEvaluatedKey;
  } while (start);
  await send(client, DeleteItemCommand, {
    TableName: tableName,
    Key: { PK: { S: NAMESPACES_PK }, SK: { S: space.name } },
  }, signal);
  return deleted;
}

/**
 * Registers a store's namespace once per process, before its first write (nothing for the
 * default namespace). A failure is thrown, and the next write tries again.
 *
 * @example
 * ```ts ignore
 * const registration = new NamespaceRegistration(client, "rate_limits", KeySpace.of("billing"));
 * await registration.ensure(); // one conditional Put; later calls: none
 * ```
 */
export class NamespaceRegistration {
  readonly #client: aws.DynamoDBClient;
  readonly #table: string;
  readonly #space: KeySpace;
  #done?: Promise<unknown>;

  /** @param client DynamoDB client. @param tableName Table. @param space The store's keys. */
  constructor(client: aws.DynamoDBClient, tableName: string, space: KeySpace) {
    this.#client = client;
    this.#table = tableName;
    this.#space = space;
  }

  /** Registers the namespace, the first time only. */
  ensure(signal?: AbortSignal): Promise<unknown> {
    const name = this.#space.namespace;
    if (name === undefined) return Promise.resolve();
    this.#done ??= createNamespace(this.#client, this.#table, name, signal).catch((err) => {
      this.#done = undefined;
      throw err;
    });
    return this.#done;
  }
}
