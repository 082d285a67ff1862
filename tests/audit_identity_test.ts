/**
 * Who and how long, on moto's server: the caller's ARN from STS `GetCallerIdentity` (asked once,
 * on the first audited change), the `principal` option winning, `local` for a local endpoint, an
 * STS failure refusing the change; and the stack's `AuditRetentionDays`, recorded by the deploy in
 * the table, setting every event's TTL.
 */
import assert from "node:assert/strict";
import { DynamoDBClient, GetItemCommand, QueryCommand } from "@aws-sdk/client-dynamodb";
import { ConfigurationError, RateLimiter, RateLimiterUnavailable } from "../mod.ts";
import { deployStack } from "../src/infra/mod.ts";
import { parseAuditItem } from "../src/audit_record.ts";
import { startMoto } from "./_moto.ts";

Deno.test({
  name: "audit identity (STS on moto) and retention (deploy's AuditRetentionDays)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const moto = await startMoto();
    const ddb = new DynamoDBClient(moto.aws);
    const tableName = "audit_identity";
    // Counts the STS calls reaching moto's server, through a pass-through proxy.
    let stsCalls = 0;
    const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      stsCalls++;
      const url = new URL(req.url);
      return await fetch(`${moto.endpoint}${url.pathname}`, {
        method: req.method,
        headers: req.headers,
        body: await req.arrayBuffer(),
      });
    });
    const stsEndpoint = `http://127.0.0.1:${proxy.addr.port}/`;
    const limiters: RateLimiter[] = [];
    const open = (options: Partial<ConstructorParameters<typeof RateLimiter>[0]>) => {
      const l = new RateLimiter({ tableName, endpoint: moto.endpoint, ...options });
      limiters.push(l);
      return l;
    };
    const events = async () =>
      ((await ddb.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: "PK = :p",
          ExpressionAttributeValues: { ":p": { S: "AUDIT" } },
        }),
      )).Items ?? []).map(parseAuditItem);
    try {
      await t.step("deploy records the stack's audit retention in the table", async () => {
        const result = await deployStack({
          ...moto.aws,
          tableName,
          aggregator: false,
          auditRetentionDays: 7,
          pollMs: 50,
        });
        assert.equal(result.outputs.AuditRetentionDays, "7");
        const item = await ddb.send(
          new GetItemCommand({
            TableName: tableName,
            Key: { PK: { S: "SYSTEM" }, SK: { S: "#CONFIG" } },
          }),
        );
        assert.equal(item.Item?.auditRetentionDays?.N, "7");
      });

      await t.step("the caller's ARN from STS, asked once; the stack's retention", async () => {
        const limiter = open({ stsEndpoint });
        await limiter.createEntity({ entityId: "sts-1" });
        await limiter.createEntity({ entityId: "sts-2" });
        await limiter.deleteEntity("sts-2");
        assert.equal(stsCalls, 1);
        const got = await events();
        assert.equal(got.length, 3);
        for (const e of got) {
          assert.match(e.principal, /^arn:aws:(iam|sts)::\d{12}:/);
          const days = (e.expiresAtSec - e.atMs / 1000) / 86_400;
          assert.ok(days > 6.99 && days <= 7, `retention ${days} days`);
        }
      });

      await t.step("the principal option wins; no STS call", async () => {
        const limiter = open({ stsEndpoint, principal: "ops@example.com" });
        await limiter.createEntity({ entityId: "named" });
        assert.equal(stsCalls, 1);
        const e = (await events()).find((e) =>
          e.scope.kind === "entity" && e.scope.entityId === "named"
        );
        assert.equal(e?.principal, "ops@example.com");
      });

      await t.step("a local endpoint without stsEndpoint is `local`", async () => {
        const limiter = open({ auditRetentionDays: 30 });
        await limiter.createEntity({ entityId: "loc" });
        assert.equal(stsCalls, 1);
        const e = (await events()).find((e) =>
          e.scope.kind === "entity" && e.scope.entityId === "loc"
        );
        assert.equal(e?.principal, "local");
        // The option wins over the stack's retention.
        const days = (e!.expiresAtSec - e!.atMs / 1000) / 86_400;
        assert.ok(days > 29.99 && days <= 30, `retention ${days} days`);
      });

      await t.step(
        "STS refusing or not answering refuses the change; nothing written",
        async () => {
          const refusing = Deno.serve(
            { hostname: "127.0.0.1", port: 0, onListen() {} },
            () =>
              new Response(
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>" +
                  "<Message>The security token included in the request is invalid.</Message>" +
                  "</Error></ErrorResponse>",
                { status: 403, headers: { "content-type": "text/xml" } },
              ),
          );
          try {
            const denied = open({ stsEndpoint: `http://127.0.0.1:${refusing.addr.port}/` });
            await assert.rejects(
              denied.createEntity({ entityId: "refused" }),
              (err) =>
                err instanceof ConfigurationError && err.kind === "bad-credentials" &&
                /InvalidClientTokenId/.test(err.message) && /principal/.test(err.message),
            );
          } finally {
            await refusing.shutdown();
          }
          const down = open({ stsEndpoint: "http://127.0.0.1:9/" });
          await assert.rejects(
            down.createEntity({ entityId: "refused" }),
            (err) => err instanceof RateLimiterUnavailable,
          );
          assert.equal(await limiters[0].getEntity("refused"), undefined);
          assert.ok(
            !(await events()).some((e) =>
              e.scope.kind === "entity" && e.scope.entityId === "refused"
            ),
          );
        },
      );
    } finally {
      for (const l of limiters) await l.close();
      ddb.destroy();
      await proxy.shutdown();
      await moto.stop();
    }
  },
});
