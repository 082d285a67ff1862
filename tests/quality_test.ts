/**
 * The package stays publishable and tidy: formatting, lint, documentation lint of every entry
 * point, and a JSR dry-run publish.
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;

async function deno(...args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code, out: dec.decode(stdout) + dec.decode(stderr) };
}

const entryPoints = async (): Promise<string[]> => {
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  return Object.values(config.exports as Record<string, string>);
};

Deno.test("deno fmt --check: every file is formatted", async () => {
  const { code, out } = await deno("fmt", "--check");
  assert.equal(code, 0, out);
});

Deno.test("deno lint: no problems", async () => {
  const { code, out } = await deno("lint");
  assert.equal(code, 0, out);
});

Deno.test("deno doc --lint: every exported symbol of every entry point is documented", async () => {
  const { code, out } = await deno("doc", "--lint", ...(await entryPoints()));
  assert.equal(code, 0, out);
});

Deno.test("deno publish --dry-run: publishable on JSR with no warnings", async () => {
  const { code, out } = await deno("publish", "--dry-run", "--allow-dirty");
  assert.equal(code, 0, out);
  assert.doesNotMatch(out, /warning/i, out);
});
