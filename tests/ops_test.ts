/**
 * Operations: `RateLimiter.ping()` and `zae-limiter check` against a real DynamoDB Local (healthy
 * tables of schema versions 1 and 2, a missing table, another key schema, an index with the wrong
 * projection, no stream, an endpoint nobody listens on, a server that never answers), and
 * `listStacks` / `zae-limiter list` against a real moto server (stacks deployed by the library and
 * the CLI among foreign ones, over more than one page).
 */

import assert from "node:assert/strict";
import { CreateTableCommand, type CreateTableCommandInput } from "@aws-sdk/client-dynamodb";
import {
  CloudFormationClient,
  CreateStackCommand,
  DescribeStacksCommand,
} from "@aws-sdk/client-cloudformation";
import { RateLimiter } from "../mod.ts";
import { assessTable, type PingResult } from "../src/ping.ts";
import { tableDefinition } from "../src/table.ts";
import { createTestLimiter } from "../src/testing/mod.ts";
import {
  deployStack,
  describeStack,
  LIBRARY_VERSION,
  listStacks,
  STACK_VERSION_TAG,
  StackDeployError,
} from "../src/infra/mod.ts";
import { deployTags } from "../src/infra/stack_list.ts";
import { cli } from "./_cli.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";
import { startMoto } from "./_moto.ts";

const where = { tableName: "t_1" };

/** The table of schema version 1 (GSI1, GSI2) or 2 (and GSI3), whatever table.ts makes today. */
function definition(tableName: string, version: 1 | 2): CreateTableCommandInput {
  const def = structuredClone(tableDefinition(tableName)) as CreateTableCommandInput;
  def.GlobalSecondaryIndexes = (def.GlobalSecondaryIndexes ?? []).filter((i) =>
    i.IndexName !== "GSI3"
  );
  def.AttributeDefinitions = (def.AttributeDefinitions ?? []).filter((a) =>
    !a.AttributeName?.startsWith("GSI3")
  );
  if (version === 2) {
    def.AttributeDefinitions.push(
      { AttributeName: "GSI3PK", AttributeType: "S" },
      { AttributeName: "GSI3SK", AttributeType: "S" },
    );
    def.GlobalSecondaryIndexes.push({
      IndexName: "GSI3",
      KeySchema: [
        { AttributeName: "GSI3PK", KeyType: "HASH" },
        { AttributeName: "GSI3SK", KeyType: "RANGE" },
      ],
      Projection: { ProjectionType: "ALL" },
    });
  }
  return def;
}

function statusOf(r: PingResult, name: string): string | undefined {
  return r.checks.find((c) => c.name === name)?.status;
}

Deno.test("assessTable: statuses DynamoDB Local never shows", () => {
  const v2 = definition("t_1", 2);
  const described = {
    ...v2,
    TableStatus: "ACTIVE" as const,
    GlobalSecondaryIndexes: v2.GlobalSecondaryIndexes!.map((i) => ({
      ...i,
      IndexStatus: "ACTIVE" as const,
    })),
  };
  const healthy = assessTable(described, where);
  assert.equal(healthy.problem, undefined);
  assert.equal(healthy.upgradeNeeded, false);

  const creating = assessTable({ ...described, TableStatus: "CREATING" }, where);
  assert.equal(creating.problem?.kind, "table-not-active");
  assert.match(creating.problem!.message, /^Table "t_1" is CREATING: wait until it is ACTIVE/);

  const updating = assessTable({ ...described, TableStatus: "UPDATING" }, where);
  assert.equal(updating.problem, undefined);
  assert.equal(updating.checks.find((c) => c.name === "table")?.status, "warning");

  // GSI3 still backfilling (an upgrade under way): a warning; GSI1 backfilling: a failure.
  const withStatus = (name: string, status: "CREATING") => ({
    ...described,
    GlobalSecondaryIndexes: described.GlobalSecondaryIndexes.map((i) =>
      i.IndexName === name ? { ...i, IndexStatus: status } : i
    ),
  });
  const gsi3 = assessTable(withStatus("GSI3", "CREATING"), where);
  assert.equal(gsi3.problem, undefined);
  assert.equal(gsi3.checks.find((c) => c.name === "GSI3")?.status, "warning");
  const gsi1 = assessTable(withStatus("GSI1", "CREATING"), where);
  assert.equal(gsi1.problem?.kind, "table-not-active");
  assert.match(gsi1.problem!.message, /^Index GSI1 of Table "t_1" is CREATING/);
});

