/**
 * `deploy`, re-`deploy` (no change), `status` and `delete` end to end against a real moto server,
 * through the CLI in-process: the aggregator's code upload, and a deploy that fails with its
 * reason shown. (What moto does not implement is listed in tests/infra_test.ts.)
 */

import assert from "node:assert/strict";
import { CreateTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { GetFunctionCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { aggregatorCodeSha256 } from "../src/aggregator/bundle.ts";
import { cli } from "./_cli.ts";
import { startMoto } from "./_moto.ts";

Deno.test({
  name: "deploy / deploy again / status / delete on moto through the CLI",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const moto = await startMoto();
    const env = {
      ZAE_LIMITER_POLL_MS: "50",
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
    };
    const conn = ["--endpoint-url", moto.endpoint, "--region", "us-east-1"];
    const lambda = new LambdaClient(moto.aws);
    const ddb = new DynamoDBClient(moto.aws);
    try {
      await t.step("deploy creates the stack, shows events, uploads the code", async () => {
        const r = await cli(
          ["deploy", "--table-name", "cli_rl", ...conn, "--tag", "team=platform"],
          env,
        );
        assert.equal(r.code, 0, r.err);
        assert.match(r.err, /^Deploying stack zae-limiter-cli-rl \(table cli_rl\)\.\.\.\n/);
        assert.match(r.err, /zae-limiter-cli-rl\s+AWS::CloudFormation::Stack\s+CREATE_COMPLETE/);
        assert.match(r.out, /^Stack zae-limiter-cli-rl: CREATE_COMPLETE \(created\)\.\n/);
        assert.match(r.out, /Aggregator code uploaded to cli_rl-aggregator \(\d+ bytes, sha256 /);
        assert.match(r.out, /AcquirePolicyArn: arn:aws:iam::/);
        const fn = await lambda.send(new GetFunctionCommand({ FunctionName: "cli_rl-aggregator" }));
        assert.equal(fn.Configuration?.CodeSha256, aggregatorCodeSha256());
      });

      await t.step("deploy again: nothing to change, and it says so", async () => {
        const r = await cli(
          ["deploy", "--table-name", "cli_rl", ...conn, "--tag", "team=platform"],
          env,
        );
        assert.equal(r.code, 0, r.err);
        assert.equal(
          r.out.split("\n").slice(0, 2).join("\n"),
          "Stack zae-limiter-cli-rl is up to date: nothing to change (CREATE_COMPLETE).\n" +
            "Aggregator code of cli_rl-aggregator is up to date.",
        );
        const j = await cli(["deploy", "--table-name", "cli_rl", ...conn, "--json"], env);
        assert.equal(j.code, 0, j.err);
        const result = JSON.parse(j.out);
        assert.equal(result.action, "none");
        assert.equal(result.code.updated, false);
      });

      await t.step("status shows the stack, the table and the aggregator", async () => {
        const r = await cli(["status", "--table-name", "cli_rl", ...conn], env);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^Stack: +zae-limiter-cli-rl {2}CREATE_COMPLETE\n/);
        assert.match(r.out, /\nTable: +cli_rl {2}ACTIVE/);
        assert.match(
          r.out,
          /\nAggregator: cli_rl-aggregator {2}Active {2}last update Successful {2}code current/,
        );
        const j = await cli(["status", "--table-name", "cli_rl", ...conn, "--json"], env);
        const s = JSON.parse(j.out);
        assert.equal(s.stack.tags.team, "platform");
        assert.equal(s.aggregator.codeSha256, aggregatorCodeSha256());
      });

      await t.step("a deploy that fails shows why and exits 1", async () => {
        await ddb.send(
          new CreateTableCommand({
            TableName: "cli_taken",
            BillingMode: "PAY_PER_REQUEST",
            AttributeDefinitions: [{ AttributeName: "PK", AttributeType: "S" }],
            KeySchema: [{ AttributeName: "PK", KeyType: "HASH" }],
          }),
        );
        const r = await cli(["deploy", "--table-name", "cli_taken", ...conn], env);
        assert.equal(r.code, 1);
        assert.match(
          r.err,
          /\nerror: Deploying zae-limiter-cli-taken failed: ResourceInUseException: Table already exists: cli_taken\n$/,
        );
      });

      await t.step("--no-aggregator deploys no function", async () => {
        const r = await cli([
          "deploy",
          "--table-name",
          "cli_noagg",
          ...conn,
          "--no-aggregator",
          "--json",
        ], env);
        assert.equal(r.code, 0, r.err);
        const result = JSON.parse(r.out);
        assert.equal(result.outputs.AggregatorFunctionName, undefined);
        assert.equal(result.code, undefined);
        const s = await cli(["status", "--table-name", "cli_noagg", ...conn], env);
        assert.match(s.out, /\nAggregator: none\n$/);
      });

      await t.step("delete asks first; --yes deletes; deleting again is fine", async () => {
        const declined = await cli(["delete", "--table-name", "cli_rl", ...conn], env, false);
        assert.deepEqual(declined, { code: 0, out: "Not deleted.\n", err: "" });
        const r = await cli(["delete", "--table-name", "cli_rl", ...conn, "--yes"], env);
        assert.equal(r.code, 0, r.err);
        assert.equal(r.out, "Deleted stack zae-limiter-cli-rl.\n");
        assert.match(r.err, /DELETE_COMPLETE/);
        const s = await cli(["status", "--table-name", "cli_rl", ...conn], env);
        assert.equal(
          s.out,
          "Stack:      none (zae-limiter-cli-rl)\nTable:      none (cli_rl)\nAggregator: none\n",
        );
        const again = await cli(["delete", "--table-name", "cli_rl", ...conn], env, true);
        assert.deepEqual(again, {
          code: 0,
          out: "No stack zae-limiter-cli-rl: nothing to delete.\n",
          err: "",
        });
      });
    } finally {
      lambda.destroy();
      ddb.destroy();
      await moto.stop();
    }
  },
});
