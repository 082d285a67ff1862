/**
 * Starting and stopping DynamoDB Local (a Java process) on a local port.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, fstatSync, openSync } from "node:fs";
import { access, mkdir, open } from "node:fs/promises";
import { createServer } from "node:net";
import { isAbsolute, join, resolve } from "node:path";
import process from "node:process";
import { LocalDynamoError } from "./errors.ts";
import { ensureDynamoDBLocal, type EnsureOptions } from "./install.ts";
import {
  identifyProcess,
  isDynamoDBLocalProcess,
  isProcessAlive,
  processStartTime,
  validatePid,
} from "./pid.ts";
import { startWatchdog, type Watchdog } from "./watchdog.ts";

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
 * Options of {@link LocalDynamo.stop} and {@link stopByPid}.
 *
 * @example
 * ```ts
 * import { startDynamoDBLocal, type StopOptions } from "./mod.ts";
 * const ddb = await startDynamoDBLocal();
 * const options: StopOptions = { graceMs: 2_000 }; // SIGKILL after 2 s
 * await ddb.stop(options);
 * ```
 */
export interface StopOptions {
  /** How long to wait after SIGTERM before sending SIGKILL. @default 5000 */
  graceMs?: number;
  /** How long to wait in all for the process to be gone. @default graceMs + 5000 */
  timeoutMs?: number;
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
}

const TAIL_CHARS = 16_384;
const DEFAULT_JAVA_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"];
const BIND_FAILURE = /Failed to bind|Address already in use|BindException/;
const MAIN_FAILURE = /Exception in thread "main"/;

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

const JAVA_HINT = "DynamoDB Local needs a Java runtime (17 or newer): install one " +
  "(e.g. `apt-get install openjdk-17-jre-headless` or `brew install openjdk`), " +
  "set JAVA_HOME, or pass javaPath.";

async function resolveJava(javaPath: string | undefined): Promise<string> {
  if (javaPath !== undefined) {
    if ((javaPath.includes("/") || javaPath.includes("\\")) && !(await exists(javaPath))) {
      throw new LocalDynamoError("JAVA_NOT_FOUND", `Java not found at ${javaPath}. ${JAVA_HINT}`);
    }
    return javaPath;
  }
  const home = env("JAVA_HOME");
  if (home) {
    const java = join(home, "bin", process.platform === "win32" ? "java.exe" : "java");
    if (!(await exists(java))) {
      throw new LocalDynamoError(
        "JAVA_NOT_FOUND",
        `JAVA_HOME is ${home} but ${java} does not exist: fix or unset JAVA_HOME. ${JAVA_HINT}`,
      );
    }
    return java;
  }
  return "java";
}

function listenOnce(port: number, host: string | undefined): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port, host, exclusive: true }, () => {
      const addr = server.address();
      const bound = typeof addr === "object" && addr ? addr.port : port;
      server.close(() => resolvePort(bound));
    });
  });
}

/**
 * Whether nothing listens on `port`: tries to listen on it at `host` and on all interfaces
 * (where DynamoDB Local binds).
 *
 * @example
 * ```ts
 * import { isPortFree } from "./mod.ts";
 * if (!(await isPortFree(8000))) console.log("8000 is taken");
 * ```
 */
export async function isPortFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  try {
    await listenOnce(port, host);
    await listenOnce(port, undefined);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EADDRINUSE" || code === "EACCES") return false;
    throw e;
  }
}

/**
 * A port that is free now, picked by the OS (by listening on port 0).
 *
 * @example
 * ```ts
 * import { freePort } from "./mod.ts";
 * const port = await freePort();
 * ```
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return listenOnce(0, host);
}

function endpointOf(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * Whether a DynamoDB(-Local) endpoint answers a `ListTables` call. Never throws.
 *
 * @example
 * ```ts
 * import { isDynamoDBReady } from "./mod.ts";
 * console.log(await isDynamoDBReady("http://127.0.0.1:8000"));
 * ```
 */
export async function isDynamoDBReady(endpoint: string, timeoutMs = 2_000): Promise<boolean> {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  try {
    const res = await fetch(endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.ListTables",
        // DynamoDB Local checks that the access key id is alphanumeric, not the signature.
        authorization:
          "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, " +
          "SignedHeaders=content-type;host;x-amz-target, Signature=0",
      },
      body: "{}",
      signal: ctrl.signal,
    });
    const text = await res.text();
    return res.ok && text.includes("TableNames");
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

