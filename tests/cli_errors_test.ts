/**
 * The CLI's errors as a script sees them, with the CLI as its own process: a DynamoDB Local that
 * is not running fails fast and says `local up`, a missing region says how to give one, `--json`
 * errors are JSON on standard output with the same exit code, a missing entity exits 1, and stored
 * names and metadata cannot put control characters on the terminal.
 */

import assert from "node:assert/strict";
import { RateLimiter } from "../mod.ts";
import { freePort } from "../src/local/mod.ts";
import { errorLine, escapeControls, explain, isLocalEndpoint } from "../cli/report.ts";
import { runCli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const main = new URL("../cli/main.ts", import.meta.url).pathname;

/** Runs the CLI with exactly `env` (nothing inherited but PATH and HOME), timing it. */
async function runIsolated(args: string[], env: Record<string, string>) {
  const started = performance.now();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", main, ...args],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return {
    code: r.code,
    out: dec.decode(r.stdout),
    err: dec.decode(r.stderr),
    ms: performance.now() - started,
  };
}

// deno-lint-ignore no-control-regex -- the test looks for control characters
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;

Deno.test("escapeControls escapes C0, DEL and C1, and keeps printable text", () => {
  assert.equal(escapeControls("\x1b]52;c;aGk=\x07"), "\\x1b]52;c;aGk=\\x07");
  assert.equal(escapeControls("a\r\nb\tc\x7f\x9b"), "a\\r\\nb\\tc\\x7f\\x9b");
  assert.equal(escapeControls("Production été 日本 ✓"), "Production été 日本 ✓");
  for (let code = 0; code < 0xa0; code++) {
    const ch = String.fromCharCode(code);
    const escaped = escapeControls(ch);
    const control = code < 0x20 || (code >= 0x7f && code < 0xa0);
    assert.equal(escaped === ch, !control, `U+${code.toString(16)}`);
  }
});

Deno.test("every error line reads `error: …`, once, on one line", () => {
  const nested = explain(new Error("Error: Port 8000 is in use"), undefined);
  assert.equal(errorLine(nested), "error: Port 8000 is in use\n");
  const multi = explain(new Error("first\n  second\x1b[2J"), undefined);
  assert.equal(errorLine(multi), "error: first second\\x1b[2J\n");
  // a refused CloudFormation endpoint is not DynamoDB: no `local up` advice
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5000"), {
    code: "ECONNREFUSED",
  });
  const aws = explain(refused, {
    operation: "deploy",
    endpoint: "http://127.0.0.1:5000",
    dynamo: false,
  });
  assert.match(aws.message, /^AWS is not reachable at http:\/\/127\.0\.0\.1:5000 during deploy/);
  assert.doesNotMatch(aws.message, /local up/);
});

Deno.test("isLocalEndpoint: localhost, 127.x, [::1], 0.0.0.0, and nothing else", () => {
  for (
    const url of [
      "http://localhost:8000",
      "http://127.0.0.1:8000",
      "http://127.1.2.3",
      "http://[::1]:8000",
      "http://0.0.0.0:8000",
    ]
  ) {
    assert.ok(isLocalEndpoint(url), url);
  }
  for (
    const url of [
      "https://dynamodb.eu-west-1.amazonaws.com",
      "http://10.0.0.5:8000",
      "http://127.0.0.1.example.com",
      "not a url",
    ]
  ) {
    assert.ok(!isLocalEndpoint(url), url);
  }
});

Deno.test("a local endpoint that is not running fails in under 2 s, naming it, the command and local up", async () => {
  const port = await freePort(); // free: nothing listens there
  const endpoint = `http://127.0.0.1:${port}`;
  const env = { AWS_ENDPOINT_URL_DYNAMODB: endpoint, ZAE_LIMITER_TABLE: "rate_limits" };
  const r = await runIsolated(["entity", "create", "key-1"], env);
  assert.equal(r.code, 1, r.err);
  assert.ok(r.ms < 2000, `took ${Math.round(r.ms)} ms`);
  assert.equal(r.out, "");
  assert.equal(r.err.split("\n").length, 2, r.err); // one line
  assert.match(r.err, /^error: DynamoDB is not reachable at /);
  assert.ok(r.err.includes(endpoint), r.err);
  assert.match(r.err, / during entity create /);
  assert.match(r.err, /connection refused/);
  assert.match(r.err, /zae-limiter local up/);

  const json = await runIsolated(["limits", "get", "key-1", "--json"], {
    ...env,
    AWS_ENDPOINT_URL_DYNAMODB: `http://localhost:${port}`,
  });
  assert.equal(json.code, 1, json.err);
  assert.ok(json.ms < 2000, `took ${Math.round(json.ms)} ms`);
  assert.equal(json.err, "");
  const { error } = JSON.parse(json.out);
  assert.equal(error.type, "RateLimiterUnavailable");
  assert.ok(error.message.includes(`http://localhost:${port}`), error.message);
  assert.match(error.message, /during limits get .*zae-limiter local up/);
});

