/**
 * `zae-limiter local up|down|status`: DynamoDB Local in the background, found again through a
 * small state file (`$ZAE_LIMITER_STATE_DIR/local.json`, default `~/.cache/zae-limiter/`).
 *
 * Engines: `docker` runs the official `amazon/dynamodb-local` image (when a Docker engine
 * answers `docker info`); `java` runs the jar the library's `local` module installs from npm.
 * `auto` picks docker when an engine answers, else java.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Command, Option } from "commander";
import {
  defaultCacheDir,
  identifyProcess,
  isDynamoDBReady,
  isPortFree,
  startDetached,
  stopByPid,
} from "../src/local/mod.ts";
import { takeLock } from "../src/local/lock.ts";
import type { CommandContext } from "./context.ts";
import { UsageError } from "./limits.ts";

/** What `local up` remembers. */
export interface LocalState {
  /** `java` or `docker`. */
  engine: "java" | "docker";
  /** Endpoint URL. */
  endpoint: string;
  /** Port. */
  port: number;
  /** Java process id (java engine). */
  pid?: number;
  /** The Java process's start time (`/proc/<pid>/stat` field 22), to tell it from a reused pid. */
  startTime?: string;
  /** Container id (docker engine). */
  containerId?: string;
  /** Data folder, when not in memory. */
  dataDir?: string;
  /** Log file (java engine). */
  logFile?: string;
  /** ISO time it was started. */
  startedAt: string;
}

/** The folder of the state file. */
export function stateDir(env: Record<string, string | undefined>): string {
  return env.ZAE_LIMITER_STATE_DIR ? resolve(env.ZAE_LIMITER_STATE_DIR) : defaultCacheDir();
}

function readState(dir: string): LocalState | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, "local.json"), "utf8")) as LocalState;
  } catch {
    return undefined;
  }
}

/** Whether a Docker engine answers (`docker info` exits 0). */
export function dockerAnswers(): boolean {
  try {
    const r = spawnSync("docker", ["info"], { stdio: "ignore", timeout: 15_000 });
    return r.status === 0;
  } catch {
    return false;
  }
}

/**
 * Ends the command with `exitCode` after its output was printed, with no error line:
 * `cli/program.ts` returns `exitCode` for it. `local status` uses 3 for "not running".
 */
export class ExitStatus extends Error {
  /** The process exit code. */
  readonly exitCode: number;
  /** Creates it; `message` is for logs only, it is not printed. */
  constructor(exitCode: number, message: string) {
    super(message);
    this.name = "ExitStatus";
    this.exitCode = exitCode;
  }
}

/** The exit code of `local status` when DynamoDB Local is not running. */
export const EXIT_NOT_RUNNING = 3;

type Verdict = "running" | "gone" | "other";

/**
 * Whether the recorded instance still runs: for java, the same process (pid and start time) that
 * listens on the recorded port; for docker, a running container.
 */
function verdictOf(state: LocalState): Verdict {
  if (state.engine === "java") {
    if (!Number.isInteger(state.pid) || (state.pid as number) <= 0) return "gone";
    return identifyProcess({ pid: state.pid!, startTime: state.startTime, port: state.port });
  }
  const r = spawnSync("docker", ["inspect", "-f", "{{.State.Running}}", state.containerId ?? ""], {
    encoding: "utf8",
    timeout: 15_000,
  });
  return r.status === 0 && r.stdout.trim() === "true" ? "running" : "gone";
}

function staleNote(state: LocalState, verdict: Verdict): string {
  return verdict === "other"
    ? `pid ${state.pid} now belongs to another process, which was left alone`
    : state.engine === "java"
    ? `pid ${state.pid} is gone`
    : `container ${state.containerId?.slice(0, 12)} is not running`;
}

/**
 * Holds the lock that makes `local up` and `local down` one at a time, so that concurrent runs
 * start a single instance. A lock left by a dead process is broken.
 */