// Children started by this module, killed if the host process exits without stopping them.
const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  live.add(child);
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => {
      for (const c of live) {
        try {
          c.kill("SIGTERM");
        } catch {
          // already gone
        }
      }
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether `p` settles within `ms` (the timer is cleared either way, so nothing lingers). */
function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((done) => {
    const timer = setTimeout(() => done(false), ms);
    p.then(() => {
      clearTimeout(timer);
      done(true);
    });
  });
}

function tailOf(text: string, lines = 30): string {
  const t = text.trimEnd().split("\n").slice(-lines).join("\n");
  return t === "" ? "(no output)" : t;
}

interface Launched {
  child: ChildProcess;
  watchdog: Watchdog | undefined;
  port: number;
  endpoint: string;
  exited: Promise<void>;
  output(): string;
}

interface LaunchPlan {
  java: string;
  args: string[];
  cwd: string;
  host: string;
  autoPort: boolean;
  port: number;
  deadline: number;
  timeoutMs: number;
  logFile: string | undefined;
  detached: boolean;
}

function validatePort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new LocalDynamoError("INVALID_OPTION", `Invalid port ${port}: use an integer 1-65535`);
  }
}

async function plan(opts: DetachedOptions, detached: boolean) {
  const timeoutMs = opts.startupTimeoutMs ?? 60_000;
  if (!(timeoutMs > 0)) {
    throw new LocalDynamoError("INVALID_OPTION", `Invalid startupTimeoutMs ${timeoutMs}`);
  }
  const deadline = Date.now() + timeoutMs;
  const host = opts.host ?? "127.0.0.1";
  if (opts.port !== undefined) validatePort(opts.port);
  if (opts.dataDir !== undefined && (typeof opts.dataDir !== "string" || !opts.dataDir.trim())) {
    throw new LocalDynamoError(
      "INVALID_OPTION",
      `Invalid dataDir ${JSON.stringify(opts.dataDir)}: give a folder path, or leave dataDir ` +
        `out to keep the tables in memory`,
    );
  }
  const java = await resolveJava(opts.javaPath);
  const install = await ensureDynamoDBLocal(opts);
  let dataDir: string | undefined;
  if (opts.dataDir !== undefined) {
    dataDir = isAbsolute(opts.dataDir) ? opts.dataDir : resolve(opts.dataDir);
    await mkdir(dataDir, { recursive: true });
  }
  const args = [
    ...(opts.javaOptions ?? DEFAULT_JAVA_OPTIONS),
    `-Djava.library.path=${join(install.dir, "DynamoDBLocal_lib")}`,
    "-jar",
    install.jar,
    "-disableTelemetry",
    ...(dataDir !== undefined ? ["-dbPath", dataDir] : ["-inMemory"]),
    ...(opts.sharedDb ?? true ? ["-sharedDb"] : []),
  ];
  const base: LaunchPlan = {
    java,
    args,
    cwd: install.dir,
    host,
    autoPort: opts.port === undefined,
    port: opts.port ?? 0,
    deadline,
    timeoutMs,
    logFile: opts.logFile !== undefined ? resolve(opts.logFile) : undefined,
    detached,
  };
  return { base, dataDir };
}

async function checkPort(p: LaunchPlan): Promise<number> {
  if (p.autoPort) return await freePort(p.host);
  if (!(await isPortFree(p.port, p.host))) {
    throw new LocalDynamoError(
      "PORT_IN_USE",
      `Port ${p.port} is already in use (on ${p.host} or another interface), so DynamoDB Local ` +
        `cannot listen on it. Stop whatever uses it, pass another port, or omit port to pick a free one.`,
    );
  }
  return p.port;
}

/** The last output written to `file` since byte `from` (where this run's output starts). */
async function readLogTail(file: string, from: number): Promise<string> {
  try {
    const fh = await open(file, "r");
    try {
      const { size } = await fh.stat();
      const len = Math.max(0, Math.min(size - from, TAIL_CHARS));
      const buf = new Uint8Array(len);
      await fh.read(buf, 0, len, size - len);
      return new TextDecoder().decode(buf);
    } finally {
      await fh.close();
    }
  } catch {
    return "";
  }
}

