/**
 * What starting DynamoDB Local takes and gives: the start options, and the running process in the
 * foreground ({@link LocalDynamo}) or in the background ({@link DetachedDynamo}).
 *
 * @module
 */

import type { EnsureOptions } from "./install.ts";
import type { StopOptions } from "./stop.ts";

/**
 * Options of {@link startDynamoDBLocal} and {@link startDetached}.
 *
 * @example
 * ```ts ignore
 * import { startDynamoDBLocal, type StartOptions } from "./mod.ts";
 * // Tables kept in ./.dynamodb across runs, on the usual port, with more heap.
 * const options: StartOptions = { port: 8000, dataDir: ".dynamodb", javaOptions: ["-Xmx1g"] };
 * await using ddb = await startDynamoDBLocal(options);
 * ```
 */
export interface StartOptions extends EnsureOptions {
  /** The port to listen on. @default a free port picked by the OS */
  port?: number;
  /**
   * The host name the endpoint URL uses and the port check binds. DynamoDB Local itself always
   * listens on all interfaces. @default `"127.0.0.1"`
   */
  host?: string;
  /**
   * A folder to keep the tables in (created when missing; relative to the current directory).
   * @default none: tables live in memory and vanish when the process stops
   */
  dataDir?: string;
  /**
   * One database for every access key and region (DynamoDB Local's `-sharedDb`), so any client
   * sees the same tables. @default true
   */
  sharedDb?: boolean;
  /** The `java` executable. @default `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` */
  javaPath?: string;
  /**
   * JVM options placed before `-jar`, e.g. `["-Xmx512m"]`; they replace the default ones. The
   * defaults (C1 compiler only, serial GC) start faster and use less CPU on small machines than
   * the JVM's own; pass `[]` to get the JVM's.
   * @default `["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]`
   */
  javaOptions?: string[];
  /** How long to wait for DynamoDB Local to answer. @default 60000 */
  startupTimeoutMs?: number;
}

/**
 * A running DynamoDB Local started by {@link startDynamoDBLocal}.
 *
 * @example
 * ```ts
 * import { type LocalDynamo, startDynamoDBLocal } from "./mod.ts";
 * const ddb: LocalDynamo = await startDynamoDBLocal();
 * try {
 *   console.assert(ddb.endpoint.endsWith(`:${ddb.port}`) && ddb.dataDir === undefined);
 * } finally {
 *   await ddb.stop();
 * }
 * ```
 */
export interface LocalDynamo {
  /** The endpoint to give an SDK client, e.g. `http://127.0.0.1:54321`. */
  endpoint: string;
  /** The port it listens on. */
  port: number;
  /** The Java process id. */
  pid: number;
  /** The data folder, or `undefined` when in memory. */
  dataDir: string | undefined;
  /** The last lines DynamoDB Local printed (stdout and stderr), for diagnostics. */
  output(): string;
  /** Stops the process (SIGTERM, then SIGKILL after a grace period) and waits until it is gone. */
  stop(opts?: StopOptions): Promise<void>;
  /** Same as {@link LocalDynamo.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A DynamoDB Local started in the background by {@link startDetached}: it outlives this process,
 * so keep `pid` (e.g. in a state file) to stop it later.
 *
 * @example
 * ```ts ignore
 * import { writeFile } from "node:fs/promises";
 * import { type DetachedDynamo, startDetached } from "./mod.ts";
 * const ddb: DetachedDynamo = await startDetached({ port: 8000, logFile: "ddb.log" });
 * await writeFile(".ddb.json", JSON.stringify(ddb)); // read back by `stopByPid(state.pid)`
 * ```
 */
export interface DetachedDynamo {
  /** The endpoint to give an SDK client. */
  endpoint: string;
  /** The port it listens on. */
  port: number;
  /** The Java process id, for {@link stopByPid}. */
  pid: number;
  /** The data folder, or `undefined` when in memory. */
  dataDir: string | undefined;
  /** Where its output goes, or `undefined` when discarded. */
  logFile: string | undefined;
  /**
   * The process's start time (`/proc/<pid>/stat` field 22, clock ticks since boot), to tell it
   * from a later process that reuses the pid; `undefined` where there is no `/proc`.
   */
  startTime: string | undefined;
}

/**
 * Options of {@link startDetached}.
 *
 * @example
 * ```ts ignore
 * import { type DetachedOptions, startDetached } from "./mod.ts";
 * const options: DetachedOptions = { port: 8000, dataDir: ".dynamodb", logFile: "ddb.log" };
 * const { pid } = await startDetached(options);
 * ```
 */
export interface DetachedOptions extends StartOptions {
  /** A file to append DynamoDB Local's output to. @default none: output is discarded */
  logFile?: string;
  /**
   * Called once DynamoDB Local answers, while it still dies with this process: record where it
   * runs here (a state file), so that no moment leaves it both detached and unrecorded. If it
   * throws, DynamoDB Local is stopped and the error rethrown. @default none
   */
  beforeHandOver?: (started: DetachedStarted) => void | Promise<void>;
}

/** Where a detached DynamoDB Local runs (see {@link DetachedOptions.beforeHandOver}). */
export interface DetachedStarted {
  /** Endpoint URL. */
  endpoint: string;
  /** Port. */
  port: number;
  /** Java process id. */
  pid: number;
  /** The process's start time (`/proc/<pid>/stat` field 22), when known. */
  startTime?: string;
}