Deno.test("a missing region says --region, AWS_REGION or AWS_ENDPOINT_URL_DYNAMODB", async () => {
  const r = await runIsolated(["entity", "get", "key-1", "--table-name", "rate_limits"], {});
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /^error: No AWS region for entity get: /);
  for (const hint of ["--region", "AWS_REGION", "AWS_ENDPOINT_URL_DYNAMODB"]) {
    assert.ok(r.err.includes(hint), r.err);
  }
  const json = await runIsolated([
    "entity",
    "get",
    "key-1",
    "--table-name",
    "rate_limits",
    "--json",
  ], {});
  assert.equal(json.code, 1);
  const { error } = JSON.parse(json.out);
  assert.equal(error.type, "ConfigurationError");
  assert.equal(error.kind, "region-missing");
});

Deno.test("--json: usage errors are JSON on standard output with exit 2, and name the field", async () => {
  const unknown = await runCli(["bogus", "--json"], {});
  assert.equal(unknown.code, 2);
  assert.equal(unknown.err, "");
  assert.deepEqual(JSON.parse(unknown.out), {
    error: { type: "UsageError", message: "unknown command 'bogus'" },
  });
  const badOption = await runCli([
    "deploy",
    "--table-name",
    "t_1",
    "--lambda-memory",
    "lots",
    "--json",
  ], {});
  assert.equal(badOption.code, 2);
  const e1 = JSON.parse(badOption.out).error;
  assert.equal(e1.field, "--lambda-memory");
  assert.match(e1.message, /"lots" is not a whole number/);
  const invalid = await runCli(["entity", "create", "bad#id", "--table-name", "t_1", "--json"], {});
  assert.equal(invalid.code, 2);
  const e2 = JSON.parse(invalid.out).error;
  assert.deepEqual([e2.type, e2.field], ["ValidationError", "entityId"]);
  const text = await runCli(["entity", "create", "bad#id", "--table-name", "t_1"], {});
  assert.equal(text.code, 2);
  assert.equal(text.out, "");
  assert.match(text.err, /^error: Invalid entityId: "bad#id"/);
});

