/**
 * Shared DynamoDB Local helpers for the test files.
 *
 * `deno test --parallel` runs test files concurrently, so each file starts its own DynamoDB Local
 * on a free port (in memory) and stops it when done. The usual shape:
 *
 * ```ts
 * import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";
 *
 * Deno.test({
 *   name: "my feature on DynamoDB Local",
 *   sanitizeOps: false, // the Java child process and its pipes outlive single steps
 *   sanitizeResources: false,
 *   async fn(t) {
 *     const ddb = await startTestDynamo();
 *     const client = localClient(ddb.endpoint);
 *     try {
 *       const tableName = uniqueTableName("feature");
 *       await t.step("does a thing", async () => {
 *         // … use client and tableName
 *       });
 *     } finally {
 *       client.destroy();
 *       await ddb.stop();
 *     }
 *   },
 * });
 * ```
 *
 * or, shorter, {@link dynamoTest} which does the same wiring.
 *
 * Set `ZAE_TEST_DYNAMODB_ENDPOINT` (e.g. to a `zae-limiter local up` instance) to run against an
 * already running DynamoDB instead of starting Java per file.
 *
 * @module
 */

import { DynamoDBClient, type UpdateItemCommandInput } from "@aws-sdk/client-dynamodb";
import process from "node:process";
import { type LocalDynamo, startDynamoDBLocal, type StartOptions } from "../src/local/mod.ts";

/**
 * Starts a DynamoDB Local for one test file: in memory, on a free port, shared across credentials
 * and regions. Stop it in a `finally`. With `ZAE_TEST_DYNAMODB_ENDPOINT` set, returns a handle to
 * that endpoint instead (its `stop()` does nothing and `pid` is 0).
 *
 * @example
 * ```ts
 * const ddb = await startTestDynamo();
 * try {
 *   // … use ddb.endpoint
 * } finally {
 *   await ddb.stop();
 * }
 * ```
 */
export function startTestDynamo(opts: StartOptions = {}): Promise<LocalDynamo> {
  const external = process.env.ZAE_TEST_DYNAMODB_ENDPOINT;
  if (external) {
    const port = Number(new URL(external).port) || 80;
    const stop = () => Promise.resolve();
    return Promise.resolve({
      endpoint: external.replace(/\/+$/, ""),
      port,
      pid: 0,
      dataDir: undefined,
      output: () => "",
      stop,
      [Symbol.asyncDispose]: stop,
    });
  }
  return startDynamoDBLocal({ startupTimeoutMs: 120_000, ...opts });
}

/**
 * A DynamoDB client for a local endpoint: region `us-east-1`, dummy credentials
 * (`local`/`local`). Call `destroy()` when done.
 *
 * @example
 * ```ts
 * import { ListTablesCommand } from "@aws-sdk/client-dynamodb";
 * const client = localClient("http://127.0.0.1:8000");
 * console.log(await client.send(new ListTablesCommand({})));
 * client.destroy();
 * ```
 */
export function localClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
}

/**
 * Records what `client` sends: the input of every UpdateItem, and the error name of every call
 * that fails (tests that check the expressions a write sends, and its retries).
 */
export function recordUpdates(
  client: DynamoDBClient,
): { sent: UpdateItemCommandInput[]; failed: string[] } {
  const sent: UpdateItemCommandInput[] = [];
  const failed: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === "UpdateItemCommand") {
        sent.push(structuredClone(args.input as UpdateItemCommandInput));
      }
      try {
        return await next(args);
      } catch (err) {
        failed.push((err as Error).name);
        throw err;
      }
    },
    { step: "initialize", name: "testUpdateRecorder" },
  );
  return { sent, failed };
}

let seq = 0;

/**
 * A table name no other test (in this or another process) uses: `<prefix>_<time>_<random>_<n>`,
 * valid for DynamoDB (letters, digits, `_`, `-`, `.`; at most 255 characters).
 *
 * @example
 * ```ts
 * const tableName = uniqueTableName("limiter"); // e.g. "limiter_m3x1k2_4f9a_1"
 * ```
 */
export function uniqueTableName(prefix = "test"): string {
  const safe = prefix.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 200) || "test";
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return `${safe}_${Date.now().toString(36)}_${rand}_${++seq}`;
}

/** What {@link withDynamo} and {@link dynamoTest} hand to the test body. */
export interface DynamoContext {
  /** The running DynamoDB Local. */
  ddb: LocalDynamo;
  /** A client for it (see {@link localClient}). */
  client: DynamoDBClient;
}

/**
 * Starts DynamoDB Local and a client, runs `fn`, then destroys the client and stops DynamoDB
 * Local, whatever happens.
 *
 * @example
 * ```ts
 * import { ListTablesCommand } from "@aws-sdk/client-dynamodb";
 * await withDynamo(async ({ client }) => {
 *   await client.send(new ListTablesCommand({}));
 * });
 * ```
 */
export async function withDynamo<T>(
  fn: (ctx: DynamoContext) => Promise<T>,
  opts: StartOptions = {},
): Promise<T> {
  const ddb = await startTestDynamo(opts);
  const client = localClient(ddb.endpoint);
  try {
    return await fn({ ddb, client });
  } finally {
    client.destroy();
    await ddb.stop();
  }
}

/**
 * Registers a `Deno.test` (sanitizers off, as the Java child process needs) that gets its own
 * DynamoDB Local and client, stopped at the end; use `t.step` inside for the cases.
 *
 * @example
 * ```ts
 * import { ListTablesCommand } from "@aws-sdk/client-dynamodb";
 * dynamoTest("tables", async (t, { client }) => {
 *   await t.step("list", async () => {
 *     await client.send(new ListTablesCommand({}));
 *   });
 * });
 * ```
 */
export function dynamoTest(
  name: string,
  fn: (t: Deno.TestContext, ctx: DynamoContext) => Promise<void>,
  opts: StartOptions = {},
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: (t) => withDynamo((ctx) => fn(t, ctx), opts),
  });
}
