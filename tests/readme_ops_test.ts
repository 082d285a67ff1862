/**
 * README "An operator's day": every `zae-limiter …` line of its shell block runs through the CLI,
 * in order, against a DynamoDB Local this test starts (in place of `local up`, whose exports are
 * taken from the block with this instance's endpoint and a fresh table), each exiting 0, with
 * checks of what some of them did through the library.
 */

import assert from "node:assert/strict";
import { EntityDisabledError, RateLimiter } from "../mod.ts";
import { cli } from "./_cli.ts";
import { startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const root = new URL("..", import.meta.url).pathname;

/** The lines of the section's shell block(s), comments and blank lines dropped. */
async function sectionLines(): Promise<string[]> {
  const readme = await Deno.readTextFile(`${root}README.md`);
  const start = readme.indexOf("\n## An operator's day\n");
  assert.ok(start >= 0, 'README has no section "An operator\'s day"');
  const end = readme.indexOf("\n## ", start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length > 0, "the section has no sh block");
  return blocks.join("").split("\n")
    .map((l) => l.replace(/(^|\s)#.*$/, "").trim())
    .filter((l) => l.length > 0);
}

Deno.test({
  name: "README, an operator's day: every zae-limiter line runs on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const lines = await sectionLines();
    const ddb = await startTestDynamo();
    const tableName = uniqueTableName("readme_ops");
    const env: Record<string, string> = {};
    let plans = 0;
    /** A limiter of the library on the README's table (fresh: nothing cached). */
    const library = (namespace?: string) =>
      new RateLimiter({
        tableName,
        endpoint: ddb.endpoint,
        region: "us-east-1",
        ...(namespace ? { namespace } : {}),
      });
    const acquire = async (entityId: string, consume: Record<string, number>) => {
      await using limiter = library();
      return await limiter.acquire({ entityId, resource: "gpt-4", consume }, () => "admitted");
    };
    const available = async (entityId: string) => {
      await using limiter = library();
      return await limiter.available({ entityId, resource: "gpt-4" });
    };
    /** Checks run after the command whose line starts with the key. */
    const after: Record<string, (out: string) => Promise<void>> = {
      "zae-limiter limits apply -f examples/limits.yaml": async () => {
        await using limiter = library();
        const key1 = await limiter.getEntity("key-1");
        assert.deepEqual([key1?.parentId, key1?.cascade], ["proj-1", true]);
        // Take most of key-1's tpm and half its rpm, for top-up and reset to give back.
        assert.equal(await acquire("key-1", { tpm: 12_000, rpm: 50 }), "admitted");
      },
      "zae-limiter check": (out) => {
        assert.match(out, new RegExp(`${tableName} +ACTIVE`));
        return Promise.resolve();
      },
      "zae-limiter limits plan -f examples/limits.yaml": (out) => {
        // The first plan (of an empty table) lists steps; the one after apply none.
        if (plans++ > 0) assert.match(out, /^No changes/);
        else assert.match(out, /key-1/);
        return Promise.resolve();
      },
      "zae-limiter entity list --with-custom-limits": (out) => {
        assert.deepEqual(out.trim().split("\n").map((l) => l.split(/\s+/)[0]), ["key-1", "proj-1"]);
        return Promise.resolve();
      },
      "zae-limiter entity disable key-2": async () => {
        await assert.rejects(acquire("key-2", { rpm: 1 }), EntityDisabledError);
        await assert.rejects(acquire("key-2", { rpm: 1 }), EntityDisabledError);
      },
      "zae-limiter entity enable key-2": async () => {
        assert.equal(await acquire("key-2", { rpm: 1 }), "admitted");
      },
      "zae-limiter entity top-up key-1": async () => {
        // 3000 left after the acquire, a little refill, and the 5000 topped up.
        const { tpm } = await available("key-1");
        assert.ok(tpm >= 8000 && tpm <= 15_000, `tpm ${tpm}`);
      },
      "zae-limiter entity reset key-1": async () => {
        assert.equal((await available("key-1")).rpm, 100);
      },
      "zae-limiter audit list --entity key-2": (out) => {
        assert.match(out, /entity\.enable/);
        assert.match(out, /entity\.disable/);
        assert.doesNotMatch(out, /key-1/);
        return Promise.resolve();
      },
      "zae-limiter --namespace staging entity list": async (out) => {
        assert.deepEqual(out.trim().split("\n").map((l) => l.split(/\s+/)[0]), [
          "key-1",
          "key-2",
          "proj-1",
        ]);
        await using staging = library("staging");
        assert.equal((await staging.getLimits({ entityId: "key-1", resource: "gpt-4" })).length, 2);
      },
    };
    let ran = 0;
    const checked = new Set<string>();
    try {
      for (const line of lines) {
        const exported = /^export ([A-Z_]+)=(\S+)$/.exec(line);
        if (exported) {
          const [, name, value] = exported;
          env[name] = name === "AWS_ENDPOINT_URL_DYNAMODB"
            ? ddb.endpoint
            : name === "ZAE_LIMITER_TABLE"
            ? tableName
            : value;
          continue;
        }
        assert.match(line, /^zae-limiter /, `not a zae-limiter line: ${line}`);
        assert.doesNotMatch(line, /["'`$]/, `quoting is not run by this test: ${line}`);
        // This test's DynamoDB Local stands for the one `local up` starts.
        if (/^zae-limiter local (up|down)$/.test(line)) continue;
        const argv = line.split(/\s+/).slice(1)
          .map((a) => a === "examples/limits.yaml" ? `${root}examples/limits.yaml` : a);
        const r = await cli(argv, { ...env });
        assert.equal(r.code, 0, `${line}\n${r.out}${r.err}`);
        ran++;
        for (const [prefix, check] of Object.entries(after)) {
          if (line.startsWith(prefix)) {
            await check(r.out);
            checked.add(prefix);
          }
        }
      }
      assert.deepEqual(
        Object.keys(env).sort(),
        [
          "AWS_ACCESS_KEY_ID",
          "AWS_ENDPOINT_URL_DYNAMODB",
          "AWS_REGION",
          "AWS_SECRET_ACCESS_KEY",
          "ZAE_LIMITER_TABLE",
        ],
      );
      assert.ok(ran >= 15 && ran <= 25, `${ran} commands`);
      // Every check found its command in the README.
      assert.deepEqual([...checked].sort(), Object.keys(after).sort());
      // What the prose after the block says: apply sets the file's system defaults back; only
      // --prune deletes the claude defaults.
      const file = `${root}examples/limits.yaml`;
      const plan = JSON.parse((await cli(["limits", "plan", "-f", file, "--json"], env)).out);
      assert.deepEqual(plan.steps.map((s: { op: string }) => s.op), ["setSystemDefaults"]);
      const pruned = await cli(["limits", "plan", "-f", file, "--prune", "--json"], env);
      assert.deepEqual(
        JSON.parse(pruned.out).steps.map((s: { op: string; subject: string }) => s.op).sort(),
        ["deleteResourceDefaults", "setSystemDefaults"],
      );
      // And the audit trail of the day names the hand-made changes.
      const audit = await cli(["audit", "list", "--json"], env);
      const actions = JSON.parse(audit.out).map((e: { action: string }) => e.action);
      for (
        const a of [
          "defaults.resource.set",
          "defaults.system.set",
          "bucket.top-up",
          "bucket.reset",
        ]
      ) assert.ok(actions.includes(a), `${a} in ${actions}`);
    } finally {
      await ddb.stop();
    }
  },
});
