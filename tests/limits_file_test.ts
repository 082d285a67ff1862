/**
 * Limits as code: the file's bad-input rules (each refused whole with file:line and the field),
 * and plan / apply / export / prune / idempotency / a half-way failure against the in-memory
 * `LimitsStore` (pure logic; the limiter's store is wired by `limiterStore`).
 */

import assert from "node:assert/strict";
import { Ajv } from "ajv";
import { parse } from "yaml";
import { Limit } from "../mod.ts";
import { cli } from "./_cli.ts";
import { createTestLimiter } from "../src/testing/mod.ts";
import {
  applyLimits,
  exportLimits,
  formatPlan,
  type LimiterAdmin,
  limiterStore,
  type LimitsFile,
  LimitsFileError,
  type LimitsStore,
  MemoryLimitsStore,
  parseLimitsFile,
  planJson,
  planLimits,
} from "../src/limits_file/mod.ts";

/** The problems of a file that must be refused, as `line field rule` strings. */
function refused(text: string): LimitsFileError {
  try {
    parseLimitsFile(text, "ops/limits.yaml");
  } catch (err) {
    assert.ok(err instanceof LimitsFileError, String(err));
    for (const line of err.message.split("\n")) assert.match(line, /^ops\/limits\.yaml:\d+: /);
    return err;
  }
  assert.fail(`accepted:\n${text}`);
}

function only(err: LimitsFileError, line: number, field: string, rule: RegExp): void {
  assert.equal(err.problems.length, 1, err.message);
  const [p] = err.problems;
  assert.equal(p.line, line, err.message);
  assert.equal(p.field, field, err.message);
  assert.match(p.rule, rule, err.message);
}

const GOOD = `# a whole file
version: 1
system:
  limits:
    - { name: rpm, rate: 1000, per: minute }
resources:
  gpt-4:
    limits:
      - { name: tpm, rate: 100000, per: minute, burst: 150000 }
entities:
  proj-1:
    name: Project one
    limits:
      "*": [{ name: rpd, rate: 50000, per: day }]
  key-1:
    parent: proj-1
    cascade: true
    limits:
      gpt-4:
        - { name: tpm, rate: 10000, per: minute, burst: 15000 }
        - { name: rpm, rate: 100, per: 60 }
  key-2:
`;

Deno.test("parse: a whole file", () => {
  const f = parseLimitsFile(GOOD);
  assert.ok(f.system?.[0].equals(Limit.perMinute("rpm", 1000)));
  assert.ok(
    f.resources.get("gpt-4")?.[0].equals(Limit.perMinute("tpm", 100_000, { burst: 150_000 })),
  );
  const key = f.entities.get("key-1")!;
  assert.equal(key.parentId, "proj-1");
  assert.equal(key.cascade, true);
  assert.deepEqual(key.limits.get("gpt-4")?.map((l) => l.toJSON()), [
    Limit.perMinute("tpm", 10_000, { burst: 15_000 }).toJSON(),
    Limit.perMinute("rpm", 100).toJSON(),
  ]);
  assert.equal(f.entities.get("proj-1")?.name, "Project one");
  assert.ok(f.entities.get("proj-1")?.limits.get("*")?.[0].equals(Limit.perDay("rpd", 50_000)));
  assert.deepEqual(f.entities.get("key-2"), { cascade: false, limits: new Map() });
  assert.equal(parseLimitsFile("").entities.size, 0);
});

