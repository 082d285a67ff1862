/**
 * `local up|down|status` against real processes: one instance under concurrent `up`s, `down`
 * never signals a process it did not start, stale state and locks are recovered, a failed run's
 * log does not poison the next one, and exit codes a script can use.
 */

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalState } from "../cli/local.ts";
import { freePort, isProcessAlive, startDetached, stopByPid } from "../src/local/mod.ts";
import { runCli } from "./_cli.ts";

/** The DynamoDB Local processes started with `-port <port>`, by pid. */
/** The parent pid of `pid` (from /proc), or `undefined` once it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

function dynamoOnPort(port: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      const at = args.indexOf("-port");
      if (args.some((a) => a.includes("DynamoDBLocal")) && args[at + 1] === String(port)) {
        found.push(Number(name));
      }
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

Deno.test({
  name: "local up/down/status guard against races, reused pids and poisoned logs",
  ignore: Deno.build.os !== "linux",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stateDir = mkdtempSync(join(tmpdir(), "zl-guard-"));
    const env = { ZAE_LIMITER_STATE_DIR: stateDir };
    const stateFile = join(stateDir, "local.json");
    const readState = () => JSON.parse(readFileSync(stateFile, "utf8")) as LocalState;
    const writeState = (s: LocalState) => writeFileSync(stateFile, JSON.stringify(s));
    const port = await freePort();
    const up = (p = port, more: string[] = []) =>
      runCli(["local", "up", "--port", String(p), "--engine", "java", ...more], env);
    // An unrelated process whose command line says "DynamoDBLocal", as in the report.
    const tailed = join(stateDir, "DynamoDBLocal.log");
    writeFileSync(tailed, "");
    const tail = new Deno.Command("tail", { args: ["-f", tailed], stdout: "null" }).spawn();
    const others: number[] = [];
    try {
      await t.step("status with nothing running exits 3", async () => {
        const r = await runCli(["local", "status"], env);
        assert.deepEqual(r, { code: 3, out: "DynamoDB Local is not running.\n", err: "" });
      });

      await t.step("--data-dir '' is refused, naming the option", async () => {
        const r = await up(port, ["--data-dir", ""]);
        assert.deepEqual(r, {
          code: 2,
          out: "",
          err: 'error: Invalid --data-dir "": give a folder, or leave --data-dir out to keep ' +
            "the tables in memory\n",
        });
      });

      await t.step("a taken port is an `error:` line on stderr", async () => {
        const blocker = createServer();
        const taken = await new Promise<number>((r) =>
          blocker.listen(0, () => r((blocker.address() as { port: number }).port))
        );
        try {
          const r = await up(taken);
          assert.deepEqual(r, {
            code: 1,
            out: "",
            err: `error: port ${taken} is in use by another process: choose another with --port\n`,
          });
        } finally {
          blocker.close();
        }
      });

      await t.step("three concurrent ups start exactly one instance", async () => {
        const runs = await Promise.all([up(), up(), up()]);
        for (const r of runs) assert.equal(r.code, 0, r.err);
        const started = runs.filter((r) => r.out.startsWith("DynamoDB Local is running at"));
        const found = runs.filter((r) => r.out.startsWith("DynamoDB Local is already running"));
        assert.equal(started.length, 1, runs.map((r) => r.out).join("\n"));
        assert.equal(found.length, 2);
        assert.deepEqual(dynamoOnPort(port), [readState().pid], "one process, the recorded one");
        assert.ok(readState().startTime, "its start time is recorded");
      });

      await t.step("down leaves alone what it did not start", async () => {
        const real = readState();
        const second = await startDetached({}); // another DynamoDB Local, on another port
        others.push(second.pid);
        const impostors = [
          { pid: tail.pid, startTime: real.startTime }, // a reused pid
          { pid: tail.pid, startTime: undefined }, // the same, in a state file of an older CLI
          { pid: second.pid, startTime: real.startTime },
          { pid: second.pid, startTime: undefined }, // DynamoDB Local, but not on our port
        ];
        for (const impostor of impostors) {
          writeState({ ...real, ...impostor });
          const r = await runCli(["local", "down"], env);
          assert.deepEqual(r, {
            code: 0,
            out: `DynamoDB Local at ${real.endpoint} was not running (pid ${impostor.pid} now ` +
              "belongs to another process, which was left alone); removed the state file.\n",
            err: "",
          });
          assert.equal(existsSync(stateFile), false);
          assert.ok(isProcessAlive(tail.pid) && isProcessAlive(second.pid), "both survive");
        }
        assert.ok(isProcessAlive(real.pid!));
        writeState(real);
        const r = await runCli(["local", "down"], env);
        assert.deepEqual(r, {
          code: 0,
          out: `Stopped DynamoDB Local at ${real.endpoint}.\n`,
          err: "",
        });
        assert.equal(isProcessAlive(real.pid!), false);
        assert.ok(isProcessAlive(second.pid), "the other DynamoDB Local survives");
      });

      await t.step("a stale pid does not leave the CLI stuck", async () => {
        const done = new Deno.Command("true").spawn();
        await done.status;
        const stale: LocalState = {
          engine: "java",
          endpoint: `http://127.0.0.1:${port}`,
          port,
          pid: done.pid,
          startTime: "1",
          startedAt: new Date().toISOString(),
        };
        writeState(stale);
        assert.equal((await runCli(["local", "status"], env)).code, 3);
        const d = await runCli(["local", "down"], env);
        assert.deepEqual(d, {
          code: 0,
          out: `DynamoDB Local at ${stale.endpoint} was not running (pid ${done.pid} is gone); ` +
            "removed the state file.\n",
          err: "",
        });
        writeState({ ...stale, pid: tail.pid }); // the pid reused by an unrelated process
        const u = await up();
        assert.equal(u.code, 0, u.err);
        assert.match(u.out, /^DynamoDB Local is running at /);
        assert.equal(
          u.err,
          `note: removed the stale state file: pid ${tail.pid} now belongs to another process, ` +
            "which was left alone\n",
        );
        assert.ok(isProcessAlive(tail.pid));
        assert.equal((await runCli(["local", "down"], env)).code, 0);
      });

      await t.step(
        "a failed run's log and a dead holder's lock do not block the next up",
        async () => {
          const blocker = createServer();
          await new Promise<void>((r) => blocker.listen(port, r));
          assert.equal((await up()).code, 1); // fails: the port is taken
          blocker.close();
          writeFileSync(
            join(stateDir, "local.log"),
            "Caused by: java.net.BindException: Address already in use\n",
            { flag: "a" },
          );
          const dead = new Deno.Command("true").spawn();
          await dead.status;
          writeFileSync(join(stateDir, "local.lock"), `${dead.pid} 1\n`);
          const r = await up();
          assert.equal(r.code, 0, r.err);
          assert.match(r.out, /^DynamoDB Local is running at /);
          assert.equal(existsSync(join(stateDir, "local.lock")), false, "the lock is released");
          assert.equal((await runCli(["local", "down"], env)).code, 0);
          assert.deepEqual(dynamoOnPort(port), []);
        },
      );
      await t.step("an up killed while DynamoDB Local starts leaves no orphan", async () => {
        const main = new URL("../cli/main.ts", import.meta.url).pathname;
        const cli = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--no-check", main, "local", "up", "--port", String(port)],
          env: { ...env, ZAE_LIMITER_STATE_DIR: stateDir },
          stdout: "null",
          stderr: "null",
        }).spawn();
        // This `up`'s own Java: its child on the port (another test file running in parallel may
        // have taken the port since the steps above freed it, with a DynamoDB Local of its own).
        let java: number[] = [];
        const until = Date.now() + 60_000;
        while (java.length === 0 && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
          java = dynamoOnPort(port).filter((pid) => parentOf(pid) === cli.pid);
        }
        assert.equal(java.length, 1, "java started");
        cli.kill("SIGKILL");
        await cli.status;
        if (existsSync(stateFile)) {
          // Killed after it recorded the instance (the state is written before the watchdog is
          // let go): then `local down` finds and stops it.
          assert.equal(readState().pid, java[0], "the state names the running java");
          assert.equal((await runCli(["local", "down"], env)).code, 0);
        }
        // Killed before: the watchdog stops java, and nothing is left running either way.
        const until2 = Date.now() + 15_000;
        while (isProcessAlive(java[0]) && Date.now() < until2) {
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(isProcessAlive(java[0]), false, `java ${java[0]} orphaned`);
      });
    } finally {
      try {
        const s = readState();
        if (s.pid) await stopByPid(s.pid, { startTime: s.startTime, port: s.port });
      } catch { /* already stopped */ }
      for (const pid of others) await stopByPid(pid).catch(() => {});
      tail.kill("SIGKILL");
      await tail.status;
      rmSync(stateDir, { recursive: true, force: true });
    }
  },
});