Deno.test("ping on the in-memory backend: ok, latency 0, nothing sent", async () => {
  await using limiter = createTestLimiter();
  const r = await limiter.ping();
  assert.equal(r.ok, true);
  assert.equal(r.latencyMs, 0);
  assert.equal(r.backend, "memory");
  assert.equal(r.problem, undefined);
});

Deno.test("deployTags keeps the user's tags and sets the version tag", () => {
  const mark = { [STACK_VERSION_TAG]: LIBRARY_VERSION };
  assert.deepEqual(deployTags(undefined, undefined), mark);
  assert.deepEqual(deployTags({ team: "a" }, { team: "b", old: "x" }), { team: "a", ...mark });
  assert.deepEqual(
    deployTags(undefined, { team: "b", [STACK_VERSION_TAG]: "0.0.1" }),
    { team: "b", ...mark },
  );
  const denoJson = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  assert.equal(LIBRARY_VERSION, denoJson.version);
});

/** A TCP server that accepts connections and never answers. */
function silentServer(): { endpoint: string; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const conn of listener) conns.push(conn);
    } catch { /* closed */ }
  })();
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close: () => {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* gone */ }
      }
      listener.close();
    },
  };
}

/** A port nobody listens on. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test({
  name: "ping and check on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const ping = async (
      tableName: string,
      options: { endpoint?: string; timeoutMs?: number } = {},
    ) => {
      await using limiter = new RateLimiter({
        tableName,
        endpoint: options.endpoint ?? ddb.endpoint,
        region: "us-east-1",
        ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      });
      return await limiter.ping();
    };
    const v1 = uniqueTableName("ping_v1");
    const v2 = uniqueTableName("ping_v2");
    const other = uniqueTableName("ping_other");
    const keysOnly = uniqueTableName("ping_keys_only");
    const noStream = uniqueTableName("ping_no_stream");
    try {
      await client.send(new CreateTableCommand(definition(v1, 1)));
      await client.send(new CreateTableCommand(definition(v2, 2)));
      await client.send(
        new CreateTableCommand({
          TableName: other,
          BillingMode: "PAY_PER_REQUEST",
          AttributeDefinitions: [{ AttributeName: "id", AttributeType: "S" }],
          KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
        }),
      );
      const ko = definition(keysOnly, 2);
      ko.GlobalSecondaryIndexes![0].Projection = { ProjectionType: "KEYS_ONLY" };
      await client.send(new CreateTableCommand(ko));
      const ns = definition(noStream, 2);
      delete ns.StreamSpecification;
      await client.send(new CreateTableCommand(ns));

      await t.step("a version-1 table: healthy, GSI3 missing is a warning (upgrade)", async () => {
        const r = await ping(v1);
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.equal(r.problem, undefined);
        assert.equal(r.upgradeNeeded, true);
        assert.equal(r.tableName, v1);
        assert.equal(r.endpoint, ddb.endpoint);
        assert.equal(r.region, "us-east-1");
        assert.equal(r.tableStatus, "ACTIVE");
        assert.ok(Number.isInteger(r.latencyMs) && r.latencyMs >= 0 && r.latencyMs < 5000);
        assert.deepEqual(r.checks.map((c) => [c.name, c.status]), [
          ["reachable", "ok"],
          ["table", "ok"],
          ["keys", "ok"],
          ["GSI1", "ok"],
          ["GSI2", "ok"],
          ["GSI3", "warning"],
          ["stream", "ok"],
        ]);
        assert.equal(r.warnings.length, 1);
        assert.match(r.warnings[0], /^GSI3: missing \(schema version 1\).*zae-limiter upgrade/);
      });

      await t.step("a version-2 table: healthy, no warning", async () => {
        const r = await ping(v2);
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.equal(r.upgradeNeeded, false);
        assert.deepEqual(r.warnings, []);
        assert.equal(statusOf(r, "GSI3"), "ok");
      });

      await t.step("no stream: healthy, with a warning about the aggregator", async () => {
        const r = await ping(noStream);
        assert.equal(r.ok, true);
        assert.equal(statusOf(r, "stream"), "warning");
        assert.match(r.warnings[0], /^stream: off: the usage aggregator cannot run/);
      });

      await t.step("a missing table: table-not-found, not thrown", async () => {
        const r = await ping("no_such_table");
        assert.equal(r.ok, false);
        assert.equal(r.problem?.kind, "table-not-found");
        assert.match(r.problem!.message, /^Table "no_such_table" does not exist/);
        assert.deepEqual(r.checks.map((c) => [c.name, c.status]), [["reachable", "failed"]]);
      });

      await t.step("another key schema: table-schema", async () => {
        const r = await ping(other);
        assert.equal(r.ok, false);
        assert.equal(r.problem?.kind, "table-schema");
        assert.match(r.problem!.message, /is not a zae-limiter table/);
        assert.match(r.problem!.message, /keys are id \(HASH, S\); expected PK \(HASH, S\)/);
        assert.equal(statusOf(r, "keys"), "failed");
        assert.equal(statusOf(r, "GSI1"), "failed");
      });

      await t.step("GSI1 without every attribute: table-schema", async () => {
        const r = await ping(keysOnly);
        assert.equal(r.problem?.kind, "table-schema");
        assert.match(r.problem!.message, /index GSI1 projects KEYS_ONLY; expected ALL/);
      });

      await t.step("an endpoint nobody listens on: unavailable, at once", async () => {
        const endpoint = `http://127.0.0.1:${closedPort()}`;
        const started = performance.now();
        const r = await ping(v1, { endpoint });
        assert.ok(performance.now() - started < 2000);
        assert.equal(r.ok, false);
        assert.equal(r.problem?.kind, "unavailable");
        assert.match(r.problem!.message, /^Rate limiter unavailable during ping \(DescribeTable\)/);
      });

      await t.step("a server that never answers: unavailable after the deadline", async () => {
        const silent = silentServer();
        try {
          const r = await ping(v1, { endpoint: silent.endpoint, timeoutMs: 300 });
          assert.equal(r.problem?.kind, "unavailable");
          assert.ok(r.latencyMs >= 250 && r.latencyMs < 3000, String(r.latencyMs));
        } finally {
          silent.close();
        }
      });

      const env = { AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local" };
      const conn = ["--endpoint-url", ddb.endpoint, "--region", "us-east-1"];
      await t.step("check: a healthy table exits 0", async () => {
        const r = await cli(["check", "--table-name", v1, ...conn], env);
        assert.equal(r.code, 0, r.err);
        assert.equal(r.err, "");
        assert.match(
          r.out,
          new RegExp(`^Table: +${v1} {2}ACTIVE {2}\\(${ddb.endpoint}, us-east-1\\)\n`),
        );
        assert.match(r.out, /\nLatency: +\d+ ms\n/);
        assert.match(r.out, /\n {2}warning {2}GSI3 +missing \(schema version 1\)/);
        assert.match(r.out, /\nHealthy \(1 warning\)\.\n$/);
        const j = await cli(["check", "--table-name", v2, ...conn, "--json"], env);
        assert.equal(j.code, 0, j.err);
        const result = JSON.parse(j.out);
        assert.equal(result.ok, true);
        assert.equal(result.tableName, v2);
        assert.equal(result.upgradeNeeded, false);
      });

      await t.step("check: a missing table exits 1 and says what to do", async () => {
        const r = await cli(["check", "--table-name", "no_such_table", ...conn], env);
        assert.equal(r.code, 1);
        assert.match(r.out, /\nUnhealthy: table-not-found\.\n$/);
        assert.match(r.err, /^error: Table "no_such_table" does not exist.*zae-limiter deploy/);
        const j = await cli(["check", "--table-name", "no_such_table", ...conn, "--json"], env);
        assert.equal(j.code, 1);
        assert.equal(j.err, "");
        assert.equal(JSON.parse(j.out).problem.kind, "table-not-found");
      });

      await t.step("check: another key schema exits 1", async () => {
        const r = await cli(["check", "--table-name", other, ...conn, "--json"], env);
        assert.equal(r.code, 1);
        const result = JSON.parse(r.out);
        assert.equal(result.ok, false);
        assert.equal(result.problem.kind, "table-schema");
      });

      await t.step("check: an unreachable endpoint exits 3, fast", async () => {
        const started = performance.now();
        const r = await cli([
          "check",
          "--table-name",
          v1,
          "--endpoint-url",
          `http://127.0.0.1:${closedPort()}`,
          "--region",
          "us-east-1",
        ], env);
        assert.ok(performance.now() - started < 3000);
        assert.equal(r.code, 3);
        assert.match(r.out, /\n {2}failed +reachable +Rate limiter unavailable during ping/);
        assert.match(r.err, /^error: Rate limiter unavailable during ping \(DescribeTable\)/);
      });

      await t.step("check without a table is bad usage", async () => {
        const r = await cli(["check", ...conn], env);
        assert.equal(r.code, 2);
        assert.match(r.err, /Missing --table-name/);
      });
    } finally {
      client.destroy();
      await ddb.stop();
    }
  },
});

Deno.test({
  name: "listStacks and `list` on moto: the stacks zae-limiter deployed, over several pages",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const moto = await startMoto();
    const cfn = new CloudFormationClient(moto.aws);
    const env = {
      ZAE_LIMITER_POLL_MS: "50",
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
    };
    try {
      // moto answers DescribeStacks 50 stacks a page: 52 foreign stacks first put ours on page 2.
      const foreign = JSON.stringify({
        Resources: { Handle: { Type: "AWS::CloudFormation::WaitConditionHandle" } },
      });
      for (let i = 0; i < 52; i++) {
        await cfn.send(
          new CreateStackCommand({
            StackName: `foreign-${String(i).padStart(2, "0")}`,
            TemplateBody: foreign,
            Tags: [{ Key: "team", Value: "other" }],
          }),
        );
      }

      await t.step(
        "deploy (library and CLI) tags the stacks, keeping the user's tags",
        async () => {
          await deployStack({ ...moto.aws, tableName: "ops_a", aggregator: false, pollMs: 50 });
          const r = await cli([
            "deploy",
            "--table-name",
            "ops_b",
            "--no-aggregator",
            "--tag",
            "team=platform",
            "--endpoint-url",
            moto.endpoint,
            "--region",
            "us-east-1",
          ], env);
          assert.equal(r.code, 0, r.err);
          const b = await describeStack({ ...moto.aws, tableName: "ops_b" });
          assert.deepEqual(b?.tags, { team: "platform", [STACK_VERSION_TAG]: LIBRARY_VERSION });
          // A deploy without tags keeps the stack's, and has nothing to change.
          const again = await deployStack({
            ...moto.aws,
            tableName: "ops_b",
            aggregator: false,
            pollMs: 50,
          });
          assert.equal(again.action, "none");
          assert.equal(
            (await describeStack({ ...moto.aws, tableName: "ops_b" }))?.tags.team,
            "platform",
          );
          await assert.rejects(
            deployStack({ ...moto.aws, tableName: "ops_c", tags: { "zae-limiter:version": "9" } }),
            (err: Error) =>
              err instanceof StackDeployError &&
              /zae-limiter:/.test(err.message + (err as StackDeployError).reasons),
          );
        },
      );

      await t.step("listStacks finds the two, not the foreign ones", async () => {
        // Ours are not on the first page: only reading every page finds them.
        const first = await cfn.send(new DescribeStacksCommand({}));
        assert.ok(first.NextToken);
        assert.ok(!first.Stacks?.some((s) => s.StackName?.startsWith("zae-limiter-")));
        const stacks = await listStacks(moto.aws);
        assert.deepEqual(stacks.map((s) => [s.stackName, s.status, s.version, s.tableName]), [
          ["zae-limiter-ops-a", "CREATE_COMPLETE", LIBRARY_VERSION, "ops_a"],
          ["zae-limiter-ops-b", "CREATE_COMPLETE", LIBRARY_VERSION, "ops_b"],
        ]);
      });

      await t.step("`list` prints them (text and JSON)", async () => {
        const conn = ["--endpoint-url", moto.endpoint, "--region", "us-east-1"];
        const r = await cli(["list", ...conn], env);
        assert.equal(r.code, 0, r.err);
        assert.equal(
          r.out,
          "STACK              STATUS           VERSION  TABLE\n" +
            `zae-limiter-ops-a  CREATE_COMPLETE  ${LIBRARY_VERSION}    ops_a\n` +
            `zae-limiter-ops-b  CREATE_COMPLETE  ${LIBRARY_VERSION}    ops_b\n`,
        );
        const j = await cli(["list", ...conn, "--json"], env);
        assert.equal(j.code, 0, j.err);
        const { stacks } = JSON.parse(j.out);
        assert.deepEqual(stacks.map((s: { stackName: string }) => s.stackName), [
          "zae-limiter-ops-a",
          "zae-limiter-ops-b",
        ]);
        const other = await cli(
          ["list", "--endpoint-url", moto.endpoint, "--region", "eu-west-3"],
          env,
        );
        assert.equal(other.code, 0, other.err);
        assert.equal(other.out, "No zae-limiter stacks in this region.\n");
      });
    } finally {
      cfn.destroy();
      await moto.stop();
    }
  },
});
