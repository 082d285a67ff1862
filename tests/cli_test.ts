/**
 * The CLI in-process (`run(argv, io)`): the limit syntax, usage errors and exit codes, help,
 * cfn-template, lambda-export, and the entity, limit, available and usage commands against
 * DynamoDB Local, checking what they wrote through the library.
 */

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Limit, RateLimiter } from "../mod.ts";
import { aggregatorCodeSha256, buildAggregatorZip } from "../src/aggregator/bundle.ts";
import { TEMPLATE_YAML } from "../src/infra/template.ts";
import { VERSION } from "../cli/io.ts";
import { formatLimit, parseLimitSpec, UsageError } from "../cli/limits.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

Deno.test("parseLimitSpec reads name:rate[/unit][:burst]", () => {
  const tpm = parseLimitSpec("tpm:10000/min:15000");
  assert.deepEqual(
    [tpm.name, tpm.refillAmount, tpm.refillPeriodSeconds, tpm.capacity],
    ["tpm", 10000, 60, 15000],
  );
  const rps = parseLimitSpec("rps:5/sec");
  assert.deepEqual([rps.refillAmount, rps.refillPeriodSeconds, rps.capacity], [5, 1, 5]);
  assert.equal(parseLimitSpec("rph:1000/hour").refillPeriodSeconds, 3600);
  assert.equal(parseLimitSpec("rpd:1_000_000/day").refillAmount, 1_000_000);
  assert.equal(parseLimitSpec("rpm:100").refillPeriodSeconds, 60, "period defaults to /min");
  assert.equal(parseLimitSpec("x:0.5/s").refillAmount, 0.5);
  for (const spec of ["tpm:10000/min:15000", "rpm:100/min", "rps:5/sec", "d:7/day", "h:2/hour:3"]) {
    assert.equal(formatLimit(parseLimitSpec(spec)), spec);
  }
  assert.equal(
    formatLimit(Limit.custom({ name: "w", capacity: 9, refillAmount: 9, refillPeriodSeconds: 7 })),
    "w:9/7s",
  );
});

