/**
 * Namespaces: several applications on one table never see one another. Pure properties of the
 * key mapping, the in-memory backend, and against DynamoDB Local: separate entities, limits,
 * children, buckets and usage; crafted ids under a namespace touch only its partitions (the
 * requests are watched with a client middleware); the registry and `namespace
 * list|create|delete` through the CLI; the aggregator writes a namespaced snapshot in its
 * namespace.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type AttributeValue, type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, ValidationError } from "../mod.ts";
import { createNamespace, KeySpace, listNamespaces } from "../src/namespaces.ts";
import { validateNamespace } from "../src/keyspace.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import { CLOCK_PROBE_KEY } from "../src/clock.ts";
import { createTestLimiter, InMemoryBackend } from "../src/testing/mod.ts";
import { cli } from "./_cli.ts";
import { dynamoTest, localClient, uniqueTableName } from "./_dynamo.ts";

const nameArb = fc.stringMatching(/^[a-z][a-z0-9_-]{0,20}$/).filter((n) => n !== "default");
const idArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,20}$/);
const resourceArb = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.\/-]{0,20}$/);

/** Every partition key a space builds for an id / resource. */
function partitionKeys(space: KeySpace, id: string, resource: string): string[] {
  return [
    space.entityPk(id),
    space.parentKey(id),
    space.resourceKey(resource),
    space.systemPk(),
    space.auditPk(),
    space.auditScopePk(`ENTITY#${id}`),
    space.entitiesKey(),
  ];
}

Deno.test("key spaces: distinct (namespace, key) pairs never share a partition key", () => {
  const space = fc.option(nameArb, { nil: undefined }).map((n) => KeySpace.of(n));
  fc.assert(
    fc.property(space, idArb, resourceArb, space, idArb, resourceArb, (s1, i1, r1, s2, i2, r2) => {
      const a = partitionKeys(s1, i1, r1);
      const b = partitionKeys(s2, i2, r2);
      for (let x = 0; x < a.length; x++) {
        for (let y = 0; y < b.length; y++) {
          if (a[x] !== b[y]) continue;
          // Equal keys only for the same namespace, the same kind of key and the same input.
          assert.equal(s1.namespace, s2.namespace, `${a[x]} in two namespaces`);
          assert.equal(x, y, `${a[x]} is two kinds of key`);
          if (x === 0 || x === 1 || x === 5) assert.equal(i1, i2);
          if (x === 2) assert.equal(r1, r2);
        }
      }
      // A namespaced key is never a default-namespace key, and parses back to its namespace.
      for (const pk of a) {
        const parsed = KeySpace.parse(pk);
        assert.equal(parsed?.space.namespace, s1.namespace);
        if (s1.namespace !== undefined) {
          assert.ok(pk.startsWith(`NS#${s1.namespace}#`));
          assert.equal(KeySpace.DEFAULT.entityIdOf(pk), undefined);
        }
      }
      assert.equal(s1.entityIdOf(s1.entityPk(i1)), i1);
      if (s1.namespace !== s2.namespace) assert.equal(s2.entityIdOf(s1.entityPk(i1)), undefined);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("namespace names: the rule, refused with a ValidationError naming the field", () => {
  for (const ok of ["billing", "a", "search-v2", "team_1", "a".repeat(64)]) {
    assert.equal(validateNamespace(ok), ok);
  }
  for (const bad of ["", "Billing", "1abc", "bill#ing", "NS#x", "a".repeat(65), "é", " x", 7]) {
    assert.throws(() => KeySpace.of(bad as string), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.field, "namespace");
      assert.match(err.message, /lower-case letter/);
      return true;
    });
    assert.throws(() => new RateLimiter({ tableName: "t_ns", namespace: bad as string }), {
      name: "ValidationError",
    });
  }
  assert.equal(KeySpace.of("default"), KeySpace.DEFAULT);
  assert.equal(KeySpace.of(undefined).entityPk("k"), "ENTITY#k");
  assert.equal(KeySpace.parse("NS#Bad#ENTITY#k"), undefined);
});

Deno.test("in-memory backend: limiters in different namespaces do not see each other", async () => {
  const backend = new InMemoryBackend();
  const limits = [Limit.perMinute("rpm", 2)];
  const mk = (namespace?: string) =>
    new RateLimiter({ tableName: "in-memory", backend, clock: () => 0, namespace });
  const def = mk(), billing = mk("billing"), search = mk("search");
  try {
    await billing.createEntity({ entityId: "proj-1" });
    await billing.createEntity({ entityId: "key-1", parentId: "proj-1" });
    await billing.setLimits({ entityId: "key-1", resource: "api", limits });
    assert.equal(await def.getEntity("proj-1"), undefined);
    assert.equal(await search.getEntity("key-1"), undefined);
    assert.deepEqual(await def.listChildren("proj-1"), []);
    assert.equal((await billing.listChildren("proj-1")).length, 1);
    await assert.rejects(() =>
      def.getLimits({ entityId: "key-1", resource: "api" }).then((l) => {
        if (l.length === 0) throw new Error("none");
      })
    );
    // Buckets: billing drains key-1; the default namespace's key-1 is still full.
    await billing.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 2 } });
    assert.equal((await def.available({ entityId: "key-1", resource: "api", limits })).rpm, 2);
    assert.equal((await billing.available({ entityId: "key-1", resource: "api", limits })).rpm, 0);
    assert.deepEqual(
      (await def.listResourceBuckets({ resource: "api" })).map((b) => b.entityId),
      [],
    );
    assert.deepEqual(backend.namespaces(), ["billing"]);
    assert.equal(backend.auditLog.length, 0, "the default namespace recorded no event");
    // createTestLimiter takes the option too.
    const t = createTestLimiter({ namespace: "billing" });
    assert.equal(t.namespace, "billing");
    await t.close();
    // A backend without namespaces is refused for a namespaced limiter, before any write.
    assert.throws(
      () =>
        new RateLimiter({
          tableName: "t_ns",
          backend: { buckets: backend.buckets, entities: backend.entities },
          namespace: "billing",
        }),
      (err: unknown) => err instanceof ValidationError && err.field === "namespace",
    );
  } finally {
    await Promise.all([def.close(), billing.close(), search.close()]);
  }
});