Deno.test("parse: each bad-input rule is refused with file:line and the field", async (t) => {
  await t.step("an unknown key, at every level", () => {
    only(refused("system:\n  limits: []\n"), 2, "system.limits", /at least one/);
    only(refused("version: 1\nentitys: {}\n"), 2, "entitys", /unknown key.*entities/);
    only(refused("entities:\n  k:\n    cascde: true\n"), 3, "entities.k.cascde", /unknown key/);
    only(
      refused(
        "resources:\n  r:\n    limits:\n      - { name: a, rate: 1, per: minute, brust: 2 }\n",
      ),
      4,
      "resources.r.limits[0].brust",
      /unknown key/,
    );
  });
  await t.step("a duplicate entity (YAML duplicate keys)", () => {
    const err = refused("entities:\n  key-1: {}\n  key-2: {}\n  key-1: { cascade: true }\n");
    only(err, 4, "entities.key-1", /duplicate entity \(first at line 2\)/);
    only(
      refused(
        "entities:\n  k:\n    limits:\n      r: [{ name: a, rate: 1, per: minute }]\n      r: []\n",
      ),
      5,
      "entities.k.limits.r",
      /duplicate resource/,
    );
  });
  await t.step("a cycle of parents, an entity its own parent, a parent that is a child", () => {
    const cycle = refused("entities:\n  a: { parent: b }\n  b: { parent: a }\n");
    assert.equal(cycle.problems.length, 2);
    assert.deepEqual(cycle.problems.map((p) => [p.line, p.field]), [
      [2, "entities.a.parent"],
      [3, "entities.b.parent"],
    ]);
    assert.match(cycle.problems[0].rule, /cycle of parents: a -> b -> a/);
    only(refused("entities:\n  a:\n    parent: a\n"), 3, "entities.a.parent", /must differ/);
    only(
      refused("entities:\n  top: {}\n  mid: { parent: top }\n  leaf: { parent: mid }\n"),
      4,
      "entities.leaf.parent",
      /names mid, which is itself a child \(of top\); two levels at most/,
    );
  });
  await t.step("a limit that breaks its rule", () => {
    const lim = (l: string) =>
      `system:\n  limits:\n    - { name: a, rate: 1, per: minute }\n    - ${l}\n`;
    only(
      refused(lim("{ name: b, rate: 10, per: minute, burst: 5 }")),
      4,
      "system.limits[1].burst",
      /must be >= the rate \(10\)/,
    );
    only(refused(lim("{ name: b, rate: -1, per: minute }")), 4, "system.limits[1].rate", /> 0/);
    only(
      refused(lim("{ name: b, rate: 0.0001, per: minute }")),
      4,
      "system.limits[1].rate",
      /0\.001/,
    );
    only(refused(lim("{ name: 9b, rate: 1, per: minute }")), 4, "system.limits[1].name", /letter/);
    only(
      refused(lim("{ name: a, rate: 1, per: minute }")),
      4,
      "system.limits[1].name",
      /unique.*line 3/,
    );
    only(
      refused(lim("{ name: b, rate: 1, per: fortnight }")),
      4,
      "system.limits[1].per",
      /second, minute/,
    );
    only(refused(lim("{ name: b, rate: '5', per: minute }")), 4, "system.limits[1].rate", /number/);
    only(refused(lim("{ name: b, per: minute }")), 4, "system.limits[1].rate", /required/);
  });
  await t.step("bad ids, names and types", () => {
    only(refused("entities:\n  'bad id': {}\n"), 2, 'entities."bad id"', /letters, digits/);
    only(refused("resources:\n  '*': { limits: [] }\n"), 2, 'resources."*"', /letter/);
    only(refused("entities:\n  k: { cascade: 'yes' }\n"), 2, "entities.k.cascade", /true or false/);
    only(refused("entities:\n  k:\n    parent: 'x y'\n"), 3, "entities.k.parent", /letters/);
    only(refused("entities: [a, b]\n"), 1, "entities", /must be a mapping/);
  });
  await t.step("not YAML at all, and several problems at once", () => {
    const yaml = refused("entities:\n  k: { cascade: true\n");
    assert.equal(yaml.problems[0].field, "(yaml)");
    const many = refused("entities:\n  a: { cascde: true }\n  b: { parent: c d }\n");
    assert.deepEqual(many.problems.map((p) => p.line), [2, 3]);
    assert.equal(many.field, "entities.a.cascde");
  });
});

const QUOTAS = `system:
  limits:
    - { name: tokens, quota: 1000000, reset: "month@Europe/Berlin" }
    - { name: trial, quota: 500, resetAfter: 30d, soft: true }
    - { name: calls, quota: 50, resetAfter: 3600 }
    - name: images
      quota: 20
      reset: { every: week, weekday: tue, at: "06:00", timeZone: UTC }
    - { name: rpm, rate: 60, per: minute }
`;

