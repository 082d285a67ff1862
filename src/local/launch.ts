/**
 * Launching DynamoDB Local: the plan (Java, its arguments, the port, the deadline) from the start
 * options, then spawning Java and watching its output until DynamoDB Local answers, retrying
 * another port when an automatic one was taken meanwhile. A child is killed if this process exits
 * first.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, fstatSync, openSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import process from "node:process";
import { sleep, within } from "./_util.ts";
import { LocalDynamoError } from "./errors.ts";
import { isDynamoDBReady } from "./health.ts";
import { ensureDynamoDBLocal } from "./install.ts";
import { DEFAULT_JAVA_OPTIONS, javaSpawnError, resolveJava } from "./java.ts";
import { endpointOf, freePort, isPortFree } from "./ports.ts";
import type { DetachedOptions } from "./start_options.ts";
import { killChild } from "./stop.ts";
import { startWatchdog, type Watchdog, watchdogMark } from "./watchdog.ts";

const TAIL_CHARS = 16_384;
const BIND_FAILURE = /Failed to bind|Address already in use|BindException/;
const MAIN_FAILURE = /Exception in thread "main"/;

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

/** Forgets a child handed over to run on its own: it no longer dies with this process. */
export function untrack(child: ChildProcess): void {
  live.delete(child);
}

function tailOf(text: string, lines = 30): string {
  const t = text.trimEnd().split("\n").slice(-lines).join("\n");
  return t === "" ? "(no output)" : t;
}

/** A launched DynamoDB Local that answers. */
export interface Launched {
  child: ChildProcess;
  watchdog: Watchdog | undefined;
  port: number;
  endpoint: string;
  exited: Promise<void>;
  output(): string;
}

/** How to launch DynamoDB Local, from the start options. */
export interface LaunchPlan {
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

/** Checks the options, finds Java, installs DynamoDB Local if needed and plans the launch. */
export async function plan(
  opts: DetachedOptions,
  detached: boolean,
): Promise<{ base: LaunchPlan; dataDir: string | undefined }> {
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

/** Spawns Java and waits until DynamoDB Local answers, retrying another port on a bind race. */
export async function launch(p: LaunchPlan): Promise<Launched> {
  for (let attempt = 1;; attempt++) {
    const port = await checkPort(p);
    const endpoint = endpointOf(p.host, port);
    // Until it is handed over (detached) or stopped, it dies with this process, however it ends.
    // Where the watchdog can find it by a mark on its command line, the watchdog starts first:
    // killed at any moment, this process leaves no Java behind.
    const mark = watchdogMark();
    const early = mark !== undefined ? startWatchdog({ mark }) : undefined;
    let s: ReturnType<typeof spawnJava>;
    try {
      s = spawnJava(mark !== undefined ? { ...p, args: [mark, ...p.args] } : p, port);
    } catch (err) {
      early?.cancel();
      throw err;
    }
    const output = () => s.output();
    const logged = async () =>
      p.logFile !== undefined ? await readLogTail(p.logFile, s.logStart) : s.output();
    track(s.child);
    const watchdog = early ?? startWatchdog({ pid: s.child.pid });
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
