/**
 * The DynamoDB calls the stores share: one command aborted on a signal, a Query read page by page,
 * and a batch call resent until nothing of it is left unprocessed.
 *
 * @module
 */

import {
  type AttributeValue,
  type DynamoDBClient,
  QueryCommand,
  type QueryCommandInput,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from "@aws-sdk/client-dynamodb";

/** A command of the DynamoDB client with input `I` and output `O`. */
type Command<I extends ServiceInputTypes, O extends ServiceOutputTypes> = Parameters<
  typeof DynamoDBClient.prototype.send<I, O>
>[0];

/** A command class of the DynamoDB client. */
export type CommandClass<I extends ServiceInputTypes, O extends ServiceOutputTypes> = new (
  input: I,
) => Command<I, O>;

/** An item, or a key, as DynamoDB sends it. */
export type Item = Record<string, AttributeValue>;

/**
 * Sends `new C(input)` on `client`, aborted on `signal`.
 *
 * @example
 * ```ts ignore
 * const out = await send(client, GetItemCommand, { TableName: "t", Key: key }, signal);
 * ```
 */
export function send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(
  client: DynamoDBClient,
  C: CommandClass<I, O>,
  input: I,
  signal?: AbortSignal,
): Promise<O> {
  return client.send(new C(input), { abortSignal: signal });
}

/**
 * The items of every page of a Query, one page at a time (following `LastEvaluatedKey`).
 *
 * @example
 * ```ts ignore
 * for await (const items of queryPages(client, { TableName: "t", KeyConditionExpression })) {}
 * ```
 */
export async function* queryPages(
  client: DynamoDBClient,
  input: QueryCommandInput,
  signal?: AbortSignal,
): AsyncGenerator<Item[]> {
  let start: Item | undefined;
  do {
    const page = await send(client, QueryCommand, { ...input, ExclusiveStartKey: start }, signal);
    yield page.Items ?? [];
    start = page.LastEvaluatedKey;
  } while (start);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<unknown> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Calls `call` with `pending`, then with what it returns as left unprocessed, until nothing is;
 * before each resend it waits `min(capMs, stepMs × 2^attempt)`. With `giveUp`, the 13th resend
 * is not made: `giveUp(left)` is thrown instead.
 *
 * @example
 * ```ts ignore
 * await untilProcessed(keys, async (left) => (await batchGet(left)).unprocessed, 10, 200);
 * ```
 */
export async function untilProcessed<T>(
  pending: T[],
  call: (left: T[]) => Promise<T[] | undefined>,
  stepMs: number,
  capMs: number,
  giveUp?: (left: T[]) => Error,
): Promise<void> {
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt > 0) await sleep(Math.min(capMs, stepMs * 2 ** attempt));
    if (attempt > 12 && giveUp) throw giveUp(pending);
    pending = (await call(pending)) ?? [];
  }
}