Deno.test({
  name: "on DynamoDB Local: missing entities exit 1, stored text is escaped, --json stays exact",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("cli_err");
    const env = {
      AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
      ZAE_LIMITER_TABLE: tableName,
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
    };
    const limiter = new RateLimiter({ tableName, client, createTable: true });
    try {
      await limiter.createEntity({ entityId: "proj-1", name: "Production" });

      await t.step("available --stored on a missing entity exits 1 naming it", async () => {
        const args = ["available", "--entity", "no-such", "--resource", "gpt-4", "--stored"];
        const r = await runCli(args, env);
        assert.deepEqual(r, { code: 1, out: "", err: 'error: no such entity "no-such"\n' });
        const json = await runCli([...args, "--json"], env);
        assert.equal(json.code, 1);
        assert.deepEqual(JSON.parse(json.out), {
          error: {
            type: "EntityNotFoundError",
            message: 'no such entity "no-such"',
            field: "entity",
          },
        });
        // an entity that exists but has nothing stored: exit 1 too, saying what to do
        const none = await runCli(
          ["available", "--entity", "proj-1", "--resource", "gpt-4", "--stored"],
          env,
        );
        assert.equal(none.code, 1);
        assert.match(
          none.err,
          /^error: No limits stored for entity "proj-1" on "gpt-4".*limits set/,
        );
        // given limits need no entity: still exit 0
        const given = await runCli(
          ["available", "--entity", "no-such", "--resource", "gpt-4", "--limit", "rps:5/sec"],
          env,
        );
        assert.deepEqual(given, { code: 0, out: "rps: 5\n", err: "" });
      });

      await t.step(
        "a table that does not exist is a ConfigurationError, not an outage",
        async () => {
          const typo = { ...env, ZAE_LIMITER_TABLE: "rate_limits_typo" };
          const started = Date.now();
          const r = await runCli(["entity", "get", "proj-1"], typo);
          assert.equal(r.code, 1);
          assert.match(
            r.err,
            /^error: Table "rate_limits_typo" does not exist in us-east-1 at http:\/\/127\.0\.0\.1:\d+: create it/,
          );
          assert.doesNotMatch(r.err, /unavailable|not reachable/i);
          assert.ok(Date.now() - started < 10_000, "reported at once, not after retries");
          const json = await runCli(["entity", "get", "proj-1", "--json"], typo);
          assert.equal(json.code, 1);
          const error = JSON.parse(json.out).error;
          assert.equal(error.type, "ConfigurationError");
          assert.equal(error.kind, "table-not-found");
        },
      );

      await t.step("entity delete of a missing entity exits 1; of a real one, 0", async () => {
        const r = await runCli(["entity", "delete", "does-not-exist", "--yes"], env);
        assert.deepEqual(r, { code: 1, out: "", err: 'error: no such entity "does-not-exist"\n' });
        const json = await runCli(["entity", "delete", "does-not-exist", "--yes", "--json"], env);
        assert.equal(json.code, 1);
        assert.equal(JSON.parse(json.out).error.type, "EntityNotFoundError");
        await limiter.createEntity({ entityId: "gone-1" });
        const ok = await runCli(["entity", "delete", "gone-1", "--yes"], env);
        assert.deepEqual(ok, { code: 0, out: "Deleted entity gone-1.\n", err: "" });
        assert.equal(await limiter.getEntity("gone-1"), undefined);
      });

      await t.step("names and metadata with escape sequences print escaped", async () => {
        const name =
          "Evil\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[2J\x1b[H\r\nentityId: key-admin";
        const metadata = {
          "note\r\nentityId": "key-admin\x9b31m",
          owner: "\x1b[2J\x1b[Halice\x7f",
        };
        await limiter.createEntity({ entityId: "key-evil", parentId: "proj-1", name, metadata });
        const stored = await limiter.getEntity("key-evil");

        const got = await runCli(["entity", "get", "key-evil"], env);
        assert.equal(got.code, 0, got.err);
        assert.ok(!CONTROL.test(got.out), JSON.stringify(got.out));
        const lines = got.out.trimEnd().split("\n");
        assert.equal(lines.filter((l) => l.startsWith("entityId:")).length, 1, got.out);
        assert.ok(got.out.includes("Evil\\x1b]52;c;cm0gLXJmIH4=\\x07"), got.out);
        assert.ok(got.out.includes("\\r\\nentityId: key-admin"), got.out);
        assert.ok(got.out.includes("meta.note\\r\\nentityId: key-admin\\x9b31m"), got.out);
        assert.ok(got.out.includes("meta.owner: \\x1b[2J\\x1b[Halice\\x7f"), got.out);

        const children = await runCli(["entity", "children", "proj-1"], env);
        assert.equal(children.code, 0, children.err);
        assert.ok(!CONTROL.test(children.out), JSON.stringify(children.out));
        assert.equal(children.out.trimEnd().split("\n").length, 1, children.out);
        assert.match(children.out, /^key-evil {2}Evil\\x1b\]52;/);

        const json = await runCli(["entity", "get", "key-evil", "--json"], env);
        assert.equal(json.code, 0);
        const parsed = JSON.parse(json.out);
        assert.equal(parsed.name, name);
        assert.deepEqual(parsed.metadata, metadata);
        // The stored entity, exactly, plus the shard count `entity get` adds.
        const { shards, ...entity } = parsed;
        assert.equal(shards, 1);
        assert.deepEqual(entity, JSON.parse(JSON.stringify(stored)));
        const kids = JSON.parse(
          (await runCli(["entity", "children", "proj-1", "--json"], env)).out,
        );
        assert.equal(kids[0].name, name);
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});
