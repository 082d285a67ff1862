/**
 * The CloudFormation template: its embedded copy, its table against `tableDefinition()`, cfn-lint,
 * and the IAM policies against the DynamoDB calls the library really sends (recorded on DynamoDB
 * Local with SDK middleware).
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { CreateTableCommand, type DynamoDBClient, PutItemCommand } from "@aws-sdk/client-dynamodb";
import {
  createNamespace,
  deleteNamespace,
  EntityDisabledError,
  Limit,
  listNamespaces,
  RateLimiter,
  upgradeTable,
} from "../mod.ts";
import { parseTemplate, TEMPLATE_YAML } from "../src/infra/template.ts";
import { tableDefinition } from "../src/repository.ts";
import { generatedModule } from "../scripts/gen_template.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

type Json = Record<string, unknown>;
const template = parseTemplate() as {
  Resources: Record<string, { Type: string; Properties: Json; Condition?: string }>;
};
const props = template.Resources.RateLimitsTable.Properties;

Deno.test("src/infra/template_generated.ts is the YAML file, regenerated", async () => {
  const yaml = await Deno.readTextFile(new URL("../templates/zae-limiter.yaml", import.meta.url));
  assert.equal(TEMPLATE_YAML, yaml, "run: deno run -A scripts/gen_template.ts");
  const generated = await Deno.readTextFile(
    new URL("../src/infra/template_generated.ts", import.meta.url),
  );
  assert.equal(generated, generatedModule(yaml));
});

Deno.test("the template's table is tableDefinition() plus TTL, SSE, PITR, deletion protection", () => {
  const def = tableDefinition("x");
  assert.deepEqual(props.TableName, { Ref: "TableName" });
  assert.equal(props.BillingMode, def.BillingMode);
  assert.deepEqual(props.AttributeDefinitions, def.AttributeDefinitions);
  assert.deepEqual(props.KeySchema, def.KeySchema);
  assert.deepEqual(props.GlobalSecondaryIndexes, def.GlobalSecondaryIndexes);
  assert.deepEqual(props.StreamSpecification, {
    StreamViewType: def.StreamSpecification?.StreamViewType,
  });
  assert.equal(def.StreamSpecification?.StreamEnabled, true);
  assert.deepEqual(props.TimeToLiveSpecification, { AttributeName: "ttl", Enabled: true });
  assert.deepEqual(props.SSESpecification, { SSEEnabled: true });
  assert.deepEqual(props.PointInTimeRecoverySpecification, {
    PointInTimeRecoveryEnabled: { "Fn::If": ["PointInTimeRecovery", true, false] },
  });
  assert.deepEqual(props.DeletionProtectionEnabled, {
    "Fn::If": ["DeletionProtection", true, false],
  });
  const known = new Set([
    "TableName",
    "BillingMode",
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "StreamSpecification",
    "TimeToLiveSpecification",
    "SSESpecification",
    "PointInTimeRecoverySpecification",
    "DeletionProtectionEnabled",
  ]);
  assert.deepEqual(Object.keys(props).filter((k) => !known.has(k)), []);
});

Deno.test("the aggregator: Node.js 22, stream mapping with bisect, bounded retries, DLQ, alarms", () => {
  const r = template.Resources;
  const fn = r.AggregatorFunction.Properties;
  assert.equal(fn.Runtime, "nodejs22.x");
  assert.equal(fn.Handler, "index.handler");
  const esm = r.AggregatorEventSourceMapping.Properties;
  assert.equal(esm.BisectBatchOnFunctionError, true);
  assert.equal(esm.MaximumRetryAttempts, 3);
  assert.equal(esm.MaximumRecordAgeInSeconds, 3600);
  assert.deepEqual(esm.DestinationConfig, {
    OnFailure: { Destination: { "Fn::GetAtt": ["AggregatorDeadLetterQueue", "Arn"] } },
  });
  assert.deepEqual(esm.FunctionResponseTypes, ["ReportBatchItemFailures"]);
  assert.equal(r.AggregatorLogGroup.Properties.RetentionInDays !== undefined, true);
  const alarms = Object.values(r).filter((x) => x.Type === "AWS::CloudWatch::Alarm");
  assert.deepEqual(
    alarms.map((a) => a.Properties.MetricName).sort(),
    [
      "ApproximateNumberOfMessagesVisible",
      "Errors",
      "IteratorAge",
      "ThrottledRequests",
      "Throttles",
    ],
  );
  for (const name of ["AggregatorFunction", "AggregatorRole", "AggregatorDeadLetterQueue"]) {
    assert.equal(r[name].Condition, "DeployAggregator", name);
  }
});

Deno.test({
  name: "cfn-lint passes on the template with no errors or warnings",
  ignore: spawnSync("cfn-lint", ["--version"]).status !== 0 && Deno.env.get("CI") !== "true",
  fn() {
    const r = spawnSync("cfn-lint", ["templates/zae-limiter.yaml"], {
      cwd: new URL("..", import.meta.url).pathname,
      encoding: "utf8",
    });
    assert.equal(r.error, undefined, "cfn-lint is not installed (pip install cfn-lint)");
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  },
});

/** The `dynamodb:` actions one policy statement list allows on the table itself. */
function policyActions(resource: string): Set<string> {
  const doc = template.Resources[resource].Properties.PolicyDocument as {
    Statement: { Action: string | string[]; Resource: unknown }[];
  };
  const out = new Set<string>();
  for (const s of doc.Statement) {
    for (const a of [s.Action].flat()) out.add(a);
  }
  return out;
}

