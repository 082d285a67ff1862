/**
 * `deno task install` puts a `zae-limiter` command on the PATH from a clone: run into a temporary
 * `DENO_INSTALL_ROOT`, with every proxy pointing at a closed port so that a download would fail,
 * then the installed command answers `--help` and `--version` from another folder.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../cli/io.ts";
import { freePort } from "../src/local/mod.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("deno task install: zae-limiter on the PATH, with no download", async () => {
  const installRoot = mkdtempSync(join(tmpdir(), "zl-install-"));
  const closed = `http://127.0.0.1:${await freePort()}`;
  const offline = { HTTP_PROXY: closed, HTTPS_PROXY: closed, NO_PROXY: "" };
  try {
    const task = await new Deno.Command(Deno.execPath(), {
      args: ["task", "install"],
      cwd: root,
      env: { DENO_INSTALL_ROOT: installRoot, ...offline },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(task.stderr) + new TextDecoder().decode(task.stdout);
    assert.equal(task.code, 0, log);

    const bin = join(installRoot, "bin");
    const path = `${bin}:${Deno.env.get("PATH") ?? ""}`;
    const run = async (args: string[]) => {
      const r = await new Deno.Command("zae-limiter", {
        args,
        cwd: tmpdir(), // not the clone: the command must not depend on the working folder
        env: { PATH: path, ...offline },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
    };
    const version = await run(["--version"]);
    assert.deepEqual(version, { code: 0, out: `${VERSION}\n`, err: "" });
    const help = await run(["--help"]);
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, /^Usage: zae-limiter \[options\] \[command\]/);
    assert.match(help.out, /entity/);
  } finally {
    rmSync(installRoot, { recursive: true, force: true });
  }
});
