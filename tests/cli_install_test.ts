/**
 * Using the project from a clone, before anything is published:
 * - `deno task install` puts a `zae-limiter` command on the PATH: run into a temporary
 *   `DENO_INSTALL_ROOT`, with every proxy pointing at a closed port so that a download would fail,
 *   then the installed command answers `--help` and `--version` from another folder;
 * - the README's quick start resolves `@zae/limiter` through the clone's deno.json, and the README
 *   shows the `export` lines that `local up` prints.
 */

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

const readme = readFileSync(join(root, "README.md"), "utf8");

Deno.test("the README quick start runs from a clone through deno.json's @zae/limiter", async () => {
  const section = readme.slice(readme.indexOf("## Quick start"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code?.includes('from "@zae/limiter"'), "the quick start imports @zae/limiter");
  const dir = mkdtempSync(join(tmpdir(), "zl-quickstart-"));
  try {
    const file = join(dir, "quickstart.ts");
    // The quick start only defines `chat`; print its type to show that the module loaded.
    writeFileSync(file, `${code}\nconsole.log(typeof chat, typeof limiter.acquire);\n`);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", "--config", join(root, "deno.json"), file],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assert.equal(r.code, 0, dec.decode(r.stderr));
    assert.equal(dec.decode(r.stdout), "function function\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("the README uses the export lines that local up prints", () => {
  const local = readFileSync(join(root, "cli", "local.ts"), "utf8");
  const printed = [
    ...local.matchAll(
      /`(export AWS_[A-Z_]+=[^`$]*)(\$\{endpoint\})?`|"(export AWS_[A-Z_]+=[^"]*)"/g,
    ),
  ]
    .map((m) => m[1] ? `${m[1]}${m[2] ? "http://127.0.0.1:8000" : ""}` : m[3]);
  assert.ok(printed.length >= 2, `export lines found in cli/local.ts: ${printed}`);
  for (const heading of ["## Quick start", "## The CLI"]) {
    const start = readme.indexOf(heading);
    const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
    for (const line of printed) {
      assert.ok(section.includes(line), `${heading} lacks ${JSON.stringify(line)}`);
    }
  }
});
