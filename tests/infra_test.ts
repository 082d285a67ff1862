/**
 * src/infra against a real moto server: deploy, re-deploy with no change, update, the aggregator's
 * code upload, status, a failing deploy with its reason, ensureStack, delete.
 *
 * What moto does not do (so these tests cannot show it): CloudWatch alarms are accepted but not
 * created; the table's TTL, point-in-time recovery and SSE settings in the template are ignored
 * by moto's CloudFormation; a failing resource makes moto answer the ExecuteChangeSet call with
 * an error instead of rolling the stack back, so the rollback path (reasons read from the failed
 * stack events) is covered by `failureReasons` on event data, and on moto by the API error path.
 */

import assert from "node:assert/strict";
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
} from "@aws-sdk/client-dynamodb";
import { GetFunctionCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { aggregatorCodeSha256, buildAggregatorZip } from "../src/aggregator/bundle.ts";
import {
  codeSha256,
  defaultStackName,
  deleteStack,
  deploymentStatus,
  deployStack,
  describeStack,
  ensureStack,
  failureReasons,
  StackDeployError,
  type StackEvent,
  stackParameters,
  StackSettingsError,
} from "../src/infra/mod.ts";
import { startMoto } from "./_moto.ts";

Deno.test("stackParameters refuses bad settings naming the field, value and rule", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ tableName: "ab" }, /Invalid tableName: "ab" \(must be 3-255/],
    [{ tableName: "t_1", lambdaMemoryMb: 64 }, /Invalid lambdaMemoryMb: 64 \(must be a whole/],
    [{ tableName: "t_1", usageWindows: ["weekly"] }, /Invalid usageWindows: \["weekly"\]/],
    [{ tableName: "t_1", logRetentionDays: 2 }, /Invalid logRetentionDays: 2 \(must be one of/],
    [{ tableName: "t_1", alarmSnsTopicArn: "topic" }, /Invalid alarmSnsTopicArn: "topic"/],
    [{ tableName: "t_1", snapshotRetentionDays: 1.5 }, /Invalid snapshotRetentionDays: 1.5/],
  ];
  for (const [settings, message] of cases) {
    assert.throws(
      () => stackParameters(settings as never),
      (err: Error) => err instanceof StackSettingsError && message.test(err.message),
    );
  }
  assert.equal(defaultStackName("rate_limits.v2"), "zae-limiter-rate-limits-v2");
  assert.deepEqual(stackParameters({ tableName: "rate_limits" }), {
    TableName: "rate_limits",
    EnableAggregator: "true",
    SnapshotRetentionDays: "90",
    AuditRetentionDays: "90",
    UsageWindows: "hourly,daily",
    LambdaMemorySize: "256",
    LambdaTimeout: "60",
    LogRetentionDays: "30",
    AlarmSnsTopicArn: "",
    EnablePointInTimeRecovery: "true",
    EnableDeletionProtection: "false",
  });
});

Deno.test("failureReasons keeps the failed events, not the cancelled ones", () => {
  const at = new Date(0);
  const events: StackEvent[] = [
    {
      timestamp: at,
      logicalId: "s",
      resourceType: "AWS::CloudFormation::Stack",
      status: "CREATE_IN_PROGRESS",
    },
    {
      timestamp: at,
      logicalId: "RateLimitsTable",
      resourceType: "AWS::DynamoDB::Table",
      status: "CREATE_FAILED",
      reason: "rate_limits already exists",
    },
    {
      timestamp: at,
      logicalId: "AggregatorDeadLetterQueue",
      resourceType: "AWS::SQS::Queue",
      status: "CREATE_FAILED",
      reason: "Resource creation cancelled",
    },
    {
      timestamp: at,
      logicalId: "s",
      resourceType: "AWS::CloudFormation::Stack",
      status: "ROLLBACK_COMPLETE",
    },
  ];
  assert.deepEqual(failureReasons(events), [
    "RateLimitsTable (AWS::DynamoDB::Table): rate_limits already exists",
  ]);
});

