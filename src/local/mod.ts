/**
 * Run AWS's DynamoDB Local for development and tests, with nothing to install but Java.
 *
 * The emulator (`DynamoDBLocal.jar` 1.25.1, shipped inside the npm package
 * `amplify-dynamodb-simulator@2.9.30`) is downloaded once from the npm registry, checked against
 * the integrity pinned in the code, and kept in a per-user cache whose files are hashed again
 * before every start. It then runs as a Java process on a free (or chosen) port, in memory or
 * with a data folder, and dies with the process that started it.
 *
 * Uses only `node:*` and web APIs, so it runs on Deno, Node and Bun.
 *
 * @example
 * ```ts
 * import { startDynamoDBLocal } from "@zae/limiter/local";
 *
 * // In memory; pass `dataDir: ".dynamodb"` to keep the tables in a folder.
 * await using ddb = await startDynamoDBLocal();
 * console.log(`DynamoDB Local listens on ${ddb.endpoint}`);
 * ```
 *
 * @module
 */

export { ZaeLimiterError } from "../errors.ts";
export { LocalDynamoError, type LocalDynamoErrorCode } from "./errors.ts";
export {
  defaultCacheDir,
  type DownloadProgress,
  DYNAMODB_LOCAL_FILES_SHA256,
  DYNAMODB_LOCAL_INTEGRITY,
  DYNAMODB_LOCAL_PACKAGE,
  DYNAMODB_LOCAL_PACKAGE_VERSION,
  DYNAMODB_LOCAL_VERSION,
  dynamoDBLocalDir,
  type DynamoDBLocalInstall,
  ensureDynamoDBLocal,
  type EnsureOptions,
} from "./install.ts";
export {
  type DetachedDynamo,
  type DetachedOptions,
  type DetachedStarted,
  freePort,
  isDynamoDBReady,
  isPortFree,
  type LocalDynamo,
  startDetached,
  startDynamoDBLocal,
  type StartOptions,
  stopByPid,
  type StopOptions,
} from "./process.ts";
export {
  identifyProcess,
  isDynamoDBLocalProcess,
  isProcessAlive,
  listeningPorts,
  processStartTime,
} from "./pid.ts";