function spawnJava(p: LaunchPlan, port: number): {
  child: ChildProcess;
  exited: Promise<void>;
  output(): string;
  failure(): Error | undefined;
  closeLog(): void;
  logStart: number;
} {
  let tail = "";
  let failure: Error | undefined;
  let logFd: number | undefined;
  let logStart = 0;
  const args = [...p.args, "-port", String(port)];
  let stdio: ["ignore", "pipe" | "ignore" | number, "pipe" | "ignore" | number];
  if (!p.detached) stdio = ["ignore", "pipe", "pipe"];
  else if (p.logFile !== undefined) {
    logFd = openSync(p.logFile, "a");
    logStart = fstatSync(logFd).size; // this run is judged on its own output only
    stdio = ["ignore", logFd, logFd];
  } else stdio = ["ignore", "ignore", "ignore"];
  const closeLog = () => {
    if (logFd !== undefined) {
      try {
        closeSync(logFd);
      } catch {
        // already closed
      }
      logFd = undefined;
    }
  };

  let child: ChildProcess;
  try {
    child = spawn(p.java, args, { cwd: p.cwd, stdio, detached: p.detached, windowsHide: true });
  } catch (e) {
    closeLog();
    throw javaSpawnError(p.java, e);
  }
  const exited = new Promise<void>((done) => {
    child.once("error", (e) => {
      failure = javaSpawnError(p.java, e);
      done();
    });
    child.once("exit", () => done());
  });
  const collect = (chunk: Uint8Array | string) => {
    tail = (tail + (typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk)))
      .slice(-TAIL_CHARS);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return { child, exited, output: () => tail, failure: () => failure, closeLog, logStart };
}

