/**
 * A DynamoDB Local started for a caller dies with the caller, however the caller ends: SIGTERM,
 * SIGINT or SIGHUP sent to the Deno process alone (not its process group), and SIGKILL. Real
 * processes: the caller is a `deno` child, the check is by the Java pid.
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isProcessAlive } from "../src/local/mod.ts";

const LOCAL = new URL("../src/local/mod.ts", import.meta.url).href;
const DEMO = new URL("../examples/demo.ts", import.meta.url).pathname;

/** The children of `ppid` whose command line mentions DynamoDBLocal (Linux `/proc`). */
function javaChildren(ppid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent !== ppid) continue;
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes("DynamoDBLocal")) {
        found.push(Number(name));
      }
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function goneWithin(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!isProcessAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !isProcessAlive(pid);
}

/** Spawns `deno run <args>`, waits until its stdout matches `ready`, returns it and the output. */
async function spawnUntil(args: string[], ready: RegExp) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const deadline = Date.now() + 120_000;
  while (!ready.test(out)) {
    if (Date.now() > deadline) throw new Error(`not ready: ${out}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`exited before ready: ${out}`);
    out += value;
  }
  // Keep draining so that the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  child.stderr.cancel().catch(() => {});
  return { child, out };
}

const isLinux = Deno.build.os === "linux";

Deno.test({
  name: "DynamoDB Local dies with the process that started it",
  ignore: !isLinux,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await mkdtemp(join(tmpdir(), "zl-supervision-"));
    const holder = join(dir, "holder.ts");
    await writeFile(
      holder,
      `import { startDynamoDBLocal } from ${JSON.stringify(LOCAL)};
const ddb = await startDynamoDBLocal();
console.log("java " + ddb.pid);
setInterval(() => {}, 60_000);
`,
    );
    try {
      for (const signal of ["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"] as const) {
        await t.step(`startDynamoDBLocal: ${signal} to the deno process alone`, async () => {
          const { child, out } = await spawnUntil([holder], /java (\d+)\n/);
          const java = Number(/java (\d+)/.exec(out)![1]);
          assert.ok(isProcessAlive(java));
          Deno.kill(child.pid, signal); // the pid, not the group
          const status = await child.status;
          assert.equal(status.signal, signal, "the holder died of the signal");
          assert.ok(await goneWithin(java, 15_000), `java ${java} left running after ${signal}`);
        });
      }

      await t.step("the demo: SIGTERM to the deno process alone", async () => {
        const { child } = await spawnUntil([DEMO], /DynamoDB Local at /);
        const javas = javaChildren(child.pid);
        assert.equal(javas.length, 1, `one java child of the demo: ${javas}`);
        Deno.kill(child.pid, "SIGTERM");
        const status = await child.status;
        assert.equal(status.signal, "SIGTERM", "the demo was still running when signalled");
        assert.ok(await goneWithin(javas[0], 15_000), `java ${javas[0]} left running`);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