/**
 * IAM actions of the calls a client sends: one per command, and for a transaction one per item
 * (IAM has no TransactWriteItems action; each item is authorised as UpdateItem, PutItem, ...).
 */
function recordActions(client: DynamoDBClient): Set<string> {
  const seen = new Set<string>();
  client.middlewareStack.add(
    (next, context) => (args) => {
      const command = context.commandName?.replace(/Command$/, "") ?? "?";
      if (command === "TransactWriteItems") {
        const items = (args.input as { TransactItems: Record<string, unknown>[] }).TransactItems;
        for (const item of items) {
          for (const kind of Object.keys(item)) {
            seen.add(
              `dynamodb:${kind === "ConditionCheck" ? "ConditionCheckItem" : `${kind}Item`}`,
            );
          }
        }
      } else {
        seen.add(`dynamodb:${command}`);
      }
      return next(args);
    },
    { step: "initialize", name: "recordActions" },
  );
  return seen;
}

Deno.test({
  name: "policies grant exactly what the library calls (recorded on DynamoDB Local)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const adminClient = localClient(ddb.endpoint);
    const hotClient = localClient(ddb.endpoint);
    try {
      const tableName = uniqueTableName("policy");
      const adminSeen = recordActions(adminClient);
      const admin = new RateLimiter({ tableName, client: adminClient, createTable: true });
      const rpm = Limit.perMinute("rpm", 100);
      const tpm = Limit.perMinute("tpm", 10_000);
      await t.step("administration: entities, stored limits, table", async () => {
        await admin.createEntity({ entityId: "proj", name: "Project" });
        await admin.createEntity({ entityId: "key", parentId: "proj", cascade: true });
        await admin.createEntity({ entityId: "solo" });
        await admin.setLimits({ entityId: "key", resource: "gpt-4", limits: [rpm, tpm] });
        await admin.setLimits({ entityId: "proj", limits: [rpm] });
        await admin.getLimits({ entityId: "key", resource: "gpt-4" });
        await admin.getEntity("key");
        await admin.listChildren("proj");
        await admin.listResourceBuckets({ resource: "gpt-4" });
        await admin.listEntities({ withCustomLimits: true });
        await admin.setResourceDefaults({ resource: "claude", limits: [rpm] });
        await admin.getResourceDefaults({ resource: "claude" });
        await admin.listResources();
        await admin.setSystemDefaults({ limits: [rpm] });
        await admin.getSystemDefaults();
        await admin.listStoredLimits({ entityId: "key" });
        await admin.deleteSystemDefaults();
        await admin.acquire({
          entityId: "solo",
          resource: "r2",
          limits: [rpm],
          consume: { rpm: 5 },
        })
          .then((l) => l.commit());
        await admin.resetBucket({ entityId: "solo", resource: "r2" });
        await admin.topUp({
          entityId: "solo",
          resource: "r2",
          limit: "rpm",
          amount: 1,
          idempotencyKey: "policy",
        });
        // Controls: entity updates (with a ConditionCheck of the new parent), resource controls.
        await admin.createEntity({ entityId: "vip" });
        await admin.setBypass({ entityId: "vip", bypass: true });
        await admin.createEntity({ entityId: "off" });
        await admin.disableEntity("off");
        await admin.createEntity({ entityId: "moved" });
        await admin.setParent({ entityId: "moved", parentId: "proj" });
        await admin.setCascade({ entityId: "moved", cascade: true });
        await admin.setParent({ entityId: "moved" });
        await admin.disableResource("closed");
        await admin.getResourceControls("closed");
        await admin.disableResource("reopened");
        await admin.enableResource("reopened");
        // The audit trail: every change above wrote its event (TransactWriteItems: a Put each).
        await admin.setLimits({ entityId: "solo", resource: "gpt-4", limits: [rpm] });
        await admin.deleteLimits({ entityId: "solo", resource: "gpt-4" });
        await admin.getAuditEvents({ limit: 5 });
        await admin.getAuditEvents({ entityId: "key", since: 0 });
      });
      await t.step("namespaces: a namespaced admin, and list, create, delete", async () => {
        const billing = new RateLimiter({ tableName, client: adminClient, namespace: "billing" });
        await billing.createEntity({ entityId: "proj" });
        await billing.setLimits({ entityId: "proj", resource: "gpt-4", limits: [rpm] });
        await billing.close();
        assert.equal(await createNamespace(adminClient, tableName, "extra"), true);
        assert.deepEqual((await listNamespaces(adminClient, tableName)).map((n) => n.name), [
          "billing",
          "extra",
        ]);
        assert.equal(await deleteNamespace(adminClient, tableName, "extra"), 0);
        assert.ok(adminSeen.has("dynamodb:Scan"));
      });

      const hotSeen = recordActions(hotClient);
      const hot = new RateLimiter({ tableName, client: hotClient });
      await t.step(
        "hot path: acquire, adjust, commit, rollback, cascade, stored limits, ping",
        async () => {
          await hot.acquire({
            entityId: "solo",
            resource: "gpt-4",
            limits: [rpm, tpm],
            consume: { rpm: 1, tpm: 500 },
          }, async (lease) => {
            await lease.adjust({ tpm: 120 });
          });
          const lease = await hot.acquire({
            entityId: "solo",
            resource: "gpt-4",
            limits: [rpm],
            consume: { rpm: 1 },
          });
          await lease.rollback();
          await hot.acquire({
            entityId: "key",
            resource: "gpt-4",
            limits: [rpm, tpm],
            consume: { rpm: 1, tpm: 100 },
            useStoredLimits: true,
          }, async (l) => {
            await l.adjust({ tpm: -50 });
          });
          await hot.acquire({
            entityId: "key",
            resource: "gpt-4",
            limits: [rpm],
            consume: { rpm: 1 },
            cascade: true,
          }, async () => {});
          await assert.rejects(
            hot.acquire({
              entityId: "solo",
              resource: "gpt-4",
              limits: [rpm],
              consume: { rpm: 1000 },
            }),
          );
          await hot.available({ entityId: "solo", resource: "gpt-4", limits: [rpm] });
          // A namespaced hot path calls the same actions.
          const billingHot = new RateLimiter({
            tableName,
            client: hotClient,
            namespace: "billing",
          });
          await billingHot.acquire({
            entityId: "proj",
            resource: "gpt-4",
            limits: [rpm],
            consume: { rpm: 1 },
            useStoredLimits: true,
          }, async () => {});
          await billingHot.close();
          // The health check (`limiter.ping()`, `zae-limiter check`) runs with the same role.
          assert.equal((await hot.ping()).ok, true);
          // the resource's defaults, without limits in the call
          await hot.acquire({ entityId: "solo", resource: "claude", consume: { rpm: 1 } });
          // Controls on the hot path: a bypassed request (counted), disabled entity and resource.
          const bypassed = await hot.acquire({
            entityId: "vip",
            resource: "gpt-4",
            limits: [rpm],
            consume: { rpm: 1 },
          });
          assert.equal(bypassed.bypassed, true);
          await bypassed.commit();
          for (const [entityId, resource] of [["off", "gpt-4"], ["solo", "closed"]]) {
            await assert.rejects(
              hot.acquire({ entityId, resource, limits: [rpm], consume: { rpm: 1 } }),
              EntityDisabledError,
            );
          }
          await hot.timeUntilAvailable({
            entityId: "key",
            resource: "gpt-4",
            limits: [],
            useStoredLimits: true,
            needed: { rpm: 1 },
          });
        },
      );

      await t.step("the hot-path policy is exactly the hot path's calls", () => {
        assert.deepEqual([...hotSeen].sort(), [...policyActions("AcquirePolicy")].sort());
      });
      await t.step("the admin policy covers administration and the hot path", () => {
        const granted = policyActions("AdminPolicy");
        const missing = [...adminSeen, ...hotSeen].filter((a) =>
          !granted.has(a) &&
          // Creating the table is the stack's job (createTable: true then finds it and only
          // checks it and its TTL).
          a !== "dynamodb:CreateTable"
        );
        assert.deepEqual(missing, []);
      });
      await t.step(
        "every policy lets its role run the health check, which only describes",
        async () => {
          const opsClient = localClient(ddb.endpoint);
          const opsSeen = recordActions(opsClient);
          const ops = new RateLimiter({ tableName, client: opsClient });
          try {
            assert.equal((await ops.ping()).ok, true);
          } finally {
            await ops.close();
            opsClient.destroy();
          }
          assert.deepEqual([...opsSeen], ["dynamodb:DescribeTable"]);
          for (const policy of ["AcquirePolicy", "AdminPolicy", "ReadOnlyPolicy"]) {
            assert.ok(policyActions(policy).has("dynamodb:DescribeTable"), policy);
          }
        },
      );
      await t.step("the upgrade policy is exactly what upgradeTable calls", async () => {
        // A version-1 table: the table as before GSI3, and an entity item without GSI3 keys.
        const upgradeClient = localClient(ddb.endpoint);
        try {
          const v1 = uniqueTableName("policy_v1");
          const def = tableDefinition(v1);
          await upgradeClient.send(
            new CreateTableCommand({
              ...def,
              AttributeDefinitions: def.AttributeDefinitions!.filter((d) =>
                !d.AttributeName!.startsWith("GSI3")
              ),
              GlobalSecondaryIndexes: def.GlobalSecondaryIndexes!.filter((i) =>
                i.IndexName !== "GSI3"
              ),
            }),
          );
          await upgradeClient.send(
            new PutItemCommand({
              TableName: v1,
              Item: { PK: { S: "ENTITY#k" }, SK: { S: "#META" }, entityId: { S: "k" } },
            }),
          );
          const seen = recordActions(upgradeClient);
          const r = await upgradeTable({ client: upgradeClient, tableName: v1 });
          assert.equal(r.changed, true);
          assert.deepEqual([...seen].sort(), [...policyActions("UpgradePolicy")].sort());
        } finally {
          upgradeClient.destroy();
        }
      });
      await t.step("listing entities is the admin policy's Query on the indexes", () => {
        const doc = template.Resources.AdminPolicy.Properties.PolicyDocument as {
          Statement: { Action: string | string[]; Resource: unknown }[];
        };
        assert.ok(doc.Statement.some((s) =>
          [s.Action].flat().includes("dynamodb:Query") &&
          JSON.stringify(s.Resource).includes("/index/*")
        ));
        assert.ok(!policyActions("AdminPolicy").has("dynamodb:UpdateTable"));
        // Its only Scan is `namespace delete`'s (statement NamespaceDelete).
        assert.deepEqual(
          doc.Statement.filter((s) => [s.Action].flat().includes("dynamodb:Scan"))
            .map((s) => (s as { Sid?: string }).Sid),
          ["NamespaceDelete"],
        );
      });
      await t.step("the read-only policy reads the audit trail", async () => {
        const readClient = localClient(ddb.endpoint);
        const readSeen = recordActions(readClient);
        const reader = new RateLimiter({ tableName, client: readClient });
        try {
          const all = await reader.getAuditEvents({ limit: 1000 });
          assert.ok(all.events.some((e) => e.action === "limits.delete"));
          const one = await reader.getAuditEvents({ entityId: "key", resource: "gpt-4" });
          assert.ok(one.events.length > 0);
          const granted = policyActions("ReadOnlyPolicy");
          assert.deepEqual([...readSeen].filter((a) => !granted.has(a)), []);
          assert.ok(readSeen.has("dynamodb:Query"));
        } finally {
          await reader.close();
          readClient.destroy();
        }
      });
      await t.step(
        "audit events are written only by admin calls (PutItem in a transaction)",
        () => {
          assert.ok(adminSeen.has("dynamodb:PutItem"));
          assert.ok(!policyActions("AcquirePolicy").has("dynamodb:PutItem"));
          assert.ok(!policyActions("ReadOnlyPolicy").has("dynamodb:PutItem"));
        },
      );
      await t.step("the read-only policy only reads", () => {
        assert.deepEqual([...policyActions("ReadOnlyPolicy")].sort(), [
          "dynamodb:BatchGetItem",
          "dynamodb:DescribeTable",
          "dynamodb:GetItem",
          "dynamodb:Query",
        ]);
      });
      await admin.close();
      await hot.close();
    } finally {
      adminClient.destroy();
      hotClient.destroy();
      await ddb.stop();
    }
  },
});