Deno.test("quotas: parsed like the library's, refused with file:line, round-tripped", async (t) => {
  await t.step("parse: reset in text or as a mapping, resetAfter as a duration or seconds", () => {
    assert.deepEqual(file(QUOTAS).system?.map((l) => l.toJSON()), [
      Limit.quota("tokens", 1_000_000, { reset: "month@Europe/Berlin" }).toJSON(),
      Limit.quota("trial", 500, { resetAfter: "30d", soft: true }).toJSON(),
      { name: "calls", capacity: 50, resetAfter: "1h" },
      { name: "images", capacity: 20, reset: "week:tue 06:00@UTC" },
      Limit.perMinute("rpm", 60).toJSON(),
    ]);
  });
  await t.step("bad quotas: the field, its line and the rule", () => {
    const lim = (l: string) =>
      `system:\n  limits:\n    - { name: a, rate: 1, per: minute }\n    - ${l}\n`;
    const bad: [string, string, RegExp][] = [
      ["{ name: q, quota: 5 }", "reset", /needs a reset .* or resetAfter/],
      ["{ name: q, quota: 5, reset: day@UTC, resetAfter: 1d }", "resetAfter", /not both/],
      ["{ name: q, quota: 5, reset: month@Mars/Base }", "reset", /IANA time zone/],
      ["{ name: q, quota: 5, reset: fortnight@UTC }", "reset", /must read like/],
      ["{ name: q, quota: 5, resetAfter: 400d }", "resetAfter", /366 days/],
      ["{ name: q, quota: 5, resetAfter: -3 }", "resetAfter", /above 0/],
      ["{ name: q, quota: 0, reset: day@UTC }", "quota", /> 0/],
      ["{ name: q, quota: 0.0001, reset: day@UTC }", "quota", /0\.001/],
      ["{ name: q, quota: 5, reset: day@UTC, soft: 'yes' }", "soft", /boolean/],
      ["{ name: q, quota: 5, reset: day@UTC, per: day }", "per", /not a field of a quota/],
      ["{ name: q, rate: 5, per: day, reset: day@UTC }", "reset", /only a quota resets/],
      ["{ name: 9q, quota: 5, reset: day@UTC }", "name", /letter/],
      [
        "{ name: q, quota: 5, reset: { every: week, weekday: tues, timeZone: UTC } }",
        "reset.weekday",
        /mon, tue/,
      ],
      [
        "{ name: q, quota: 5, reset: { every: day, timeZone: UTC, tz: x } }",
        "reset.tz",
        /not a field/,
      ],
    ];
    for (const [limit, field, rule] of bad) {
      only(refused(lim(limit)), 4, `system.limits[1].${field}`, rule);
    }
    // A quota's fields on their own lines: the line of the field at fault.
    only(
      refused("system:\n  limits:\n    - name: q\n      quota: 5\n      resetAfter: 1y\n"),
      5,
      "system.limits[0].resetAfter",
      /duration/,
    );
  });
  await t.step("plan shows quotas; apply; the export writes them back the same way", async () => {
    const store = new MemoryLimitsStore();
    const text = formatPlan(await planLimits(file(QUOTAS), store));
    assert.match(text, /^ {4}\+ limit tokens: 1000000\/month@Europe\/Berlin$/m);
    assert.match(text, /^ {4}\+ limit trial: 500\/after:30d soft$/m);
    assert.match(text, /^ {4}\+ limit images: 20\/week:tue 06:00@UTC$/m);
    assert.equal((await applyLimits(file(QUOTAS), store)).failed, 0);
    assert.deepEqual((await planLimits(file(QUOTAS), store, { prune: true })).steps, []);
    const exported = await exportLimits(store);
    assert.match(
      exported,
      /^ {4}- \{ name: tokens, quota: 1000000, reset: month@Europe\/Berlin \}$/m,
    );
    assert.match(exported, /^ {4}- \{ name: trial, quota: 500, resetAfter: 30d, soft: true \}$/m);
    assert.match(exported, /^ {4}- \{ name: calls, quota: 50, resetAfter: 1h \}$/m);
    assert.deepEqual((await planLimits(file(exported), store, { prune: true })).steps, []);
    const copy = new MemoryLimitsStore();
    assert.equal((await applyLimits(file(exported), copy)).failed, 0);
    assert.equal(await exportLimits(copy), exported);
    // A changed reset is a change of that limit, shown before and after.
    const changed = QUOTAS.replace("month@Europe/Berlin", "month:last@Asia/Kolkata");
    const plan = await planLimits(file(changed), store);
    assert.deepEqual(planJson(plan).counts, { add: 0, change: 1, remove: 0 });
    assert.match(
      formatPlan(plan),
      /~ limit tokens: 1000000\/month@Europe\/Berlin -> 1000000\/month:last@Asia\/Kolkata/,
    );
  });
});

