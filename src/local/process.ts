/**
 * Starting and stopping DynamoDB Local (a Java process) on a local port.
 *
 * This module starts it, in the foreground or detached; its parts are `start_options.ts` (what a
 * start takes and gives), `launch.ts` (plan, spawn, wait until it answers), `java.ts` (the Java
 * runtime), `ports.ts` (free ports), `health.ts` (does an endpoint answer) and `stop.ts`.
 *
 * @module
 */

import { processStartTime } from "./pid.ts";
import { launch, plan, untrack } from "./launch.ts";
import type {
  DetachedDynamo,
  DetachedOptions,
  LocalDynamo,
  StartOptions,
} from "./start_options.ts";
import { killChild, type StopOptions } from "./stop.ts";

export { isDynamoDBReady } from "./health.ts";
export { freePort, isPortFree } from "./ports.ts";
export type {
  DetachedDynamo,
  DetachedOptions,
  DetachedStarted,
  LocalDynamo,
  StartOptions,
} from "./start_options.ts";
export { stopByPid, type StopOptions } from "./stop.ts";

/**
 * Starts DynamoDB Local (downloading it first if needed, see {@link ensureDynamoDBLocal}) and waits
 * until it answers. The process belongs to the caller: stop it with `stop()` (or `await using`).
 * It also dies with the host process, however that ends: on a normal exit it is sent SIGTERM; on
 * Linux and macOS a small `/bin/sh` watchdog, polling the host's pid once a second, sees the host
 * go (SIGTERM, SIGINT, SIGHUP, SIGKILL, a crash) and sends SIGTERM, then SIGKILL after 5 s.
 * Measured: gone 2–3.5 s after the host's death. The host's own signal handling is untouched.
 *
 * @throws {LocalDynamoError} `JAVA_NOT_FOUND`, `PORT_IN_USE`, `EARLY_EXIT`, `STARTUP_TIMEOUT`,
 *   `INVALID_OPTION`, or a download error.
 *
 * @example
 * ```ts
 * import { startDynamoDBLocal } from "./mod.ts";
 * import { DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";
 *
 * await using ddb = await startDynamoDBLocal(); // in memory, on a free port
 * const client = new DynamoDBClient({
 *   endpoint: ddb.endpoint,
 *   region: "us-east-1",
 *   credentials: { accessKeyId: "local", secretAccessKey: "local" },
 * });
 * console.log(await client.send(new ListTablesCommand({})));
 * client.destroy();
 * ```
 */
export async function startDynamoDBLocal(opts: StartOptions = {}): Promise<LocalDynamo> {
  const { base, dataDir } = await plan({ ...opts, logFile: undefined }, false);
  const l = await launch(base);
  const pid = l.child.pid!;
  let stopping: Promise<void> | undefined;
  const stop = (o?: StopOptions) =>
    stopping ??= killChild(l.child, l.exited, o).finally(() => l.watchdog?.cancel());
  return {
    endpoint: l.endpoint,
    port: l.port,
    pid,
    dataDir,
    output: l.output,
    stop,
    [Symbol.asyncDispose]: () => stop(),
  };
}

/**
 * Starts DynamoDB Local in the background, detached from this process (which may then exit),
 * waits until it answers, and returns its pid (and start time) for {@link stopByPid}. Keeping
 * track of them (state files) is the caller's job. Until it answers it is watched like
 * {@link startDynamoDBLocal}'s, so a caller killed during the start leaves no orphan. With a
 * `logFile`, the start is judged on the output written since this call only.
 *
 * @throws {LocalDynamoError} like {@link startDynamoDBLocal}.
 *
 * @example
 * ```ts
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { startDetached, stopByPid } from "./mod.ts";
 *
 * const dir = await mkdtemp(join(tmpdir(), "ddb-"));
 * // A free port (or `port: 8000`), tables kept in `data/`, output appended to `ddb.log`.
 * const { pid, endpoint } = await startDetached({
 *   dataDir: join(dir, "data"),
 *   logFile: join(dir, "ddb.log"),
 * });
 * console.log(`DynamoDB Local on ${endpoint} (pid ${pid})`);
 * // … later, maybe from another process:
 * await stopByPid(pid);
 * await rm(dir, { recursive: true });
 * ```
 */
export async function startDetached(opts: DetachedOptions = {}): Promise<DetachedDynamo> {
  const { base, dataDir } = await plan(opts, true);
  const l = await launch(base);
  if (opts.beforeHandOver) {
    const started = {
      endpoint: l.endpoint,
      port: l.port,
      pid: l.child.pid!,
      startTime: processStartTime(l.child.pid!),
    };
    try {
      await opts.beforeHandOver(started);
    } catch (err) {
      await killChild(l.child, l.exited).finally(() => l.watchdog?.cancel());
      throw err;
    }
  }
  // From here on it outlives this process, by design (the watchdog stopped it until now: killed
  // before `beforeHandOver` recorded it, this process leaves no orphan).
  l.watchdog?.cancel();
  l.child.unref();
  l.child.stdout?.destroy();
  l.child.stderr?.destroy();
  untrack(l.child);
  const pid = l.child.pid!;
  return {
    endpoint: l.endpoint,
    port: l.port,
    pid,
    dataDir,
    logFile: base.logFile,
    startTime: processStartTime(pid),
  };
}
