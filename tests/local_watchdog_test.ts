/**
 * The watchdog that starts before its child (Linux): it knows the child by a mark on its command
 * line, so a host killed at any moment of a start leaves nothing behind, including a child that
 * only appears just after the host died; and it touches no process without the mark.
 */

import assert from "node:assert/strict";
import { isProcessAlive } from "../src/local/mod.ts";
import { watchdogMark } from "../src/local/watchdog.ts";

const HOST = `
import { startWatchdog } from ${
  JSON.stringify(new URL("../src/local/watchdog.ts", import.meta.url).href)
};
startWatchdog({ mark: Deno.args[0] });
console.log("ready");
setInterval(() => {}, 1000);
`;

async function waitDead(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (isProcessAlive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return !isProcessAlive(pid);
}

/** A stand-in child: `sh -c 'sleep 600'` with `args` on its command line. */
function child(args: string[]): Deno.ChildProcess {
  return new Deno.Command("sh", { args: ["-c", "sleep 600", ...args], stdout: "null" }).spawn();
}

Deno.test({
  name: "watchdog by mark: the host killed, marked children stop, others do not",
  ignore: Deno.build.os !== "linux",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const mark = watchdogMark()!;
    assert.match(mark, /^-Dzae\.limiter\.watchdog=[0-9a-f]{16}$/);
    assert.notEqual(watchdogMark(), mark, "a token per child");
    const host = new Deno.Command(Deno.execPath(), {
      args: ["eval", HOST, mark],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = host.stdout.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /ready/);
    reader.releaseLock();
    const marked = child([mark]);
    const unmarked = child(["-Dzae.limiter.watchdog=0000000000000000"]);
    // The mark's text, though not as one argument: not this child's.
    const lookalike = child(["zae\\.limiter\\.watchdog=" + mark.split("=")[1]]);
    try {
      await t.step("while the host lives, nothing is touched", async () => {
        await new Promise((r) => setTimeout(r, 1_500));
        assert.ok(isProcessAlive(marked.pid));
      });
      let late: Deno.ChildProcess | undefined;
      await t.step(
        "the host killed: the marked child stops, and one started just after",
        async () => {
          host.kill("SIGKILL");
          await host.status;
          await host.stdout.cancel();
          // Exec'd after the host died (as when a kill lands in the middle of a start).
          await new Promise((r) => setTimeout(r, 1_200));
          late = child([mark]);
          assert.ok(await waitDead(marked.pid, 10_000), "the marked child stopped");
          assert.ok(await waitDead(late.pid, 10_000), "the late marked child stopped");
        },
      );
      await t.step("processes without the mark are left alone", () => {
        assert.ok(isProcessAlive(unmarked.pid));
        assert.ok(isProcessAlive(lookalike.pid));
      });
      await late?.status;
    } finally {
      for (const c of [marked, unmarked, lookalike]) {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
        await c.status;
      }
    }
  },
});
