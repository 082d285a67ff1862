/**
 * Limits as code through the CLI against DynamoDB Local: plan, apply, an empty second plan, export
 * and its no-op apply; `--prune`; refused files (nothing written); a half-way failure finished by a
 * re-run; an audit event for every applied step; two `apply` processes at once.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type AuditEvent, Limit, RateLimiter } from "../mod.ts";
import { cli, runCli } from "./_cli.ts";
import { startTestDynamo, uniqueTableName } from "./_dynamo.ts";

/** The audit action of each plan step's store call. */
const ACTION: Record<string, string> = {
  setSystemDefaults: "defaults.system.set",
  deleteSystemDefaults: "defaults.system.delete",
  setResourceDefaults: "defaults.resource.set",
  deleteResourceDefaults: "defaults.resource.delete",
  createEntity: "entity.create",
  setParent: "entity.set-parent",
  setCascade: "entity.set-cascade",
  setLimits: "limits.set",
  deleteLimits: "limits.delete",
  deleteEntity: "entity.delete",
};

const FILE = `version: 1
system:
  limits:
    - { name: rpm, rate: 1000, per: minute }
resources:
  gpt-4:
    limits:
      - { name: tpm, rate: 100000, per: minute, burst: 150000 }
  claude:
    limits:
      - { name: rpm, rate: 50, per: minute }
entities:
  proj-1:
    name: Production
    limits:
      "*":
        - { name: rpd, rate: 50000, per: day }
  key-1:
    parent: proj-1
    cascade: true
    metadata: { owner: ana }
    limits:
      gpt-4:
        - { name: tpm, rate: 10000, per: minute, burst: 15000 }
        - { name: rpm, rate: 100, per: 60 }
        - { name: tokens, quota: 1000000, reset: "month@Europe/Berlin" }
        - { name: trial, quota: 500, resetAfter: 30d, soft: true }
  key-2:
    limits:
      claude:
        - { name: rpm, rate: 5, per: minute }
`;

/** FILE without key-2 and the claude defaults. */
const PRUNED = FILE.replace(/ {2}claude:\n {4}limits:\n.*\n/, "").replace(
  / {2}key-2:\n(.*\n)*$/,
  "",
);

