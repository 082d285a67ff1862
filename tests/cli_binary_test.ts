/**
 * The single binary: `bun build --compile cli/main.ts`, then the binary itself runs `--help`,
 * `cfn-template`, `local up`, an `entity create` against that DynamoDB Local, `dashboard` (the
 * page and its files from the binary alone, and `/api/info`), and `local down`.
 *
 * Skipped (with a message) when `bun` is not installed, except on CI (`CI=true`), where it fails.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RateLimiter } from "../mod.ts";
import type { LocalState } from "../cli/local.ts";
import { TEMPLATE_YAML } from "../src/infra/template.ts";
import { freePort, stopByPid } from "../src/local/mod.ts";
import { runCli } from "./_cli.ts";
import { VERSION } from "../cli/io.ts";
import { ASSETS } from "../src/dashboard/ui/assets_generated.ts";
import { startDashboard } from "./_dashboard.ts";

const root = new URL("..", import.meta.url).pathname;
const haveBun = spawnSync("bun", ["--version"]).status === 0;
const onCi = Deno.env.get("CI") === "true";
if (!haveBun && !onCi) {
  console.error("cli_binary_test: bun is not installed, skipping (npm install -g bun)");
}

Deno.test({
  name:
    "bun build --compile: the binary runs --help, cfn-template, local up, entity create, dashboard, local down",
  ignore: !haveBun && !onCi,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    assert.ok(haveBun, "bun is required on CI: npm install -g --allow-scripts=bun bun");
    const dir = mkdtempSync(join(tmpdir(), "zl-bin-"));
    const binary = join(dir, "zae-limiter-bun");
    const env = { ZAE_LIMITER_STATE_DIR: dir };
    const port = await freePort();
    const exe = [binary];
    try {
      await t.step("it builds", () => {
        const r = spawnSync("bun", ["build", "--compile", "cli/main.ts", "--outfile", binary], {
          cwd: root,
          encoding: "utf8",
        });
        assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      });
      await t.step("--help and cfn-template", async () => {
        const help = await runCli(["--help"], env, exe);
        assert.equal(help.code, 0, help.err);
        assert.match(help.out, /^Usage: zae-limiter \[options\] \[command\]/);
        const tpl = await runCli(["cfn-template"], env, exe);
        assert.equal(tpl.code, 0, tpl.err);
        assert.equal(tpl.out, TEMPLATE_YAML);
        const bad = await runCli(["limits", "set", "k", "--limit", "x"], env, exe);
        assert.equal(bad.code, 2);
      });
      await t.step("local up, entity create against it", async () => {
        const up = await runCli(
          ["local", "up", "--port", String(port), "--engine", "java"],
          env,
          exe,
        );
        assert.equal(up.code, 0, up.err);
        const endpoint = `http://127.0.0.1:${port}`;
        assert.match(up.out, new RegExp(`running at ${endpoint} `));
        const created = await runCli(
          ["entity", "create", "bin-key", "--table-name", "bin_t", "--create-table", "--json"],
          { ...env, AWS_ENDPOINT_URL_DYNAMODB: endpoint },
          exe,
        );
        assert.equal(created.code, 0, created.err);
        assert.equal(JSON.parse(created.out).entityId, "bin-key");
        const limiter = new RateLimiter({ tableName: "bin_t", endpoint });
        try {
          assert.equal((await limiter.getEntity("bin-key"))?.entityId, "bin-key");
        } finally {
          await limiter.close();
        }
      });
      await t.step(
        "dashboard: the page (embedded, no files beside the binary) and /api/info",
        async () => {
          const endpoint = `http://127.0.0.1:${port}`;
          const dashPort = await freePort();
          const server = await startDashboard(
            [
              binary,
              "dashboard",
              "--port",
              String(dashPort),
              "--table-name",
              "bin_t",
              "--read-only",
            ],
            { ...env, AWS_ENDPOINT_URL_DYNAMODB: endpoint },
          );
          try {
            // Nothing of the page lies beside the binary: it serves what it embeds.
            const files = readdirSync(dir, { recursive: true }).map(String);
            assert.deepEqual(files.filter((f) => /\.(html|js|css)$/.test(f)), []);
            const page = await fetch(server.url);
            assert.equal(page.status, 200);
            assert.match(page.headers.get("Content-Type") ?? "", /^text\/html/);
            assert.match(await page.text(), /^<!doctype html>/i);
            for (const path of Object.keys(ASSETS)) {
              const asset = await fetch(new URL(path, server.url));
              assert.equal(asset.status, 200, path);
              assert.equal(await asset.text(), ASSETS[path].body, path);
            }
            const info = await (await fetch(`${server.url}api/info`)).json();
            assert.deepEqual(info, {
              version: VERSION,
              table: "bin_t",
              readOnly: true,
              tokenRequired: false,
            });
          } finally {
            server.child.kill("SIGTERM");
            assert.equal((await server.child.status).code, 0, server.stderr());
          }
        },
      );
      await t.step("local down", async () => {
        const endpoint = `http://127.0.0.1:${port}`;
        const down = await runCli(["local", "down"], env, exe);
        assert.equal(down.code, 0, down.err);
        assert.equal(down.out, `Stopped DynamoDB Local at ${endpoint}.\n`);
      });
    } finally {
      try {
        const state = JSON.parse(readFileSync(join(dir, "local.json"), "utf8")) as LocalState;
        if (state.pid) await stopByPid(state.pid);
      } catch { /* already stopped */ }
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