/** Records the partition keys (and GSI partition keys) every request names. */
function watchKeys(client: DynamoDBClient): { command: string; pks: string[] }[] {
  const seen: { command: string; pks: string[] }[] = [];
  const fromKey = (out: string[], k: unknown) => {
    const pk = (k as Record<string, AttributeValue> | undefined)?.PK?.S;
    if (pk !== undefined) out.push(pk);
    for (const g of ["GSI1PK", "GSI2PK", "GSI3PK"]) {
      const v = (k as Record<string, AttributeValue> | undefined)?.[g]?.S;
      if (v !== undefined) out.push(v);
    }
  };
  client.middlewareStack.add(
    (next, context) => (args) => {
      const i = args.input as Record<string, unknown> & {
        TransactItems?: Record<string, { Key?: unknown; Item?: unknown }>[];
        RequestItems?: Record<string, unknown>;
        ExpressionAttributeValues?: Record<string, AttributeValue>;
        KeyConditionExpression?: string;
      };
      const pks: string[] = [];
      fromKey(pks, i.Key);
      fromKey(pks, i.Item);
      for (const t of i.TransactItems ?? []) {
        for (const op of Object.values(t)) {
          fromKey(pks, op.Key);
          fromKey(pks, op.Item);
        }
      }
      for (const req of Object.values(i.RequestItems ?? {})) {
        const list = Array.isArray(req) ? req : (req as { Keys?: unknown[] }).Keys ?? [];
        for (const w of list as Record<string, { Key?: unknown; Item?: unknown }>[]) {
          fromKey(pks, w.PutRequest?.Item ?? w.DeleteRequest?.Key ?? w);
        }
      }
      if (i.KeyConditionExpression) {
        // The partition-key value of a Query (the first value its key condition names).
        const m = /(?:PK|#pk)\s*=\s*(:\w+)/.exec(i.KeyConditionExpression);
        const v = m ? i.ExpressionAttributeValues?.[m[1]]?.S : undefined;
        if (v !== undefined) pks.push(v);
      }
      seen.push({ command: String(context.commandName), pks });
      return next(args);
    },
    { step: "initialize", name: "watchNamespaceKeys" },
  );
  return seen;
}

async function scanPks(client: DynamoDBClient, tableName: string): Promise<string[]> {
  const out: string[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(
      new ScanCommand({ TableName: tableName, ExclusiveStartKey: start, ConsistentRead: true }),
    );
    for (const item of page.Items ?? []) out.push(item.PK.S!);
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

dynamoTest("namespaces on one DynamoDB table", async (t, { ddb, client }) => {
  const tableName = uniqueTableName("ns");
  let now = Date.parse("2026-11-30T10:15:00Z");
  const clients: DynamoDBClient[] = [];
  const mk = (namespace?: string) => {
    const c = localClient(ddb.endpoint);
    clients.push(c);
    const seen = watchKeys(c);
    const limiter = new RateLimiter({ tableName, client: c, clock: () => now, namespace });
    return { limiter, seen };
  };
  const def = mk(), billing = mk("billing"), search = mk("search");
  const rpm10 = [Limit.perMinute("rpm", 10)];
  const rpm3 = [Limit.perMinute("rpm", 3)];
  try {
    await def.limiter.createTable();

    await t.step("entities, stored limits and children are per namespace", async () => {
      for (const { limiter } of [def, billing]) {
        await limiter.createEntity({ entityId: "proj-1", name: limiter.namespace });
        await limiter.createEntity({ entityId: "key-1", parentId: "proj-1", cascade: true });
      }
      await def.limiter.setLimits({ entityId: "key-1", resource: "gpt-4", limits: rpm10 });
      await billing.limiter.setLimits({ entityId: "key-1", resource: "gpt-4", limits: rpm3 });
      assert.equal((await def.limiter.getEntity("proj-1"))?.name, "default");
      assert.equal((await billing.limiter.getEntity("proj-1"))?.name, "billing");
      assert.equal(await search.limiter.getEntity("proj-1"), undefined);
      assert.deepEqual(
        (await billing.limiter.getLimits({ entityId: "key-1", resource: "gpt-4" })).map((l) =>
          l.capacity
        ),
        [3],
      );
      assert.deepEqual(
        (await def.limiter.getLimits({ entityId: "key-1", resource: "gpt-4" })).map((l) =>
          l.capacity
        ),
        [10],
      );
      assert.deepEqual(await search.limiter.listChildren("proj-1"), []);
      assert.deepEqual((await billing.limiter.listChildren("proj-1")).map((e) => e.entityId), [
        "key-1",
      ]);
      // Creating in one namespace does not collide with the same id in another.
      await search.limiter.createEntity({ entityId: "proj-1" });
    });

    await t.step("buckets are per namespace", async () => {
      const call = { entityId: "key-1", resource: "gpt-4", useStoredLimits: true, limits: rpm10 };
      for (let i = 0; i < 3; i++) {
        await (await billing.limiter.acquire({ ...call, consume: { rpm: 1 } })).commit();
      }
      await assert.rejects(
        () => billing.limiter.acquire({ ...call, consume: { rpm: 1 } }),
        { name: "RateLimitExceeded" },
      );
      await (await def.limiter.acquire({ ...call, consume: { rpm: 1 } })).commit();
      assert.equal((await def.limiter.available(call)).rpm, 9);
      assert.equal((await billing.limiter.available(call)).rpm, 0);
      assert.equal((await search.limiter.available({ ...call, useStoredLimits: false })).rpm, 10);
    });

    await t.step(
      "every item of a namespace is under its prefix; the registry lists it",
      async () => {
        const pks = await scanPks(client, tableName);
        const billingPks = pks.filter((pk) => pk.startsWith("NS#billing#"));
        assert.ok(billingPks.includes("NS#billing#ENTITY#key-1"));
        // Each namespace's admin changes are audited in its own audit partition.
        assert.ok(billingPks.includes("NS#billing#AUDIT"));
        assert.ok(pks.includes("AUDIT") && pks.includes("NS#search#AUDIT"));
        for (const pk of pks) {
          assert.ok(
            /^(NS#(billing|search)#)?(ENTITY#|AUDIT$)/.test(pk) || pk === "NAMESPACES" ||
              pk === "SYSTEM", // the table's schema version: one for every namespace
            `unexpected partition key ${pk}`,
          );
        }
        assert.deepEqual((await listNamespaces(client, tableName)).map((n) => n.name), [
          "billing",
          "search",
        ]);
        assert.equal(await createNamespace(client, tableName, "billing"), false, "idempotent");
      },
    );

    await t.step(
      "crafted ids and resources under a namespace touch only its partitions",
      async () => {
        const crafted = fc.oneof(
          fc.constantFrom(
            "proj-1",
            "key-1",
            "ENTITY#proj-1",
            "NS#default#ENTITY#proj-1",
            "#ENTITY#proj-1",
            "NS#billing#ENTITY#key-1",
            "NS",
            "NS#",
            "../billing",
            "PARENT#proj-1",
          ),
          fc.tuple(fc.constantFrom("NS#", "ENTITY#", "#", ""), idArb).map(([a, b]) => a + b),
        );
        const before = JSON.stringify(
          (await scanPks(client, tableName)).filter((pk) => !pk.startsWith("NS#search#")).sort(),
        );
        let checked = 0;
        await fc.assert(
          fc.asyncProperty(crafted, fc.oneof(resourceArb, crafted), async (id, resource) => {
            fc.pre(id !== "proj-1" && id !== "key-1"); // search's own entities
            search.seen.length = 0;
            const calls: (() => Promise<unknown>)[] = [
              () =>
                search.limiter.acquire({
                  entityId: id,
                  resource,
                  limits: rpm10,
                  consume: { rpm: 1 },
                }),
              () =>
                search.limiter.available({
                  entityId: id,
                  resource,
                  limits: rpm10,
                  useStoredLimits: true,
                }),
              () => search.limiter.setLimits({ entityId: id, resource, limits: rpm10 }),
              () => search.limiter.getLimits({ entityId: id, resource }),
              () => search.limiter.getEntity(id),
              () => search.limiter.listChildren(id),
              () => search.limiter.listResourceBuckets({ resource }),
              () => search.limiter.getUsageSnapshots({ entityId: id, resource, window: "hourly" }),
              () => search.limiter.deleteLimits({ entityId: id, resource }),
              () => search.limiter.deleteEntity(id),
            ];
            for (const call of calls) {
              try {
                const r = await call();
                if (r && typeof r === "object" && "commit" in r) {
                  await (r as { commit(): Promise<void> }).commit();
                }
              } catch (err) {
                if (
                  !(err instanceof Error &&
                    /ValidationError|exists|not found|RateLimitExceeded/i.test(
                      `${err.name} ${err.message}`,
                    ))
                ) throw err;
              }
            }
            for (const { command, pks } of search.seen) {
              for (const pk of pks) {
                checked++;
                assert.ok(
                  pk.startsWith("NS#search#") || pk === "NAMESPACES" || pk === CLOCK_PROBE_KEY,
                  `${command} named ${pk} for id ${JSON.stringify(id)}`,
                );
              }
            }
          }),
          { numRuns: 60 },
        );
        const after = JSON.stringify(
          (await scanPks(client, tableName)).filter((pk) => !pk.startsWith("NS#search#")).sort(),
        );
        assert.equal(after, before, "no item outside the namespace changed");
        // The property saw real traffic (valid crafted ids reach DynamoDB), not only refusals.
        assert.ok(checked > 50, `only ${checked} partition keys checked`);
      },
    );

    await t.step("the aggregator writes each namespace's snapshots in its namespace", async () => {
      now += 60_000;
      await aggregateLocal({ tableName, client });
      const billingUsage = await billing.limiter.getUsageSnapshots({
        entityId: "key-1",
        resource: "gpt-4",
        window: "hourly",
      });
      const defaultUsage = await def.limiter.getUsageSnapshots({
        entityId: "key-1",
        resource: "gpt-4",
        window: "hourly",
      });
      assert.equal(billingUsage.length, 1);
      assert.equal(billingUsage[0].requests, 3);
      assert.equal(billingUsage[0].consumed.rpm, 3);
      assert.equal(defaultUsage.length, 1);
      assert.equal(defaultUsage[0].requests, 1);
      // Cascade: the parent of each namespace counts its own child only.
      const parent = await billing.limiter.getUsageSnapshots({
        entityId: "proj-1",
        window: "hourly",
      });
      assert.equal(parent[0]?.requests, 3);
      assert.deepEqual(
        await search.limiter.getUsageSnapshots({ entityId: "key-1", window: "hourly" }),
        [],
      );
      // The resource index (GSI2) is namespaced too.
      const listed = async (l: RateLimiter) =>
        (await l.listResourceBuckets({ resource: "gpt-4" })).map((b) => b.entityId).sort();
      assert.deepEqual(await listed(billing.limiter), ["key-1", "proj-1"]);
      assert.deepEqual(await listed(def.limiter), ["key-1", "proj-1"]);
      const pks = await scanPks(client, tableName);
      assert.ok(
        pks.filter((pk) => pk === "NS#billing#ENTITY#key-1").length >= 4,
        "meta, limits, bucket, usage",
      );
    });

    const env = { AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "x", AWS_REGION: "us-east-1" };
    const conn = ["--table-name", tableName, "--endpoint-url", ddb.endpoint];

    await t.step("CLI: --namespace and $ZAE_LIMITER_NAMESPACE pick the namespace", async () => {
      const got = await cli([
        "--json",
        "--namespace",
        "billing",
        "entity",
        "get",
        "proj-1",
        ...conn,
      ], env);
      assert.equal(got.code, 0, got.err);
      assert.equal(JSON.parse(got.out).name, "billing");
      const viaEnv = await cli(["--json", "entity", "get", "proj-1", ...conn], {
        ...env,
        ZAE_LIMITER_NAMESPACE: "billing",
      });
      assert.equal(viaEnv.code, 0, viaEnv.err);
      assert.equal(JSON.parse(viaEnv.out).name, "billing");
      const usage = await cli(
        ["--json", "--namespace", "billing", "usage", "list", "--entity", "key-1", ...conn],
        env,
      );
      assert.equal(usage.code, 0, usage.err);
      assert.equal(JSON.parse(usage.out)[0].requests, 3);
      const bad = await cli(["--namespace", "Bad#1", "entity", "get", "proj-1", ...conn], env);
      assert.notEqual(bad.code, 0);
      assert.match(bad.err, /namespace/);
    });

    await t.step("CLI: namespace create, list, delete", async () => {
      const created = await cli(["namespace", "create", "extra", ...conn], env);
      assert.equal(created.code, 0, created.err);
      assert.match(created.out, /Created namespace extra/);
      const again = await cli(["namespace", "create", "extra", ...conn], env);
      assert.match(again.out, /already exists/);
      const list = await cli(["--json", "namespace", "list", ...conn], env);
      assert.equal(list.code, 0, list.err);
      assert.deepEqual(JSON.parse(list.out).namespaces.map((n: { name: string }) => n.name), [
        "billing",
        "extra",
        "search",
      ]);
      const refusedDefault = await cli(["namespace", "delete", "default", "--yes", ...conn], env);
      assert.notEqual(refusedDefault.code, 0);
      assert.match(refusedDefault.err, /default/);
      const unconfirmed = await cli(["namespace", "delete", "billing", ...conn], env, undefined);
      assert.notEqual(unconfirmed.code, 0);
      assert.match(unconfirmed.err, /--yes/);

      const before = await scanPks(client, tableName);
      const billingCount = before.filter((pk) => pk.startsWith("NS#billing#")).length;
      const deleted = await cli(
        ["--json", "namespace", "delete", "billing", "--yes", ...conn],
        env,
      );
      assert.equal(deleted.code, 0, deleted.err);
      assert.equal(JSON.parse(deleted.out).items, billingCount);
      const after = await scanPks(client, tableName);
      assert.equal(after.filter((pk) => pk.startsWith("NS#billing#")).length, 0);
      assert.deepEqual(
        after.filter((pk) => pk !== "NAMESPACES").sort(),
        before.filter((pk) => pk !== "NAMESPACES" && !pk.startsWith("NS#billing#")).sort(),
        "nothing outside billing was deleted",
      );
      assert.deepEqual((await listNamespaces(client, tableName)).map((n) => n.name), [
        "extra",
        "search",
      ]);
      assert.equal(await billing.limiter.getEntity("proj-1"), undefined);
      assert.equal((await def.limiter.getEntity("proj-1"))?.name, "default");
      assert.ok(await search.limiter.getEntity("proj-1"));
    });
  } finally {
    await Promise.all([def.limiter.close(), billing.limiter.close(), search.limiter.close()]);
    for (const c of clients) c.destroy();
  }
});