Deno.test("parseLimitSpec errors name the value and the rule", () => {
  const cases: [string, RegExp][] = [
    ["tpm", /Invalid limit "tpm": expected name:rate\[\/sec\|\/min\|\/hour\|\/day\]\[:burst\]/],
    ["tpm:1:2:3", /expected name:rate/],
    ["9x:100", /name "9x" must be a letter/],
    ["tpm:abc", /rate "abc" must be a number > 0/],
    ["tpm:0", /rate "0" must be a number > 0/],
    ["tpm:-5", /rate "-5" must be a number > 0/],
    ["tpm:100/week", /period "week" must be one of sec, min, hour, day/],
    ["tpm:100/min/sec", /rate "100\/min\/sec" has more than one "\/"/],
    ["tpm:100/min:50", /burst "50" must be a number >= the rate \(100\)/],
    ["tpm:100/min:lots", /burst "lots" must be a number >= the rate/],
    ["tpm:0.0001", /Invalid limit "tpm:0.0001": .*must be a multiple of 0.001/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(
      () => parseLimitSpec(spec),
      (e: Error) => e instanceof UsageError && message.test(e.message),
      spec,
    );
  }
});

Deno.test("exit codes: 0 help and version, 2 bad usage, one-line errors", async () => {
  const help = await cli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /Usage: zae-limiter/);
  assert.match(help.out, /Examples:/);
  for (
    const sub of [
      ["deploy"],
      ["delete"],
      ["status"],
      ["entity", "create"],
      ["limits", "set"],
      ["local", "up"],
      ["available"],
      ["usage", "list"],
    ]
  ) {
    const h = await cli([...sub, "--help"]);
    assert.equal(h.code, 0, sub.join(" "));
    assert.match(h.out, /Examples:\n {2}\$ zae-limiter /, sub.join(" "));
  }
  const version = await cli(["version", "--json"]);
  assert.equal(version.code, 0);
  const denoJson = JSON.parse(readFileSync(new URL("../deno.json", import.meta.url), "utf8"));
  assert.deepEqual(JSON.parse(version.out), { version: denoJson.version });
  assert.equal(VERSION, denoJson.version);

  const unknown = await cli(["bogus"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /^error: unknown command 'bogus'/);
  const badLimit = await cli(["limits", "set", "k", "--limit", "tpm:abc", "--table-name", "t_1"]);
  assert.equal(badLimit.code, 2);
  assert.match(badLimit.err, /Invalid limit "tpm:abc": rate "abc" must be a number > 0/);
  assert.equal(badLimit.err.trim().split("\n").length, 1);
  const noTable = await cli(["entity", "get", "k"]);
  assert.equal(noTable.code, 2);
  assert.equal(noTable.err, "error: Missing --table-name (or set ZAE_LIMITER_TABLE)\n");
  const badNumber = await cli(["deploy", "--table-name", "t_1", "--lambda-memory", "lots"]);
  assert.equal(badNumber.code, 2);
  assert.match(badNumber.err, /"lots" is not a whole number/);
  const badSettings = await cli(["deploy", "--table-name", "t_1", "--lambda-memory", "64"]);
  assert.equal(badSettings.code, 2);
  assert.match(badSettings.err, /Invalid lambdaMemoryMb: 64 \(must be a whole number from 128/);
  const noConfirm = await cli(["delete", "--table-name", "t_1"]);
  assert.equal(noConfirm.code, 2);
  assert.match(noConfirm.err, /Refusing to delete without confirmation: add --yes/);
  const declined = await cli(["delete", "--table-name", "t_1"], {}, false);
  assert.equal(declined.code, 0);
  assert.equal(declined.out, "Not deleted.\n");
  const badEngine = await cli(["local", "up", "--engine", "podman"]);
  assert.equal(badEngine.code, 2);
  assert.match(badEngine.err, /'podman' is invalid. Allowed choices are auto, docker, java/);
});

Deno.test("a failure exits 1 with one line; --debug adds the stack", async () => {
  const env = { AWS_ENDPOINT_URL_DYNAMODB: "http://127.0.0.1:9" };
  const r = await cli(["entity", "get", "k", "--table-name", "t_1"], env);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /^error: DynamoDB is not reachable at http:\/\/127\.0\.0\.1:9 during entity get \(connection refused\)/,
  );
  assert.equal(r.err.trim().split("\n").length, 1);
  const d = await cli(["entity", "get", "k", "--table-name", "t_1", "--debug"], env);
  assert.equal(d.code, 1);
  assert.ok(d.err.trim().split("\n").length > 1);
  assert.match(d.err, /\n\s+at /);
});

Deno.test("cfn-template and lambda-export", async () => {
  const printed = await cli(["cfn-template"]);
  assert.equal(printed.code, 0);
  assert.equal(printed.out, TEMPLATE_YAML);
  const dir = mkdtempSync(join(tmpdir(), "zl-cli-"));
  try {
    const file = join(dir, "t.yaml");
    const written = await cli(["cfn-template", "-o", file]);
    assert.equal(written.code, 0);
    assert.equal(readFileSync(file, "utf8"), TEMPLATE_YAML);
    const zipFile = join(dir, "agg.zip");
    const exported = await cli(["lambda-export", "-o", zipFile, "--json"]);
    assert.equal(exported.code, 0);
    assert.deepEqual(new Uint8Array(readFileSync(zipFile)), buildAggregatorZip());
    assert.deepEqual(JSON.parse(exported.out), {
      file: zipFile,
      bytes: buildAggregatorZip().length,
      codeSha256: aggregatorCodeSha256(),
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name: "entity, limits, available and usage commands on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("cli");
    const env = { AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint, ZAE_LIMITER_TABLE: tableName };
    const limiter = new RateLimiter({ tableName, client });
    try {
      await t.step("entity create (with --create-table), get, children", async () => {
        const p = await cli([
          "entity",
          "create",
          "proj-1",
          "--name",
          "Production",
          "--create-table",
        ], env);
        assert.deepEqual(p, { code: 0, out: "Created entity proj-1.\n", err: "" });
        const k = await cli([
          "entity",
          "create",
          "key-1",
          "--parent",
          "proj-1",
          "--cascade",
          "--meta",
          "owner=alice",
          "--meta",
          "tier=gold",
          "--json",
        ], env);
        assert.equal(k.code, 0, k.err);
        assert.equal(JSON.parse(k.out).parentId, "proj-1");
        const stored = await limiter.getEntity("key-1");
        assert.equal(stored?.parentId, "proj-1");
        assert.equal(stored?.cascade, true);
        assert.deepEqual(stored?.metadata, { owner: "alice", tier: "gold" });
        assert.equal((await limiter.getEntity("proj-1"))?.name, "Production");
        const got = await cli(["entity", "get", "key-1"], env);
        assert.equal(got.code, 0);
        assert.match(got.out, /entityId: {2}key-1\nparent: {4}proj-1\ncascade: {3}true/);
        const children = await cli(["entity", "children", "proj-1", "--json"], env);
        assert.deepEqual(JSON.parse(children.out).map((e: { entityId: string }) => e.entityId), [
          "key-1",
        ]);
        const dup = await cli(["entity", "create", "proj-1"], env);
        assert.equal(dup.code, 1);
        assert.match(dup.err, /^error: Entity already exists: "proj-1"$/m);
        const missing = await cli(["entity", "get", "nope"], env);
        assert.deepEqual(missing, { code: 1, out: "", err: 'error: no such entity "nope"\n' });
        const bad = await cli(["entity", "create", "bad#id"], env);
        assert.equal(bad.code, 2);
        assert.match(bad.err, /Invalid entityId: "bad#id"/);
      });

      await t.step("limits set, get, delete", async () => {
        const set = await cli([
          "limits",
          "set",
          "key-1",
          "--resource",
          "gpt-4",
          "--limit",
          "tpm:10000/min:15000",
          "--limit",
          "rpm:100/min",
        ], env);
        assert.equal(set.code, 0, set.err);
        assert.equal(set.out, "Stored tpm:10000/min:15000, rpm:100/min for key-1 on gpt-4.\n");
        const stored = await limiter.getLimits({ entityId: "key-1", resource: "gpt-4" });
        assert.deepEqual(
          stored.map((l) => [l.name, l.capacity, l.refillAmount, l.refillPeriodSeconds]),
          [["tpm", 15000, 10000, 60], ["rpm", 100, 100, 60]],
        );
        const wide = await cli(["limits", "set", "proj-1", "--limit", "rpd:50000/day"], env);
        assert.equal(wide.code, 0);
        assert.equal(
          (await limiter.getLimits({ entityId: "proj-1" }))[0].refillPeriodSeconds,
          86400,
        );
        const get = await cli(["limits", "get", "key-1", "--resource", "gpt-4"], env);
        assert.equal(get.out, "tpm:10000/min:15000\nrpm:100/min\n");
        const twice = await cli(
          ["limits", "set", "key-1", "--limit", "a:1", "--limit", "a:2"],
          env,
        );
        assert.equal(twice.code, 2);
        assert.match(twice.err, /limit "a" is given twice/);
        const none = await cli(["limits", "set", "key-1"], env);
        assert.equal(none.code, 2);
        assert.match(none.err, /required option '--limit <spec>' not specified/);
      });

      await t.step("available, with given and with stored limits", async () => {
        await limiter.acquire({
          entityId: "key-1",
          resource: "gpt-4",
          limits: [],
          useStoredLimits: true,
          consume: { tpm: 5000, rpm: 1 },
          cascade: false,
        });
        const stored = await cli([
          "available",
          "--entity",
          "key-1",
          "--resource",
          "gpt-4",
          "--stored",
          "--json",
        ], env);
        assert.equal(stored.code, 0, stored.err);
        const av = JSON.parse(stored.out).available;
        assert.ok(av.tpm >= 10000 && av.tpm < 10100, JSON.stringify(av));
        assert.ok(av.rpm >= 99 && av.rpm <= 100, JSON.stringify(av));
        const given = await cli([
          "available",
          "--entity",
          "solo",
          "--resource",
          "gpt-4",
          "--limit",
          "rps:5/sec",
        ], env);
        assert.deepEqual(given, { code: 0, out: "rps: 5\n", err: "" });
        const neither = await cli(["available", "--entity", "solo", "--resource", "gpt-4"], env);
        assert.equal(neither.code, 2);
        assert.match(neither.err, /Give at least one --limit, or --stored/);
      });

      await t.step("aggregate, then usage list (and --plot) and summary", async () => {
        const agg = await cli(["aggregate", "--json"], env);
        assert.equal(agg.code, 0, agg.err);
        assert.ok(JSON.parse(agg.out).records >= 1, agg.out);
        const list = await cli([
          "usage",
          "list",
          "--entity",
          "key-1",
          "--resource",
          "gpt-4",
          "--json",
        ], env);
        assert.equal(list.code, 0, list.err);
        const snaps = JSON.parse(list.out);
        assert.equal(snaps.length, 1, list.out);
        assert.equal(snaps[0].consumed.tpm, 5000);
        assert.equal(snaps[0].requests, 1);
        const plot = await cli(["usage", "list", "--entity", "key-1", "--plot", "tpm"], env);
        assert.equal(plot.code, 0, plot.err);
        assert.match(plot.out, /^tpm per hour\n\d{4}-\d\d-\d\dT\d\d:00:00Z {2}█+\s+5000\n$/);
        const summary = await cli(["usage", "summary", "--entity", "key-1", "--json"], env);
        assert.equal(JSON.parse(summary.out).total.tpm, 5000);
      });

      await t.step("limits delete and entity delete", async () => {
        const del = await cli(["limits", "delete", "key-1", "--resource", "gpt-4"], env);
        assert.equal(del.code, 0);
        assert.deepEqual(await limiter.getLimits({ entityId: "key-1", resource: "gpt-4" }), []);
        const parent = await cli(["entity", "delete", "proj-1", "--yes"], env);
        assert.equal(parent.code, 2);
        assert.match(parent.err, /has 1 children \(key-1\); delete them first/);
        // destructive: with nobody to ask and no --yes it refuses, and a "no" keeps the entity
        const unasked = await cli(["entity", "delete", "key-1"], env);
        assert.equal(unasked.code, 2);
        assert.match(unasked.err, /Refusing to delete without confirmation: add --yes/);
        assert.equal((await cli(["entity", "delete", "key-1"], env, false)).code, 0);
        assert.ok(await limiter.getEntity("key-1"));
        assert.equal((await cli(["entity", "delete", "key-1"], env, true)).code, 0);
        assert.equal(await limiter.getEntity("key-1"), undefined);
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