/** A store whose writes fail while `failing` names their entity. */
class FlakyStore extends MemoryLimitsStore {
  failing = new Set<string>();
  override setLimits(id: string, r: string | undefined, l: Limit[]): Promise<void> {
    if (this.failing.has(id)) return Promise.reject(new Error(`outage writing ${id}`));
    return super.setLimits(id, r, l);
  }
  override createEntity(o: Parameters<LimitsStore["createEntity"]>[0]): Promise<void> {
    if (this.failing.has(o.entityId)) {
      return Promise.reject(new Error(`outage writing ${o.entityId}`));
    }
    return super.createEntity(o);
  }
}

const file = (text: string): LimitsFile => parseLimitsFile(text);

Deno.test("plan, apply, idempotency, export round trip", async () => {
  const store = new MemoryLimitsStore();
  const f = file(GOOD);
  const plan = await planLimits(f, store);
  const ops = plan.steps.map((s) => `${s.op} ${s.subject}`);
  // Parents before children; limits after their entity.
  assert.ok(
    ops.indexOf("createEntity entity proj-1") < ops.indexOf("createEntity entity key-1"),
    ops.join("\n"),
  );
  assert.ok(
    ops.indexOf("createEntity entity key-1") <
      ops.indexOf("setLimits entity key-1 limits on gpt-4"),
  );
  assert.deepEqual(planJson(plan).counts, { add: 11, change: 0, remove: 0 });
  const text = formatPlan(plan);
  assert.match(
    text,
    /^\+ entity key-1 limits on gpt-4\n {4}\+ limit tpm: 10000\/minute burst 15000$/m,
  );
  assert.match(text, /Plan: 11 to add, 0 to change, 0 to remove\./);
  const result = await applyLimits(f, store);
  assert.equal(result.failed, 0);
  assert.equal(store.entities.get("key-1")?.parentId, "proj-1");
  assert.equal(store.entities.get("key-1")?.cascade, true);
  assert.equal(store.limits.get("key-1")?.get("gpt-4")?.length, 2);
  // A second apply changes nothing.
  const writes = store.writes;
  assert.deepEqual((await planLimits(f, store)).steps, []);
  assert.equal((await applyLimits(f, store)).results.length, 0);
  assert.equal(store.writes, writes);
  assert.equal(
    formatPlan(await planLimits(f, store, { prune: true })),
    "No changes: the table matches the file.\n",
  );
  // The export applies as a no-op, here and on an empty table it rebuilds the same state.
  const exported = await exportLimits(store);
  assert.deepEqual((await planLimits(file(exported), store, { prune: true })).steps, []);
  const copy = new MemoryLimitsStore();
  assert.equal((await applyLimits(file(exported), copy)).failed, 0);
  assert.equal(await exportLimits(copy), exported);
});

Deno.test("changes: before and after; without --prune nothing unnamed is removed", async () => {
  const store = new MemoryLimitsStore();
  await applyLimits(file(GOOD), store);
  await store.createEntity({ entityId: "stray" });
  const next = file(
    GOOD.replace("rate: 10000, per: minute, burst: 15000", "rate: 20000, per: minute")
      .replace("cascade: true", "cascade: false").replace(/ {4}limits:\n {6}"\*".*\n/, ""),
  );
  const plan = await planLimits(next, store);
  const changes = plan.steps.flatMap((s) => s.changes.map((c) => ({ s: s.subject, ...c })));
  assert.deepEqual(changes, [
    { s: "entity key-1", action: "change", what: "cascade", before: true, after: false },
    {
      s: "entity key-1 limits on gpt-4",
      action: "change",
      what: "limit tpm",
      before: { name: "tpm", rate: 10000, per: "minute", burst: 15000 },
      after: { name: "tpm", rate: 20000, per: "minute" },
    },
  ]);
  const pruned = await planLimits(next, store, { prune: true });
  const removed = pruned.steps.filter((s) => s.changes.some((c) => c.action === "remove"));
  assert.deepEqual(removed.map((s) => `${s.op} ${s.subject}`), [
    "deleteLimits entity proj-1 limits (entity-wide)",
    "deleteEntity entity stray",
  ]);
  assert.match(formatPlan(pruned), /^- entity stray$/m);
  assert.equal((await applyLimits(next, store, { prune: true })).failed, 0);
  assert.equal(store.entities.has("stray"), false);
  assert.equal(store.limits.get("proj-1")?.has("*"), false);
  assert.deepEqual((await planLimits(next, store, { prune: true })).steps, []);
});