function javaSpawnError(java: string, e: unknown): LocalDynamoError {
  const code = (e as { code?: string }).code;
  if (code === "ENOENT") {
    return new LocalDynamoError(
      "JAVA_NOT_FOUND",
      java === "java"
        ? `Java was not found on the PATH. ${JAVA_HINT}`
        : `Java not found at ${java}. ${JAVA_HINT}`,
      { cause: e },
    );
  }
  if (code === "EACCES") {
    return new LocalDynamoError(
      "JAVA_NOT_FOUND",
      `Java at ${java} is not executable. ${JAVA_HINT}`,
      { cause: e },
    );
  }
  return new LocalDynamoError(
    "EARLY_EXIT",
    `Could not start ${java}: ${e instanceof Error ? e.message : String(e)}`,
    { cause: e },
  );
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function killChild(child: ChildProcess, exited: Promise<void>, opts: StopOptions = {}) {
  const grace = opts.graceMs ?? 5_000;
  const total = opts.timeoutMs ?? grace + 5_000;
  if (child.pid === undefined || hasExited(child)) return;
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  if (await within(exited, grace)) return;
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  if (await within(exited, Math.max(total - grace, 0))) return;
  throw new LocalDynamoError(
    "STOP_FAILED",
    `DynamoDB Local (pid ${child.pid}) did not exit within ${total} ms of being stopped`,
  );
}

/** Spawns Java and waits until DynamoDB Local answers, retrying another port on a bind race. */
async function launch(p: LaunchPlan): Promise<Launched> {
  for (let attempt = 1;; attempt++) {
    const port = await checkPort(p);
    const endpoint = endpointOf(p.host, port);
    const s = spawnJava(p, port);
    const output = () => s.output();
    const logged = async () =>
      p.logFile !== undefined ? await readLogTail(p.logFile, s.logStart) : s.output();
    track(s.child);
    // Until it is handed over (detached) or stopped, it dies with this process, however it ends.
    const watchdog = startWatchdog(s.child.pid);
    s.exited.then(() => {
      live.delete(s.child);
      watchdog?.cancel();
    });
    let gone = false;
    s.exited.then(() => gone = true);
    try {
      while (true) {
        const failure = s.failure();
        if (failure) throw failure;
        const text = await logged();
        if (BIND_FAILURE.test(text)) {
          if (p.autoPort && attempt < 3) {
            await killChild(s.child, s.exited, { graceMs: 1_000 });
            break; // retry with another free port
          }
          throw new LocalDynamoError(
            "PORT_IN_USE",
            `DynamoDB Local could not listen on port ${port}: it is already in use. ` +
              `Pass another port, or omit port to pick a free one.\n--- output ---\n${
                tailOf(text)
              }`,
          );
        }
        if (MAIN_FAILURE.test(text)) {
          throw new LocalDynamoError(
            "EARLY_EXIT",
            `DynamoDB Local failed to start:\n--- output ---\n${tailOf(text)}`,
          );
        }
        if (gone) {
          await sleep(50); // let the last output arrive
          throw s.failure() ?? new LocalDynamoError(
            "EARLY_EXIT",
            `DynamoDB Local exited early (code ${s.child.exitCode ?? "none"}, signal ` +
              `${
                s.child.signalCode ?? "none"
              }) before answering on ${endpoint}.\n--- output ---\n` +
              tailOf(await logged()) +
              (p.detached && p.logFile === undefined ? "\n(pass logFile to keep its output)" : ""),
          );
        }
        if (await isDynamoDBReady(endpoint, 1_000)) {
          s.closeLog();
          return { child: s.child, port, endpoint, exited: s.exited, output, watchdog };
        }
        if (Date.now() > p.deadline) {
          throw new LocalDynamoError(
            "STARTUP_TIMEOUT",
            `DynamoDB Local did not answer on ${endpoint} within ${p.timeoutMs} ms ` +
              `(raise startupTimeoutMs if this machine is slow).\n--- output ---\n` +
              tailOf(await logged()),
          );
        }
        await within(s.exited, 100);
      }
    } catch (e) {
      s.closeLog();
      await killChild(s.child, s.exited, { graceMs: 1_000 }).catch(() => {});
      throw e;
    }
    s.closeLog();
  }
}

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
  l.watchdog?.cancel(); // from here on it outlives this process, by design
  l.child.unref();
  l.child.stdout?.destroy();
  l.child.stderr?.destroy();
  live.delete(l.child);
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

/**
 * Stops a DynamoDB Local by process id, e.g. one started by {@link startDetached} from another
 * process: SIGTERM, then SIGKILL after `graceMs`, then waits until it is gone. Resolves `false` if
 * no such process was running, or (given `startTime` or `port`, see {@link identifyProcess}) the
 * pid now names another process, which is then left alone. Refuses (unless `force`) when the pid now belongs to a process that
 * is not DynamoDB Local, as can happen when a stale pid was reused.
 *
 * @throws {LocalDynamoError} `STOP_FAILED` when it is not DynamoDB Local, cannot be signalled, or
 *   outlives `timeoutMs`; `INVALID_OPTION` for a pid that is not a positive integer.
 *
 * @example
 * ```ts
 * import { stopByPid } from "./mod.ts";
 * const pid = 12345; // e.g. read from the CLI's state file
 * if (!(await stopByPid(pid))) console.log("was not running");
 * ```
 */
export async function stopByPid(
  pid: number,
  opts: StopOptions & { force?: boolean; startTime?: string; port?: number } = {},
): Promise<boolean> {
  validatePid(pid);
  if (!isProcessAlive(pid)) return false;
  if (opts.startTime !== undefined || opts.port !== undefined) {
    // The recorded process is gone when its pid now names another one: never signal that.
    if (identifyProcess({ pid, startTime: opts.startTime, port: opts.port }) !== "running") {
      return false;
    }
  }
  if (!opts.force && isDynamoDBLocalProcess(pid) === false) {
    throw new LocalDynamoError(
      "STOP_FAILED",
      `Process ${pid} is not DynamoDB Local (its pid may have been reused); not stopping it`,
    );
  }
  const grace = opts.graceMs ?? 5_000;
  const total = opts.timeoutMs ?? grace + 5_000;
  const start = Date.now();
  const signal = (sig: "SIGTERM" | "SIGKILL") => {
    try {
      process.kill(pid, sig);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === "ESRCH") return;
      throw new LocalDynamoError(
        "STOP_FAILED",
        `Cannot stop process ${pid}: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
  };
  signal("SIGTERM");
  let killed = false;
  while (isProcessAlive(pid)) {
    const waited = Date.now() - start;
    if (!killed && waited >= grace) {
      signal("SIGKILL");
      killed = true;
    }
    if (waited >= total) {
      throw new LocalDynamoError(
        "STOP_FAILED",
        `Process ${pid} did not exit within ${total} ms of being stopped`,
      );
    }
    await sleep(50);
  }
  return true;
}