Deno.test({
  name: "deployStack / deploymentStatus / ensureStack / deleteStack on moto",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const moto = await startMoto();
    const aws = moto.aws;
    const ddb = new DynamoDBClient(aws);
    const lambda = new LambdaClient(aws);
    try {
      const tableName = "rate_limits_infra";
      const stackName = defaultStackName(tableName);

      await t.step(
        "first deploy creates the stack, shows its events, uploads the code",
        async () => {
          const events: StackEvent[] = [];
          const result = await deployStack({
            ...aws,
            tableName,
            pollMs: 50,
            tags: { team: "platform" },
            onEvent: (e) => events.push(e),
          });
          assert.equal(result.action, "create");
          assert.equal(result.status, "CREATE_COMPLETE");
          assert.equal(result.stackName, stackName);
          assert.ok(events.some((e) => e.status === "CREATE_COMPLETE"), JSON.stringify(events));
          for (
            const key of [
              "AcquirePolicyArn",
              "AdminPolicyArn",
              "ReadOnlyPolicyArn",
              "UpgradePolicyArn",
            ]
          ) {
            assert.match(result.outputs[key], /^arn:aws:iam::\d{12}:policy\//);
          }
          assert.equal(result.outputs.TableName, tableName);
          assert.equal(result.outputs.AggregatorFunctionName, `${tableName}-aggregator`);
          assert.deepEqual(result.code, {
            functionName: `${tableName}-aggregator`,
            updated: true,
            codeSha256: aggregatorCodeSha256(),
            codeSize: buildAggregatorZip().length,
          });
          const fn = await lambda.send(
            new GetFunctionCommand({ FunctionName: `${tableName}-aggregator` }),
          );
          assert.equal(fn.Configuration?.CodeSha256, aggregatorCodeSha256());
          assert.equal(fn.Configuration?.Runtime, "nodejs22.x");
          assert.equal(fn.Configuration?.Handler, "index.handler");
          assert.equal(fn.Configuration?.MemorySize, 256);
          assert.equal(fn.Configuration?.Environment?.Variables?.TABLE_NAME, tableName);
          const table = (await ddb.send(new DescribeTableCommand({ TableName: tableName }))).Table;
          assert.equal(table?.BillingModeSummary?.BillingMode, "PAY_PER_REQUEST");
          assert.deepEqual(table?.StreamSpecification, {
            StreamEnabled: true,
            StreamViewType: "NEW_AND_OLD_IMAGES",
          });
          assert.deepEqual(
            table?.GlobalSecondaryIndexes?.map((g) => [g.IndexName, g.Projection?.ProjectionType]),
            [["GSI1", "ALL"], ["GSI2", "KEYS_ONLY"], ["GSI3", "ALL"]],
          );
          // CloudFormation made GSI3; the deploy recorded the schema version (nothing to index).
          assert.deepEqual(result.schema, {
            fromVersion: 1,
            toVersion: 2,
            changed: true,
            addedIndex: false,
            backfilled: 0,
          });
          const version = await ddb.send(
            new GetItemCommand({
              TableName: tableName,
              Key: { PK: { S: "SYSTEM" }, SK: { S: "#VERSION" } },
              ConsistentRead: true,
            }),
          );
          assert.equal(version.Item?.version?.N, "2");
          const stack = await describeStack({ ...aws, tableName });
          assert.equal(stack?.tags.team, "platform");
        },
      );

      await t.step("deploying again with nothing to change changes nothing", async () => {
        const events: StackEvent[] = [];
        const result = await deployStack({
          ...aws,
          tableName,
          pollMs: 50,
          tags: { team: "platform" },
          onEvent: (e) => events.push(e),
        });
        assert.equal(result.action, "none");
        assert.equal(result.status, "CREATE_COMPLETE");
        assert.equal(result.code?.updated, false);
        assert.deepEqual(events, []);
      });

      await t.step("a changed setting updates the stack; new code is uploaded", async () => {
        const result = await deployStack({
          ...aws,
          tableName,
          pollMs: 50,
          lambdaMemoryMb: 512,
          aggregatorCode: { zip: new Uint8Array([0x50, 0x4b, 5, 6, ...new Uint8Array(18)]) },
        });
        assert.equal(result.action, "update");
        assert.equal(result.status, "UPDATE_COMPLETE");
        assert.equal(result.code?.updated, true);
        const fn = await lambda.send(
          new GetFunctionCommand({ FunctionName: `${tableName}-aggregator` }),
        );
        assert.equal(fn.Configuration?.MemorySize, 512);
        assert.equal((await describeStack({ ...aws, tableName }))?.tags.team, "platform");
        assert.equal(fn.Configuration?.CodeSha256, result.code?.codeSha256);
        assert.notEqual(fn.Configuration?.CodeSha256, aggregatorCodeSha256());
        // Back to the bundled code.
        const again = await deployStack({ ...aws, tableName, pollMs: 50, lambdaMemoryMb: 512 });
        assert.equal(again.action, "none");
        assert.equal(again.code?.updated, true);
        assert.equal(again.code?.codeSha256, codeSha256(buildAggregatorZip()));
      });

      await t.step("deploymentStatus shows the stack, the table and the aggregator", async () => {
        const status = await deploymentStatus({ ...aws, tableName });
        assert.equal(status.stack?.status, "UPDATE_COMPLETE");
        assert.equal(status.stack?.parameters.LambdaMemorySize, "512");
        assert.equal(status.table?.status, "ACTIVE");
        assert.match(status.table?.streamArn ?? "", /stream/);
        assert.equal(status.aggregator?.functionName, `${tableName}-aggregator`);
        assert.equal(status.aggregator?.codeSha256, aggregatorCodeSha256());
        assert.equal(status.aggregator?.runtime, "nodejs22.x");
        assert.ok(status.aggregator?.eventSourceState, JSON.stringify(status.aggregator));
      });

      await t.step("a deploy that fails says why", async () => {
        await ddb.send(
          new CreateTableCommand({
            TableName: "taken_table",
            BillingMode: "PAY_PER_REQUEST",
            AttributeDefinitions: [{ AttributeName: "PK", AttributeType: "S" }],
            KeySchema: [{ AttributeName: "PK", KeyType: "HASH" }],
          }),
        );
        await assert.rejects(
          deployStack({ ...aws, tableName: "taken_table", pollMs: 50 }),
          (err: Error) =>
            err instanceof StackDeployError &&
            /Deploying zae-limiter-taken-table failed: .*Table already exists: taken_table/
              .test(err.message) &&
            err.reasons.length >= 1,
        );
      });

      await t.step("bad settings are refused before any AWS call", async () => {
        await assert.rejects(
          deployStack({ ...aws, tableName, stackName: "1-bad", pollMs: 50 }),
          /Invalid stackName: "1-bad"/,
        );
        await assert.rejects(
          deployStack({ ...aws, tableName, tags: { "aws:x": "y" } }),
          /Invalid tag key "aws:x"/,
        );
      });

      await t.step("a stack without the aggregator has no function", async () => {
        const result = await deployStack({
          ...aws,
          tableName: "no_agg_table",
          aggregator: false,
          pollMs: 50,
        });
        assert.equal(result.action, "create");
        assert.equal(result.code, undefined);
        assert.equal(result.outputs.AggregatorFunctionName, undefined);
        await assert.rejects(
          lambda.send(new GetFunctionCommand({ FunctionName: "no_agg_table-aggregator" })),
          /not found|ResourceNotFound/i,
        );
        const status = await deploymentStatus({ ...aws, tableName: "no_agg_table" });
        assert.equal(status.aggregator, undefined);
        assert.equal(status.table?.status, "ACTIVE");
      });

      await t.step("ensureStack creates a missing stack once, then leaves it", async () => {
        const first = await ensureStack({ ...aws, tableName: "ensured_table", pollMs: 50 });
        assert.equal(first.created, true);
        assert.equal(first.stack.status, "CREATE_COMPLETE");
        const fn = await lambda.send(
          new GetFunctionCommand({ FunctionName: "ensured_table-aggregator" }),
        );
        assert.equal(fn.Configuration?.CodeSha256, aggregatorCodeSha256());
        const second = await ensureStack({
          ...aws,
          tableName: "ensured_table",
          pollMs: 50,
          lambdaMemoryMb: 1024,
        });
        assert.equal(second.created, false);
        assert.equal(second.stack.parameters.LambdaMemorySize, "256");
      });

      await t.step("deleteStack removes the stack and its table", async () => {
        const events: StackEvent[] = [];
        assert.equal(
          await deleteStack({ ...aws, tableName, pollMs: 50, onEvent: (e) => events.push(e) }),
          true,
        );
        assert.ok(events.some((e) => e.status === "DELETE_COMPLETE"), JSON.stringify(events));
        assert.equal(await describeStack({ ...aws, tableName }), undefined);
        await assert.rejects(
          ddb.send(new DescribeTableCommand({ TableName: tableName })),
          /not found|ResourceNotFound/i,
        );
        assert.equal(await deleteStack({ ...aws, tableName, pollMs: 50 }), false);
        const status = await deploymentStatus({ ...aws, tableName });
        assert.deepEqual(status, { stack: undefined });
      });
    } finally {
      ddb.destroy();
      lambda.destroy();
      await moto.stop();
    }
  },
});