Deno.test("one limit dropped from a set: kept without --prune, removed with it", async () => {
  const store = new MemoryLimitsStore();
  await store.setSystemDefaults([Limit.perMinute("rpm", 10), Limit.perMinute("tpm", 99)]);
  const f = file("system:\n  limits: [{ name: rpm, rate: 20, per: minute }]\n");
  await applyLimits(f, store);
  assert.deepEqual(store.system.map((l) => `${l.name}:${l.refillAmount}`), ["rpm:20", "tpm:99"]);
  await applyLimits(f, store, { prune: true });
  assert.deepEqual(store.system.map((l) => `${l.name}:${l.refillAmount}`), ["rpm:20"]);
});

Deno.test("moves: a parent becomes a child after its child leaves; pruned children go first", async () => {
  const store = new MemoryLimitsStore();
  await applyLimits(
    file("entities:\n  a: {}\n  b: { parent: a }\n  c: {}\n  d: { parent: c }\n"),
    store,
  );
  // a becomes a child of c; b leaves a for c; d is pruned before c? no: c stays, d stays.
  const f = file(
    "entities:\n  a: { parent: c }\n  b: { parent: c }\n  c: {}\n  d: { parent: c }\n",
  );
  const r = await applyLimits(f, store);
  assert.equal(r.failed, 0, r.results.map((x) => x.error?.message).join("\n"));
  assert.equal(store.entities.get("a")?.parentId, "c");
  // Prune a parent and its child: the child is deleted first.
  const r2 = await applyLimits(file("entities:\n  x: {}\n"), store, { prune: true });
  assert.equal(r2.failed, 0, r2.results.map((x) => x.error?.message).join("\n"));
  assert.deepEqual([...store.entities.keys()], ["x"]);
  // The table's shape is checked too: a parent that the table keeps as a child.
  await applyLimits(file("entities:\n  p: {}\n  q: { parent: p }\n"), store);
  await assert.rejects(
    () => planLimits(file("entities:\n  n:\n    parent: q\n"), store),
    (e: unknown) =>
      e instanceof LimitsFileError &&
      /:3: entities\.n\.parent: "q" \(names q, a child of p/.test(e.message),
  );
  await assert.rejects(
    () => planLimits(file("entities:\n  n: { parent: nobody }\n"), store),
    /names no entity of the file or the table/,
  );
  await assert.rejects(
    () => planLimits(file("entities:\n  q: { parent: p }\n"), store, { prune: true }),
    /--prune would delete it/,
  );
});

Deno.test("a half-way failure is reported per item; a re-run finishes without doubling", async () => {
  const store = new FlakyStore();
  store.failing.add("proj-1");
  const f = file(GOOD);
  const r = await applyLimits(f, store);
  const by = Object.fromEntries(r.results.map((x) => [`${x.op} ${x.subject}`, x]));
  assert.equal(by["createEntity entity proj-1"].status, "failed");
  assert.match(by["createEntity entity proj-1"].error!.message, /outage writing proj-1/);
  assert.equal(by["createEntity entity key-1"].status, "skipped"); // its parent failed
  assert.equal(by["setLimits entity key-1 limits on gpt-4"].status, "skipped");
  assert.equal(by["createEntity entity key-2"].status, "ok");
  assert.equal(by["setSystemDefaults system defaults"].status, "ok");
  assert.equal(r.failed, 4);
  store.failing.clear();
  const again = await planLimits(f, store);
  assert.deepEqual(again.steps.map((s) => `${s.op} ${s.subject}`), [
    "createEntity entity proj-1",
    "createEntity entity key-1",
    "setLimits entity key-1 limits on gpt-4",
    "setLimits entity proj-1 limits (entity-wide)",
  ]);
  assert.equal((await applyLimits(f, store)).failed, 0);
  assert.equal(store.system.length, 1);
  assert.equal(store.limits.get("key-1")?.get("gpt-4")?.length, 2);
  assert.deepEqual((await planLimits(f, store)).steps, []);
});

Deno.test("a name or metadata the store cannot change fails that item only", async () => {
  const store = new MemoryLimitsStore();
  await store.createEntity({ entityId: "k", name: "Old" });
  const r = await applyLimits(file("entities:\n  k:\n    name: New\n    cascade: true\n"), store);
  assert.deepEqual(r.results.map((x) => [x.op, x.status]), [["setCascade", "ok"], [
    "unsupported",
    "failed",
  ]]);
  assert.match(
    r.results[1].error!.message,
    /entities\.k\.name: "New" \(the name of an existing entity/,
  );
  assert.equal(store.entities.get("k")?.cascade, true);
});

Deno.test("CLI: a bad file is refused before connecting, one line per problem with file:line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/limits.yaml`;
    await Deno.writeTextFile(path, "entities:\n  a: { parent: b }\n  b: { parent: a }\n  a: {}\n");
    // No endpoint and an unused table name: nothing is reached, the file is refused first.
    for (const sub of ["plan", "apply"]) {
      const r = await cli(["limits", sub, "-f", path, "--table-name", "nowhere"]);
      assert.equal(r.code, 2, r.err);
      assert.equal(r.out, "");
      assert.deepEqual(r.err.trimEnd().split("\n"), [
        `error: ${path}:2: entities.a.parent: "b" (makes a cycle of parents: a -> b -> a)`,
        `error: ${path}:3: entities.b.parent: "a" (makes a cycle of parents: b -> a -> b)`,
        `error: ${path}:4: entities.a: "a" (duplicate entity (first at line 2))`,
      ]);
    }
    const j = await cli(["limits", "plan", "-f", path, "--table-name", "t", "--json"]);
    assert.equal(j.code, 2);
    const { error } = JSON.parse(j.out);
    assert.equal(error.type, "LimitsFileError");
    assert.equal(error.field, "entities.a.parent");
    assert.deepEqual(error.problems.map((p: { line: number }) => p.line), [2, 3, 4]);
    const missing = await cli(["limits", "plan", "-f", `${dir}/none.yaml`, "--table-name", "t"]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /^error: Cannot read .*none\.yaml/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the JSON Schema in docs/ and the parser agree", async () => {
  const schema = JSON.parse(
    await Deno.readTextFile(new URL("../docs/limits-file.schema.json", import.meta.url)),
  );
  const validate = new Ajv({ allErrors: true }).compile(schema);
  const parses = (text: string) => {
    try {
      parseLimitsFile(text);
      return true;
    } catch (err) {
      if (err instanceof LimitsFileError) return false;
      throw err;
    }
  };
  const lim = "{ name: rpm, rate: 100, per: minute }";
  const good = [
    GOOD,
    "",
    `version: 1\nsystem:\n  limits: [${lim}]\n`,
    `entities:\n  "k:1@x": { metadata: { team: a }, limits: { "*": [${lim}], "a/b": [${lim}] } }\n`,
    `resources:\n  gpt-4:\n    limits: [{ name: t, rate: 0.5, per: 30, burst: 1.5 }]\n`,
    QUOTAS,
    `system:\n  limits: [{ name: q, quota: 1, reset: "month:last 23:30@Asia/Kolkata" }]\n`,
    `system:\n  limits: [{ name: q, quota: 1, reset: { every: month, day: last, timeZone: UTC } }]\n`,
    `system:\n  limits: [{ name: q, quota: 1, resetAfter: 500ms, soft: false }]\n`,
  ];
  const bad = [
    "version: 2\n",
    "entitys: {}\n",
    "system: {}\n",
    "system:\n  limits: []\n",
    `system:\n  limits: [{ name: rpm, rate: 100 }]\n`,
    `system:\n  limits: [{ name: rpm, rate: 100, per: week }]\n`,
    `system:\n  limits: [{ name: rpm, rate: 0, per: minute }]\n`,
    `system:\n  limits: [{ name: 1rpm, rate: 1, per: minute }]\n`,
    `system:\n  limits: [{ name: rpm, rate: 1, per: minute, burst: "2" }]\n`,
    `resources:\n  "*": { limits: [${lim}] }\n`,
    `resources:\n  r: { limits: [${lim}], extra: 1 }\n`,
    `entities:\n  "-k": {}\n`,
    `entities:\n  k: { cascade: 1 }\n`,
    `entities:\n  k: { parent: "a b" }\n`,
    `entities:\n  k: { limits: { "*": [] } }\n`,
    `entities:\n  k: { metadata: { a: 1 } }\n`,
    `entities:\n  k: { owner: me }\n`,
    `system:\n  limits: [{ name: q, quota: 5 }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, reset: day@UTC, resetAfter: 1d }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, reset: day@UTC, rate: 5 }]\n`,
    `system:\n  limits: [{ name: q, rate: 5, per: day, reset: day@UTC }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, reset: fortnight@UTC }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, resetAfter: 30 days }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, resetAfter: 31622401 }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, reset: { every: year, timeZone: UTC } }]\n`,
    `system:\n  limits: [{ name: q, quota: 5, reset: { every: day } }]\n`,
  ];
  for (const text of good) {
    assert.ok(
      validate(parse(text)),
      `schema refuses:\n${text}\n${JSON.stringify(validate.errors)}`,
    );
    assert.ok(parses(text), `parser refuses:\n${text}`);
  }
  for (const text of bad) {
    assert.ok(!validate(parse(text)), `schema accepts:\n${text}`);
    assert.ok(!parses(text), `parser accepts:\n${text}`);
  }
  // What only the parser can see: rules across fields and the file, and exact amounts.
  for (
    const text of [
      `system:\n  limits: [{ name: a, rate: 10, per: minute, burst: 5 }]\n`,
      `system:\n  limits: [{ name: a, rate: 0.0001, per: minute }]\n`,
      `system:\n  limits: [${lim}, ${lim}]\n`,
      "entities:\n  a: { parent: b }\n  b: { parent: a }\n",
      `system:\n  limits: [{ name: q, quota: 5, reset: month@Mars/Base }]\n`,
      `system:\n  limits: [{ name: q, quota: 5, resetAfter: 0.0001 }]\n`,
    ]
  ) {
    assert.ok(validate(parse(text)), text);
    assert.ok(!parses(text), text);
  }
});

Deno.test("limiterStore over a RateLimiter: every entity page, parents, stored limits, deleteEntity", async () => {
  const limiter = createTestLimiter();
  const store = limiterStore(limiter);
  const rpm = [Limit.perMinute("rpm", 7)];
  // More entities than one listEntities page (100): the store reads every page.
  for (let i = 0; i < 130; i++) {
    await store.createEntity({ entityId: `k-${String(i).padStart(3, "0")}` });
  }
  await store.createEntity({ entityId: "proj" });
  const all = await store.listEntities();
  assert.equal(all.length, 131);
  assert.equal(new Set(all.map((e) => e.entityId)).size, 131);
  await store.setParent("k-001", "proj");
  await store.setCascade("k-001", true);
  const moved = await limiter.getEntity("k-001");
  assert.deepEqual([moved?.parentId, moved?.cascade], ["proj", true]);
  await store.setParent("k-001", undefined);
  assert.equal((await limiter.getEntity("k-001"))?.parentId, undefined);
  await store.setSystemDefaults(rpm);
  await store.setResourceDefaults("gpt", rpm);
  assert.deepEqual(await store.listResources(), ["gpt"]);
  assert.equal((await store.getResourceDefaults("gpt"))[0].capacity, 7);
  await store.setLimits("k-002", undefined, rpm);
  await store.setLimits("k-002", "gpt", rpm);
  assert.deepEqual((await store.listStoredLimits("k-002")).map((s) => s.resource), [
    undefined,
    "gpt",
  ]);
  await store.deleteLimits("k-002", "gpt");
  assert.deepEqual((await store.listStoredLimits("k-002")).map((s) => s.resource), [undefined]);
  // Deleting the entity deletes its stored limits with it.
  await store.deleteEntity("k-002");
  assert.deepEqual(await store.listStoredLimits("k-002"), []);
  await store.deleteResourceDefaults("gpt");
  await store.deleteSystemDefaults();
  assert.deepEqual(await store.getSystemDefaults(), []);
  assert.deepEqual(await store.listResources(), []);
  await limiter.close();
  // A JavaScript caller's object without every method is refused by name.
  const other = createTestLimiter();
  const without = Object.fromEntries(
    (["setSystemDefaults", "getSystemDefaults", "listEntities"] as const).map((m) => [m, other[m]]),
  );
  assert.throws(
    () => limiterStore(without as unknown as LimiterAdmin),
    /limiterStore: the limiter has no .*setParent/,
  );
});