async function withLocalLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "local.lock");
  const lock = await takeLock(file, { waitMs: 180_000 });
  if (lock.kind !== "held") {
    throw new Error(
      `another \`local up\` or \`local down\` (${lock.kind === "timeout" ? lock.holder : "?"}) ` +
        `holds ${file} for more than 3 minutes: wait for it, or delete that file if no such ` +
        `process runs`,
    );
  }
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

function envLines(endpoint: string): string[] {
  return [
    `export AWS_ENDPOINT_URL_DYNAMODB=${endpoint}`,
    "export AWS_REGION=us-east-1",
    "export AWS_ACCESS_KEY_ID=local",
    "export AWS_SECRET_ACCESS_KEY=local",
  ];
}

/** Adds `local up|down|status` to the program. */
export function addLocalCommands(
  program: Command,
  ctx: CommandContext,
): void {
  const { command, print, io } = ctx;
  const local = command(program, "local", "Run DynamoDB Local in the background", []);

  command(local, "up", "Start DynamoDB Local and print the endpoint", [
    "zae-limiter local up",
    "zae-limiter local up --port 8001 --data-dir .dynamodb --engine java",
  ])
    .option("--port <port>", "port to listen on", (v) => {
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) {
        throw new UsageError(`Invalid --port ${JSON.stringify(v)}: must be 1-65535`);
      }
      return Number(v);
    }, 8000)
    .option("--data-dir <dir>", "keep tables in this folder (default: in memory)", (v) => {
      if (v.trim() === "") {
        throw new UsageError(
          `Invalid --data-dir ${JSON.stringify(v)}: give a folder, or leave --data-dir out to ` +
            `keep the tables in memory`,
        );
      }
      return v;
    })
    .addOption(
      new Option("--engine <engine>", "how to run it").choices(["auto", "docker", "java"]).default(
        "auto",
      ),
    )
    .action((opts, c: Command) => {
      const dir = stateDir(io.env);
      return withLocalLock(dir, () => up(opts, c, dir));
    });

  async function up(
    opts: { port: number; dataDir?: string; engine: "auto" | "docker" | "java" },
    c: Command,
    dir: string,
  ): Promise<void> {
    const current = readState(dir);
    if (current) {
      const verdict = verdictOf(current);
      if (verdict === "running") {
        print(
          c,
          { ...current, running: true, alreadyRunning: true },
          [
            `DynamoDB Local is already running at ${current.endpoint} (${current.engine}).`,
            ...envLines(current.endpoint),
          ].join("\n"),
        );
        return;
      }
      rmSync(join(dir, "local.json"), { force: true });
      io.err(`note: removed the stale state file: ${staleNote(current, verdict)}\n`);
    }
    let engine: "java" | "docker" = opts.engine === "auto"
      ? (dockerAnswers() ? "docker" : "java")
      : opts.engine;
    if (opts.engine === "docker" && !dockerAnswers()) {
      throw new Error(
        "no Docker engine answers (`docker info` failed): start Docker, or use --engine java",
      );
    }
    if (!(await isPortFree(opts.port))) {
      throw new Error(
        `port ${opts.port} is in use by another process: choose another with --port`,
      );
    }
    const dataDir = opts.dataDir !== undefined ? resolve(opts.dataDir) : undefined;
    let state!: LocalState; // set by the docker branch, or in `beforeHandOver`
    if (engine === "docker") {
      if (dataDir) mkdirSync(dataDir, { recursive: true });
      const args = [
        "run",
        "-d",
        "--rm",
        "-p",
        `${opts.port}:8000`,
        ...(dataDir ? ["-v", `${dataDir}:/data`, "-u", "root"] : []),
        "amazon/dynamodb-local",
        "-jar",
        "DynamoDBLocal.jar",
        "-sharedDb",
        ...(dataDir ? ["-dbPath", "/data"] : ["-inMemory"]),
      ];
      const r = spawnSync("docker", args, { encoding: "utf8", timeout: 300_000 });
      if (r.status !== 0) {
        throw new Error(
          `docker run failed: ${(r.stderr || r.stdout || "").trim().split("\n").pop()}`,
        );
      }
      const endpoint = `http://127.0.0.1:${opts.port}`;
      state = {
        engine,
        endpoint,
        port: opts.port,
        containerId: r.stdout.trim(),
        ...(dataDir ? { dataDir } : {}),
        startedAt: new Date().toISOString(),
      };
      const until = Date.now() + 60_000;
      while (!(await isDynamoDBReady(endpoint))) {
        if (Date.now() > until) {
          throw new Error(`DynamoDB Local (docker) did not answer on ${endpoint}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } else {
      engine = "java";
      const logFile = join(dir, "local.log");
      const startedAt = new Date().toISOString();
      // The state is written while the watchdog still guards Java: killed before this, `local up`
      // leaves no orphan; after it, `local down` finds the instance.
      await startDetached({
        port: opts.port,
        sharedDb: true,
        ...(dataDir ? { dataDir } : {}),
        logFile,
        beforeHandOver: (d) => {
          state = {
            engine,
            endpoint: d.endpoint,
            port: d.port,
            pid: d.pid,
            ...(d.startTime !== undefined ? { startTime: d.startTime } : {}),
            ...(dataDir ? { dataDir } : {}),
            logFile,
            startedAt,
          };
          writeFileSync(join(dir, "local.json"), JSON.stringify(state, null, 2));
        },
      });
    }
    if (engine === "docker") writeFileSync(join(dir, "local.json"), JSON.stringify(state, null, 2));
    print(
      c,
      { ...state, running: true },
      [
        `DynamoDB Local is running at ${state.endpoint} (${engine}${
          state.pid ? `, pid ${state.pid}` : ""
        }${dataDir ? `, data in ${dataDir}` : ", in memory"}).`,
        "Use it with:",
        ...envLines(state.endpoint),
        "Stop it with: zae-limiter local down",
      ].join("\n"),
    );
  }

  command(local, "down", "Stop the DynamoDB Local started by `local up`", [
    "zae-limiter local down",
  ])
    .action((_opts, c: Command) => {
      const dir = stateDir(io.env);
      return withLocalLock(dir, async () => {
        const state = readState(dir);
        if (!state) {
          print(
            c,
            { running: false, stopped: false },
            "DynamoDB Local is not running (no state file).",
          );
          return;
        }
        const verdict = verdictOf(state);
        let stopped = false;
        if (verdict === "running") {
          if (state.engine === "java") {
            stopped = await stopByPid(state.pid!, { startTime: state.startTime, port: state.port });
          } else if (state.containerId) {
            const r = spawnSync("docker", ["rm", "-f", state.containerId], { encoding: "utf8" });
            stopped = r.status === 0;
          }
        }
        rmSync(join(dir, "local.json"), { force: true });
        print(
          c,
          { ...state, running: false, stopped, ...(stopped ? {} : { stale: verdict }) },
          stopped
            ? `Stopped DynamoDB Local at ${state.endpoint}.`
            : `DynamoDB Local at ${state.endpoint} was not running (${
              staleNote(state, verdict === "running" ? "gone" : verdict)
            }); removed the state file.`,
        );
      });
    });

  command(
    local,
    "status",
    `Tell whether DynamoDB Local is running (exit ${EXIT_NOT_RUNNING} when not)`,
    ["zae-limiter local status"],
  )
    .action(async (_opts, c: Command) => {
      const state = readState(stateDir(io.env));
      const running = state !== undefined && verdictOf(state) === "running" &&
        await isDynamoDBReady(state.endpoint);
      print(
        c,
        state ? { ...state, running } : { running: false },
        running
          ? `DynamoDB Local is running at ${state!.endpoint} (${state!.engine}${
            state!.pid ? `, pid ${state!.pid}` : ""
          }).`
          : "DynamoDB Local is not running.",
      );
      if (!running) throw new ExitStatus(EXIT_NOT_RUNNING, "DynamoDB Local is not running");
    });
}