Deno.test({
  name: "deploymentStatus warns when the table's stream is not NEW_AND_OLD_IMAGES (moto)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const moto = await startMoto();
    const ddb = new DynamoDBClient(moto.aws);
    try {
      const views = [
        "KEYS_ONLY",
        "NEW_IMAGE",
        "OLD_IMAGE",
        "NEW_AND_OLD_IMAGES",
        undefined,
      ] as const;
      for (const view of views) {
        const tableName = `stream_${(view ?? "none").toLowerCase()}`;
        await ddb.send(
          new CreateTableCommand({
            TableName: tableName,
            BillingMode: "PAY_PER_REQUEST",
            AttributeDefinitions: [
              { AttributeName: "PK", AttributeType: "S" },
              { AttributeName: "SK", AttributeType: "S" },
            ],
            KeySchema: [
              { AttributeName: "PK", KeyType: "HASH" },
              { AttributeName: "SK", KeyType: "RANGE" },
            ],
            ...(view ? { StreamSpecification: { StreamEnabled: true, StreamViewType: view } } : {}),
          }),
        );
        const status = await deploymentStatus({ ...moto.aws, tableName });
        assert.equal(status.table?.status, "ACTIVE");
        assert.equal(status.table?.streamViewType, view);
        if (view === "NEW_AND_OLD_IMAGES") {
          assert.equal(status.warnings, undefined);
        } else if (view === undefined) {
          assert.deepEqual(status.warnings, [
            `Table ${tableName} has no stream: the usage aggregator gets no records, so usage ` +
            "snapshots and the resource index stay empty; to fix, enable a NEW_AND_OLD_IMAGES " +
            "stream (aws dynamodb update-table --stream-specification) or redeploy the stack " +
            "(zae-limiter deploy)",
          ]);
        } else {
          assert.equal(status.warnings?.length, 1, JSON.stringify(status));
          assert.match(
            status.warnings![0],
            new RegExp(
              `^Table ${tableName} has a ${view} stream, not NEW_AND_OLD_IMAGES: the usage ` +
                "aggregator cannot read a change's consumption and reports every bucket record " +
                "as malformed; to fix, disable the stream and enable it again",
            ),
          );
        }
      }
    } finally {
      ddb.destroy();
      await moto.stop();
    }
  },
});
