/**
 * `local up|status|down` for real with the Java engine, as separate processes (`deno run
 * cli/main.ts`), so DynamoDB Local must outlive the `up` process and be found again from the
 * state file.
 */

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RateLimiter } from "../mod.ts";
import { dockerAnswers, type LocalState } from "../cli/local.ts";
import { freePort, isProcessAlive, stopByPid } from "../src/local/mod.ts";
import { runCli } from "./_cli.ts";

Deno.test({
  name: "local up / status / down with the Java engine, across processes",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const stateDir = mkdtempSync(join(tmpdir(), "zl-local-"));
    const env = { ZAE_LIMITER_STATE_DIR: stateDir };
    const stateFile = join(stateDir, "local.json");
    const port = await freePort();
    try {
      await t.step("status before up: not running, exit 3", async () => {
        const r = await runCli(["local", "status"], env);
        assert.deepEqual(r, { code: 3, out: "DynamoDB Local is not running.\n", err: "" });
      });

      await t.step("up starts it in the background and prints the endpoint", async () => {
        const r = await runCli(["local", "up", "--port", String(port), "--engine", "java"], env);
        assert.equal(r.code, 0, r.err);
        const endpoint = `http://127.0.0.1:${port}`;
        assert.match(
          r.out,
          new RegExp(
            `^DynamoDB Local is running at ${endpoint} \\(java, pid \\d+, in memory\\)\\.\n`,
          ),
        );
        assert.match(r.out, new RegExp(`\nexport AWS_ENDPOINT_URL_DYNAMODB=${endpoint}\n`));
        const state = JSON.parse(readFileSync(stateFile, "utf8")) as LocalState;
        assert.equal(state.engine, "java");
        assert.equal(state.port, port);
        assert.ok(state.pid && isProcessAlive(state.pid), "the Java process outlives `local up`");
      });

      await t.step("status and a second up find it again", async () => {
        const s = await runCli(["local", "status", "--json"], env);
        assert.equal(s.code, 0, s.err);
        assert.equal(JSON.parse(s.out).running, true);
        const again = await runCli(["local", "up", "--port", String(port)], env);
        assert.equal(again.code, 0, again.err);
        assert.match(again.out, /^DynamoDB Local is already running at /);
      });

      await t.step("the CLI and the library share its data (-sharedDb)", async () => {
        const endpoint = `http://127.0.0.1:${port}`;
        const r = await runCli(
          ["entity", "create", "shared-1", "--table-name", "local_t", "--create-table"],
          {
            ...env,
            AWS_ENDPOINT_URL_DYNAMODB: endpoint,
            AWS_ACCESS_KEY_ID: "someone",
            AWS_SECRET_ACCESS_KEY: "x",
          },
        );
        assert.equal(r.code, 0, r.err);
        const limiter = new RateLimiter({ tableName: "local_t", endpoint });
        try {
          assert.equal((await limiter.getEntity("shared-1"))?.entityId, "shared-1");
        } finally {
          await limiter.close();
        }
      });

      await t.step("down stops it by pid and removes the state file", async () => {
        const { pid } = JSON.parse(readFileSync(stateFile, "utf8")) as LocalState;
        const r = await runCli(["local", "down"], env);
        assert.equal(r.code, 0, r.err);
        assert.equal(r.out, `Stopped DynamoDB Local at http://127.0.0.1:${port}.\n`);
        assert.equal(isProcessAlive(pid!), false);
        assert.equal(existsSync(stateFile), false);
        const s = await runCli(["local", "status"], env);
        assert.deepEqual(s, { code: 3, out: "DynamoDB Local is not running.\n", err: "" });
        const d = await runCli(["local", "down"], env);
        assert.deepEqual(d, {
          code: 0,
          out: "DynamoDB Local is not running (no state file).\n",
          err: "",
        });
      });

      await t.step({
        name: "--engine docker without a Docker engine: a clear error",
        ignore: dockerAnswers(),
        fn: async () => {
          const r = await runCli(
            ["local", "up", "--engine", "docker", "--port", String(port)],
            env,
          );
          assert.deepEqual(r, {
            code: 1,
            out: "",
            err:
              "error: no Docker engine answers (`docker info` failed): start Docker, or use --engine java\n",
          });
        },
      });
    } finally {
      try {
        const state = JSON.parse(readFileSync(stateFile, "utf8")) as LocalState;
        if (state.pid) await stopByPid(state.pid);
      } catch { /* already stopped */ }
      rmSync(stateDir, { recursive: true, force: true });
    }
  },
});