Deno.test({
  name: "limits as code through the CLI on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const tableName = uniqueTableName("limits_file");
    const dir = await Deno.makeTempDir({ prefix: "limits_file_" });
    const env = {
      AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
      ZAE_LIMITER_TABLE: tableName,
    };
    const limiter = new RateLimiter({
      tableName,
      endpoint: ddb.endpoint,
      region: "us-east-1",
      createTable: true,
    });
    const write = async (name: string, text: string) => {
      const path = join(dir, name);
      await Deno.writeTextFile(path, text);
      return path;
    };
    const run = async (args: string[], code = 0) => {
      const r = await cli([...args, "--principal", "ops-test"], env);
      assert.equal(r.code, code, `${args.join(" ")}\n${r.out}\n${r.err}`);
      return r;
    };
    const plan = async (path: string, ...more: string[]) =>
      JSON.parse((await run(["limits", "plan", "-f", path, "--json", ...more])).out);
    const allEvents = async () => {
      const out: AuditEvent[] = [];
      let cursor: string | undefined;
      do {
        const page = await limiter.getAuditEvents({ limit: 1000, ...(cursor ? { cursor } : {}) });
        out.push(...page.events);
        cursor = page.cursor;
      } while (cursor);
      return out;
    };
    /** Applies and checks that the new audit events are exactly one per ok step, by action. */
    const apply = async (path: string, more: string[] = [], code = 0) => {
      const seen = new Set((await allEvents()).map((e) => e.eventId));
      const r = await run(["limits", "apply", "-f", path, "--yes", "--json", ...more], code);
      const result = JSON.parse(r.out) as {
        failed: number;
        results: { op: string; status: string; subject: string }[];
      };
      const fresh = (await allEvents()).filter((e) => !seen.has(e.eventId));
      const ok = result.results.filter((s) => s.status === "ok").map((s) => ACTION[s.op]).sort();
      assert.deepEqual(fresh.map((e) => e.action).sort(), ok);
      for (const e of fresh) assert.equal(e.principal, "ops-test");
      return result;
    };
    try {
      await limiter.createTable();
      const path = await write("limits.yaml", FILE);

      await t.step("plan, apply, an empty second plan", async () => {
        const first = await plan(path);
        assert.ok(first.steps.length >= 9, JSON.stringify(first));
        const result = await apply(path);
        assert.equal(result.failed, 0);
        assert.equal(result.results.length, first.steps.length);
        assert.deepEqual((await plan(path)).steps, []);
        assert.deepEqual(
          (await limiter.getLimits({ entityId: "key-1", resource: "gpt-4" })).map((l) => [
            l.name,
            l.capacity,
          ]),
          [["tpm", 15000], ["rpm", 100], ["tokens", 1_000_000], ["trial", 500]],
        );
        // The quotas are stored as quotas, not as token buckets.
        const stored = await limiter.getLimits({ entityId: "key-1", resource: "gpt-4" });
        assert.deepEqual(stored.slice(2).map((l) => l.toJSON()), [
          { name: "tokens", capacity: 1_000_000, reset: "month@Europe/Berlin" },
          { name: "trial", capacity: 500, resetAfter: "30d", soft: true },
        ]);
        const key1 = await limiter.getEntity("key-1");
        assert.deepEqual([key1?.parentId, key1?.cascade, key1?.metadata], [
          "proj-1",
          true,
          { owner: "ana" },
        ]);
        assert.equal((await limiter.getEntity("proj-1"))?.name, "Production");
        assert.equal((await limiter.getSystemDefaults())[0].capacity, 1000);
      });

      await t.step(
        "export, and the apply of the export changes nothing (also with --prune)",
        async () => {
          const out = join(dir, "export.yaml");
          await run(["limits", "export", "-o", out]);
          const text = await Deno.readTextFile(out);
          assert.match(text, /key-1:/);
          // Quotas are written back the way the file writes them.
          assert.match(text, /- \{ name: tokens, quota: 1000000, reset: month@Europe\/Berlin \}\n/);
          assert.match(text, /- \{ name: trial, quota: 500, resetAfter: 30d, soft: true \}\n/);
          assert.deepEqual((await plan(out)).steps, []);
          assert.deepEqual((await plan(out, "--prune")).steps, []);
          const result = await apply(out, ["--prune"]);
          assert.deepEqual(result.results, []);
          // The same text from stdout.
          assert.equal((await run(["limits", "export"])).out, text);
        },
      );

      await t.step("--prune removes what the file no longer names, limits with it", async () => {
        const pruned = await write("pruned.yaml", PRUNED);
        assert.doesNotMatch(PRUNED, /key-2|claude/);
        // Without --prune nothing is removed.
        assert.deepEqual((await plan(pruned)).steps, []);
        const result = await apply(pruned, ["--prune"]);
        assert.equal(result.failed, 0);
        assert.deepEqual(result.results.map((r) => r.op).sort(), [
          "deleteEntity",
          "deleteResourceDefaults",
        ]);
        assert.equal(await limiter.getEntity("key-2"), undefined);
        assert.deepEqual(await limiter.listStoredLimits({ entityId: "key-2" }), []);
        assert.deepEqual(await limiter.listResources(), ["gpt-4"]);
        const listed = await limiter.listEntities({ withCustomLimits: true });
        assert.deepEqual(listed.entities.map((e) => e.entityId), ["key-1", "proj-1"]);
        assert.deepEqual((await plan(pruned, "--prune")).steps, []);
      });

      await t.step(
        "a file with a cycle or an unknown key is refused with file:line, nothing written",
        async () => {
          const before = (await allEvents()).length;
          const exported = (await run(["limits", "export"])).out;
          const cycle = await write(
            "cycle.yaml",
            "entities:\n  a: { parent: b }\n  b: { parent: a }\n  c:\n    limits:\n      x: [{ name: rpm, rate: 1, per: minute }]\n",
          );
          const typo = await write(
            "typo.yaml",
            "entities:\n  key-9:\n    cascde: true\n    limits:\n      x: [{ name: rpm, rate: 1, per: minute }]\n",
          );
          for (const [file, line] of [[cycle, 2], [typo, 3]] as const) {
            for (const sub of ["plan", "apply"]) {
              const r = await cli([
                "limits",
                sub,
                "-f",
                file,
                ...(sub === "apply" ? ["--yes"] : []),
              ], env);
              assert.equal(r.code, 2, r.err);
              assert.match(r.err, new RegExp(`error: ${file.replace(/\./g, "\\.")}:${line}: `));
            }
          }
          assert.equal((await allEvents()).length, before);
          assert.equal((await run(["limits", "export"])).out, exported);
          assert.equal(await limiter.getEntity("c"), undefined);
          assert.equal(await limiter.getEntity("key-9"), undefined);
        },
      );

      await t.step(
        "a half-way failure: the rest is applied, a re-run after the fix finishes",
        async () => {
          // key-3 exists with another name: the file cannot rename it, that step fails.
          await limiter.createEntity({ entityId: "key-3", name: "Old" });
          const half = await write(
            "half.yaml",
            PRUNED + `  key-3:
    name: New
    limits:
      gpt-4:
        - { name: rpm, rate: 7, per: minute }
  key-4:
    parent: proj-1
    limits:
      gpt-4:
        - { name: rpm, rate: 8, per: minute }
`,
          );
          const result = await apply(half, [], 1);
          assert.equal(result.failed, 1, JSON.stringify(result));
          const failed = result.results.filter((r) => r.status !== "ok");
          assert.match(failed[0].subject, /key-3/);
          assert.equal(
            (await limiter.getLimits({ entityId: "key-4", resource: "gpt-4" }))[0].capacity,
            8,
          );
          assert.equal((await limiter.getEntity("key-4"))?.parentId, "proj-1");
          // The fix: the operator removes the old entity; the re-run does only what is left.
          await run(["entity", "delete", "key-3", "--yes"]);
          const rerun = await apply(half);
          assert.equal(rerun.failed, 0);
          assert.ok(rerun.results.every((r) => /key-3/.test(r.subject)), JSON.stringify(rerun));
          assert.equal((await limiter.getEntity("key-3"))?.name, "New");
          assert.equal(
            (await limiter.getLimits({ entityId: "key-3", resource: "gpt-4" }))[0].capacity,
            7,
          );
          assert.deepEqual((await plan(half)).steps, []);
        },
      );

      await t.step(
        "two apply processes at once: every stored limit is its newest event's after",
        async () => {
          const ids = ["c-1", "c-2", "c-3", "c-4", "c-5", "c-6"];
          const body = (rate: number) =>
            `system:\n  limits:\n    - { name: rpm, rate: ${rate}, per: minute }\n` +
            `resources:\n  gpt-4:\n    limits:\n      - { name: tpm, rate: ${
              rate * 10
            }, per: minute }\n` +
            "entities:\n" +
            ids.map((id) =>
              `  ${id}:\n    limits:\n      gpt-4:\n        - { name: rpm, rate: ${rate}, per: minute }\n` +
              `      "*":\n        - { name: rpd, rate: ${rate * 100}, per: day }\n`
            ).join("");
          await apply(await write("base.yaml", body(1)));
          for (let round = 0; round < 3; round++) {
            const a = await write(`a${round}.yaml`, body(10 + round));
            const b = await write(`b${round}.yaml`, body(20 + round));
            const [ra, rb] = await Promise.all([
              runCli(["limits", "apply", "-f", a, "--yes", "--principal", "proc-a"], env),
              runCli(["limits", "apply", "-f", b, "--yes", "--principal", "proc-b"], env),
            ]);
            assert.equal(ra.code, 0, ra.out + ra.err);
            assert.equal(rb.code, 0, rb.out + rb.err);
            // The newest event per key (events come newest first).
            const newest = new Map<string, AuditEvent>();
            for (const e of await allEvents()) {
              const key = e.scope.kind === "entity"
                ? `entity ${e.entityId} ${e.resource}`
                : e.scope.kind === "resource"
                ? `resource ${e.resource}`
                : "system";
              if (!newest.has(key) && /^(limits|defaults)\./.test(e.action)) newest.set(key, e);
            }
            const json = (ls: Limit[]) => ls.map((l) => l.toJSON());
            assert.deepEqual(json(await limiter.getSystemDefaults()), newest.get("system")?.after);
            assert.deepEqual(
              json(await limiter.getResourceDefaults({ resource: "gpt-4" })),
              newest.get("resource gpt-4")?.after,
            );
            for (const id of ids) {
              for (const resource of ["gpt-4", "*"]) {
                const stored = await limiter.getLimits({
                  entityId: id,
                  ...(resource === "*" ? {} : { resource }),
                });
                const event = newest.get(`entity ${id} ${resource}`);
                assert.deepEqual({ limits: json(stored) }, event?.after, `${id} ${resource}`);
              }
            }
          }
        },
      );

      await t.step(
        "defaults written at once by two limiters: the stored ones are the newest event's",
        async () => {
          // The race apply meets: each write reads, records its event, then writes. Without the
          // event chain on defaults items, the later event could lose to the earlier write.
          await using other = new RateLimiter({
            tableName,
            endpoint: ddb.endpoint,
            region: "us-east-1",
          });
          const newest = async (scope: "system" | "resource") =>
            (await limiter.getAuditEvents({
              limit: 50,
              ...(scope === "resource" ? { resource: "race" } : {}),
            }))
              .events.find((e) => e.action.startsWith(`defaults.${scope}.`));
          for (let i = 0; i < 25; i++) {
            await Promise.all([
              limiter.setSystemDefaults({ limits: [Limit.perMinute("rpm", 100 + i)] }),
              other.setSystemDefaults({ limits: [Limit.perMinute("rpm", 500 + i)] }),
              limiter.setResourceDefaults({
                resource: "race",
                limits: [Limit.perMinute("rpm", 100 + i)],
              }),
              i % 5 === 4
                ? other.deleteResourceDefaults({ resource: "race" })
                : other.setResourceDefaults({
                  resource: "race",
                  limits: [Limit.perMinute("rpm", 500 + i)],
                }),
            ]);
            const json = (ls: Limit[]) => ls.map((l) => l.toJSON());
            assert.deepEqual(
              json(await limiter.getSystemDefaults()),
              (await newest("system"))?.after,
              `round ${i}`,
            );
            const r = await newest("resource");
            const stored = json(await limiter.getResourceDefaults({ resource: "race" }));
            assert.deepEqual(
              r?.action === "defaults.resource.delete" ? [] : r?.after,
              stored,
              `round ${i}`,
            );
          }
        },
      );
    } finally {
      await limiter.close();
      await Deno.remove(dir, { recursive: true });
      await ddb.stop();
    }
  },
});
