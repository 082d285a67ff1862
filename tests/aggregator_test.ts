import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type AttributeValue,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from "@aws-sdk/client-dynamodb-streams";
import { unzipSync } from "fflate";
import { Limit, RateLimiter, ValidationError } from "../mod.ts";
import { bundleAggregator } from "../scripts/build_aggregator.ts";
import {
  AGGREGATOR_FILE,
  aggregatorCodeSha256,
  buildAggregatorZip,
} from "../src/aggregator/bundle.ts";
import { AGGREGATOR_JS, AGGREGATOR_JS_SHA256 } from "../src/aggregator/bundle_generated.ts";
import { configFromEnv } from "../src/aggregator/handler.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import { processRecords } from "../src/aggregator/process.ts";
import {
  type BucketStreamRecord,
  consumptionOf,
  isoSeconds,
  padSequence,
  usageSk,
  windowAt,
} from "../src/aggregator/snapshot.ts";
import { getUsageSnapshots } from "../src/usage.ts";
import { KeySpace } from "../src/keyspace.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const at = (iso: string) => Date.parse(iso);
const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 100_000)];
const RESOURCE = "gpt-4";

Deno.test("snapshot math", async (t) => {
  await t.step("windows are UTC hours and days; the end is exclusive", () => {
    const ms = at("2026-11-28T13:59:59.999Z");
    assert.deepEqual(windowAt("hourly", ms), {
      startMs: at("2026-11-28T13:00:00Z"),
      endMs: at("2026-11-28T14:00:00Z"),
    });
    assert.deepEqual(windowAt("daily", ms), {
      startMs: at("2026-11-28T00:00:00Z"),
      endMs: at("2026-11-29T00:00:00Z"),
    });
    assert.equal(
      windowAt("hourly", at("2026-11-28T14:00:00Z")).startMs,
      at("2026-11-28T14:00:00Z"),
    );
    assert.equal(isoSeconds(at("2026-11-28T13:00:00Z")), "2026-11-28T13:00:00Z");
  });

  await t.step("the window type is part of the key: hourly 00:00 and daily differ", () => {
    const start = isoSeconds(at("2026-11-28T00:00:00Z"));
    assert.notEqual(usageSk("gpt-4", "hourly", start), usageSk("gpt-4", "daily", start));
    assert.equal(usageSk("gpt-4", "daily", start), "#USAGE#gpt-4#daily#2026-11-28T00:00:00Z");
  });

  await t.step("sequence numbers pad to 40 digits so string order is numeric order", () => {
    assert.equal(padSequence("900").length, 40);
    assert.ok(padSequence("900") < padSequence("1000"));
    assert.throws(() => padSequence("12a"), /Invalid stream SequenceNumber: "12a"/);
    assert.throws(() => padSequence(""), /must be 1-40 decimal digits/);
  });

  const keys = { PK: { S: "ENTITY#key-a" }, SK: { S: "#BUCKET#gpt-4" } };
  await t.step("a record carries new − old of each total, at the write's ts", () => {
    const c = consumptionOf({
      eventName: "MODIFY",
      dynamodb: {
        Keys: keys,
        OldImage: { ...keys, u_tpm: { N: "500000" }, u_rpm: { N: "1000" }, rq: { N: "1" } },
        NewImage: {
          ...keys,
          u_tpm: { N: "200000" },
          u_rpm: { N: "0" },
          rq: { N: "0" },
          ts: { N: "1795871400000" },
        },
        ApproximateCreationDateTime: 1,
      },
    });
    assert.deepEqual(c, {
      space: KeySpace.DEFAULT,
      entityId: "key-a",
      resource: "gpt-4",
      seqAttr: "seq",
      atMs: 1795871400000,
      consumed: new Map([["tpm", -300000n], ["rpm", -1000n]]),
      requests: -1n,
    });
  });

  await t.step("the first write counts from zero", () => {
    const c = consumptionOf({
      eventName: "INSERT",
      dynamodb: {
        Keys: keys,
        NewImage: { ...keys, u_tpm: { N: "500" }, rq: { N: "1" }, ts: { N: "5" } },
      },
    });
    assert.deepEqual(c?.consumed, new Map([["tpm", 500n]]));
    assert.equal(c?.requests, 1n);
  });

  await t.step("REMOVE, other items and writes without consumption carry nothing", () => {
    const image = { ...keys, u_tpm: { N: "500" }, rq: { N: "1" }, ts: { N: "5" } };
    assert.equal(
      consumptionOf({ eventName: "REMOVE", dynamodb: { Keys: keys, OldImage: image } }),
      undefined,
    );
    const meta = { PK: { S: "ENTITY#key-a" }, SK: { S: "#META" } };
    assert.equal(
      consumptionOf({ eventName: "INSERT", dynamodb: { Keys: meta, NewImage: meta } }),
      undefined,
    );
    const indexed = { ...image, GSI2PK: { S: "RESOURCE#gpt-4" } };
    assert.equal(
      consumptionOf({
        eventName: "MODIFY",
        dynamodb: { Keys: keys, OldImage: image, NewImage: indexed },
      }),
      undefined,
    );
  });

  await t.step("handler configuration from the environment, refusing bad values", () => {
    assert.deepEqual(configFromEnv({ TABLE_NAME: "rate_limits" }), {
      tableName: "rate_limits",
      retentionDays: 90,
      windows: ["hourly", "daily"],
    });
    assert.deepEqual(
      configFromEnv({
        TABLE_NAME: "rate_limits",
        SNAPSHOT_RETENTION_DAYS: "7",
        USAGE_WINDOWS: "daily",
      }),
      { tableName: "rate_limits", retentionDays: 7, windows: ["daily"] },
    );
    assert.throws(() => configFromEnv({}), /Invalid TABLE_NAME: undefined/);
    assert.throws(
      () => configFromEnv({ TABLE_NAME: "t_1", SNAPSHOT_RETENTION_DAYS: "1.5" }),
      /Invalid SNAPSHOT_RETENTION_DAYS: "1.5" \(must be a whole number of days from 1 to 36500\)/,
    );
    assert.throws(
      () => configFromEnv({ TABLE_NAME: "t_1", USAGE_WINDOWS: "hourly,weekly" }),
      /Invalid USAGE_WINDOWS: "hourly,weekly" \("weekly" is not a window/,
    );
  });
});

Deno.test("the committed bundle is a fresh build of the handler, and its zip is small", async () => {
  const fresh = await bundleAggregator();
  assert.equal(
    AGGREGATOR_JS,
    fresh,
    "src/aggregator/bundle_generated.ts is stale: run deno task build:aggregator",
  );
  assert.equal(AGGREGATOR_JS_SHA256, createHash("sha256").update(fresh).digest("hex"));
  assert.doesNotMatch(AGGREGATOR_JS, /smithy|SignatureV4/, "the AWS SDK must stay external");
  const zip = buildAggregatorZip();
  assert.deepEqual(buildAggregatorZip(), zip, "the zip is deterministic");
  assert.equal(aggregatorCodeSha256(), createHash("sha256").update(zip).digest("base64"));
  assert.deepEqual(Object.keys(unzipSync(zip)), [AGGREGATOR_FILE]);
  assert.ok(zip.length < 30_000, `zip is ${zip.length} bytes, the Python original's ~30 KB`);
  console.log(
    `aggregator bundle: index.mjs ${AGGREGATOR_JS.length} bytes, zip ${zip.length} bytes`,
  );
});

Deno.test({
  name: "usage aggregator on DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("aggregator");
    let now = at("2026-11-28T13:05:00Z");
    const limiter = new RateLimiter({
      tableName,
      client,
      createTable: true,
      clock: () => now,
      timeoutMs: 10_000, // generous: test files run in parallel on one machine
    });
    const acquire = (entityId: string, consume: Record<string, number>) =>
      limiter.acquire({ entityId, resource: RESOURCE, limits, consume });
    /** Snapshots of an entity as (start, consumed, requests), via the public reader. */
    const usage = async (entityId: string, window: "hourly" | "daily") =>
      (await getUsageSnapshots(client, tableName, { entityId, resource: RESOURCE, window }))
        .map((s) => [s.windowStart, s.consumed, s.requests]);
    const rawSnapshots = async (entityId: string) =>
      (await client.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: "PK = :pk AND begins_with(SK, :u)",
          ExpressionAttributeValues: { ":pk": { S: `ENTITY#${entityId}` }, ":u": { S: "#USAGE#" } },
          ConsistentRead: true,
        }),
      )).Items;
    try {
      // One project, two keys cascading to it.
      await limiter.createEntity({ entityId: "proj-1" });
      await limiter.createEntity({ entityId: "key-a", parentId: "proj-1", cascade: true });
      await limiter.createEntity({ entityId: "key-b", parentId: "proj-1", cascade: true });

      await t.step("traffic: acquires, adjusts and rollbacks over two days", async () => {
        const a1 = await acquire("key-a", { rpm: 1, tpm: 500 }); // 13:05
        await a1.adjust({ tpm: 120 });
        await a1.commit();
        now = at("2026-11-28T13:40:00Z");
        await (await acquire("key-b", { rpm: 1, tpm: 200 })).commit();
        now = at("2026-11-28T13:50:00Z");
        const a2 = await acquire("key-a", { rpm: 1, tpm: 300 });
        now = at("2026-11-28T13:55:00Z");
        await a2.rollback(); // same hour: nets to nothing
        now = at("2026-11-28T13:58:00Z");
        const a3 = await acquire("key-a", { rpm: 1, tpm: 10 });
        now = at("2026-11-28T14:02:00Z");
        await a3.rollback(); // next hour: 13:00 keeps it, 14:00 gives it back
        now = at("2026-11-28T14:59:59.999Z");
        const b2 = await acquire("key-b", { rpm: 1, tpm: 1000 });
        await b2.adjust({ tpm: -400 });
        now = at("2026-11-28T15:00:00Z");
        await b2.commit(); // the adjustment happens at 15:00
        now = at("2026-11-29T09:30:00Z");
        await (await acquire("key-a", { rpm: 1, tpm: 50 })).commit();
        now = at("2026-11-29T09:45:00Z");
        await (await acquire("key-b", { rpm: 1, tpm: 75 })).commit();
      });

      await t.step("no index entry before the aggregator has run", async () => {
        assert.deepEqual(await limiter.listResourceBuckets({ resource: RESOURCE }), []);
      });

      let first: Awaited<ReturnType<typeof aggregateLocal>>;
      await t.step("aggregateLocal yields exactly the expected hourly snapshots", async () => {
        first = await aggregateLocal({ tableName, client });
        assert.equal(first.shards >= 1, true);
        // 7 acquires, 2 adjust commits, 2 rollbacks, on a key and on the project: 22 records.
        assert.equal(first.consumptions, 22);
        // Records of a bucket in the same window share one write: 17 writes, not 22 × 2.
        assert.equal(first.snapshotWrites, 17);
        assert.equal(first.duplicates, 0);
        assert.equal(first.indexed, 3);
        assert.deepEqual(await usage("key-a", "hourly"), [
          ["2026-11-28T13:00:00Z", { rpm: 2, tpm: 630 }, 2],
          ["2026-11-28T14:00:00Z", { rpm: -1, tpm: -10 }, -1],
          ["2026-11-29T09:00:00Z", { rpm: 1, tpm: 50 }, 1],
        ]);
        assert.deepEqual(await usage("key-b", "hourly"), [
          ["2026-11-28T13:00:00Z", { rpm: 1, tpm: 200 }, 1],
          ["2026-11-28T14:00:00Z", { rpm: 1, tpm: 1000 }, 1],
          ["2026-11-28T15:00:00Z", { tpm: -400 }, 0],
          ["2026-11-29T09:00:00Z", { rpm: 1, tpm: 75 }, 1],
        ]);
        assert.deepEqual(await usage("proj-1", "hourly"), [
          ["2026-11-28T13:00:00Z", { rpm: 3, tpm: 830 }, 3],
          ["2026-11-28T14:00:00Z", { rpm: 0, tpm: 990 }, 0],
          ["2026-11-28T15:00:00Z", { tpm: -400 }, 0],
          ["2026-11-29T09:00:00Z", { rpm: 2, tpm: 125 }, 2],
        ]);
      });

      await t.step("... and the expected daily snapshots, separate items", async () => {
        assert.deepEqual(await usage("key-a", "daily"), [
          ["2026-11-28T00:00:00Z", { rpm: 1, tpm: 620 }, 1],
          ["2026-11-29T00:00:00Z", { rpm: 1, tpm: 50 }, 1],
        ]);
        assert.deepEqual(await usage("key-b", "daily"), [
          ["2026-11-28T00:00:00Z", { rpm: 2, tpm: 800 }, 2],
          ["2026-11-29T00:00:00Z", { rpm: 1, tpm: 75 }, 1],
        ]);
        assert.deepEqual(await usage("proj-1", "daily"), [
          ["2026-11-28T00:00:00Z", { rpm: 3, tpm: 1420 }, 3],
          ["2026-11-29T00:00:00Z", { rpm: 2, tpm: 125 }, 2],
        ]);
      });

      await t.step("snapshot items: key, window bounds, TTL = end + 90 days, seq", async () => {
        const item = (await client.send(
          new GetItemCommand({
            TableName: tableName,
            Key: {
              PK: { S: "ENTITY#key-b" },
              SK: { S: "#USAGE#gpt-4#daily#2026-11-28T00:00:00Z" },
            },
          }),
        )).Item!;
        assert.equal(item.entityId.S, "key-b");
        assert.equal(item.resource.S, RESOURCE);
        assert.equal(item.window.S, "daily");
        assert.equal(item.windowStart.S, "2026-11-28T00:00:00Z");
        assert.equal(item.windowEnd.S, "2026-11-29T00:00:00Z");
        assert.equal(item.ttl.N, String(at("2026-11-29T00:00:00Z") / 1000 + 90 * 86_400));
        assert.equal(item.c_tpm.N, "800000");
        assert.match(item.seq.S!, /^[0-9]{40}$/);
      });

      await t.step("replaying the whole stream changes nothing", async () => {
        const before = await Promise.all(["key-a", "key-b", "proj-1"].map(rawSnapshots));
        const again = await aggregateLocal({ tableName, client });
        assert.ok(again.records >= first.records);
        assert.equal(again.snapshotWrites, 0);
        assert.equal(again.duplicates, 44);
        assert.equal(again.indexed, 0);
        assert.deepEqual(await Promise.all(["key-a", "key-b", "proj-1"].map(rawSnapshots)), before);
        // Continuing from the returned positions reads nothing new.
        const onward = await aggregateLocal({ tableName, client, positions: again.positions });
        assert.equal(onward.records, 0);
      });

      await t.step("follow: new traffic is aggregated while polling, until aborted", async () => {
        const stop = new AbortController();
        const following = aggregateLocal({
          tableName,
          client,
          follow: true,
          pollIntervalMs: 50,
          signal: stop.signal,
        });
        try {
          now = at("2026-11-30T12:00:00Z");
          await (await acquire("key-a", { rpm: 1, tpm: 5 })).commit();
          let seen: unknown[] = [];
          for (let i = 0; i < 200 && seen.length === 0; i++) {
            await new Promise((r) => setTimeout(r, 50));
            seen = await getUsageSnapshots(client, tableName, {
              entityId: "key-a",
              resource: RESOURCE,
              window: "hourly",
              start: "2026-11-30T12:00:00Z",
            });
          }
          assert.deepEqual(
            seen.map((s) => (s as { consumed: unknown }).consumed),
            [{ rpm: 1, tpm: 5 }],
          );
        } finally {
          stop.abort();
        }
        const result = await following;
        assert.equal(result.snapshotWrites, 4); // key-a and proj-1, hourly and daily
      });

      await t.step(
        "the aggregator fills the resource index: listResourceBuckets works",
        async () => {
          const buckets = await limiter.listResourceBuckets({ resource: RESOURCE });
          assert.deepEqual(buckets.map((b) => b.entityId), ["key-a", "key-b", "proj-1"]);
          // `limit`: the first of the index, by id (one GSI2 page of that size).
          const two = await limiter.listResourceBuckets({ resource: RESOURCE, limit: 2 });
          assert.deepEqual(two.map((b) => b.entityId), ["key-a", "key-b"]);
          await assert.rejects(
            limiter.listResourceBuckets({ resource: RESOURCE, limit: 0 }),
            (e: unknown) => e instanceof ValidationError && e.field === "limit",
          );
          const bucket = (await client.send(
            new GetItemCommand({
              TableName: tableName,
              Key: { PK: { S: "ENTITY#key-a" }, SK: { S: "#BUCKET#gpt-4" } },
            }),
          )).Item!;
          assert.equal(bucket.GSI2PK.S, "RESOURCE#gpt-4");
          assert.equal(bucket.GSI2SK.S, "ENTITY#key-a");
        },
      );

      await t.step("a failing write is reported as the batch's first failure", async () => {
        const records = await readStream(client, tableName);
        const firstBucket = records.find((r) => r.dynamodb?.Keys?.SK?.S?.startsWith("#BUCKET#"))!;
        const out = await processRecords(records, { client, tableName: "no_such_table" });
        assert.deepEqual(out.batchItemFailures, [
          { itemIdentifier: firstBucket.dynamodb!.SequenceNumber! },
        ]);
        assert.equal(out.snapshotWrites, 0);
        assert.match(String(out.errors[0].error), /ResourceNotFound|non-existent table/i);
      });

      await t.step(
        "a fault mid-batch: retried from the reported record, nothing lost or doubled",
        async () => {
          const table2 = uniqueTableName("aggregator-fault");
          let clock = at("2026-11-28T10:15:00Z");
          const l2 = new RateLimiter({
            tableName: table2,
            client,
            createTable: true,
            clock: () => clock,
            timeoutMs: 10_000,
          });
          try {
            for (
              const [iso, tpm] of [["10:15", 100], ["10:20", 200], ["11:05", 300], [
                "11:10",
                400,
              ]] as const
            ) {
              clock = at(`2026-11-28T${iso}:00Z`);
              await (await l2.acquire({
                entityId: "key-x",
                resource: RESOURCE,
                limits,
                consume: { rpm: 1, tpm },
              }))
                .commit();
              await (await l2.acquire({
                entityId: "key-y",
                resource: RESOURCE,
                limits,
                consume: { rpm: 1, tpm },
              }))
                .commit();
            }
            const records = (await readStream(client, table2)).filter((r) =>
              r.dynamodb?.Keys?.SK?.S?.startsWith("#BUCKET#")
            );
            assert.equal(records.length, 8);
            // The hourly write of key-x's 11:00 records (its 3rd and 4th) fails.
            const xRecords = records.filter((r) => r.dynamodb!.Keys!.PK.S === "ENTITY#key-x");
            const failing = xRecords[2].dynamodb!.SequenceNumber!;
            let injected = 0;
            const faulty = withFault(client, (input) => {
              const hit = input.ExpressionAttributeValues?.[":first"]?.S === padSequence(failing) &&
                input.ExpressionAttributeValues?.[":w"]?.S === "hourly";
              if (hit) injected++;
              return hit;
            });
            const out = await processRecords(records, { client: faulty, tableName: table2 });
            assert.equal(injected, 1);
            assert.deepEqual(out.batchItemFailures, [{ itemIdentifier: failing }]);
            // key-x's later record was not applied (it would make the retry a no-op).
            const xHourly11 = async () =>
              (await getUsageSnapshots(client, table2, {
                entityId: "key-x",
                resource: RESOURCE,
                window: "hourly",
                start: "2026-11-28T11:00:00Z",
              }))[0];
            assert.equal(await xHourly11(), undefined);
            // Lambda retries from the failed record on.
            const from = records.findIndex((r) => r.dynamodb!.SequenceNumber === failing);
            const retry = await processRecords(records.slice(from), { client, tableName: table2 });
            assert.deepEqual(retry.batchItemFailures, []);
            for (const entityId of ["key-x", "key-y"]) {
              assert.deepEqual(
                (await getUsageSnapshots(client, table2, {
                  entityId,
                  resource: RESOURCE,
                  window: "hourly",
                }))
                  .map((s) => [s.windowStart, s.consumed, s.requests]),
                [
                  ["2026-11-28T10:00:00Z", { rpm: 2, tpm: 300 }, 2],
                  ["2026-11-28T11:00:00Z", { rpm: 2, tpm: 700 }, 2],
                ],
                entityId,
              );
              assert.deepEqual(
                (await getUsageSnapshots(client, table2, {
                  entityId,
                  resource: RESOURCE,
                  window: "daily",
                }))
                  .map((s) => [s.windowStart, s.consumed, s.requests]),
                [["2026-11-28T00:00:00Z", { rpm: 4, tpm: 1000 }, 4]],
                entityId,
              );
            }
            // The retry wrote key-x's hourly 11:00 run; the rest was already there.
            assert.equal(retry.snapshotWrites, 1);
            assert.equal(retry.duplicates, 6);
            // A second delivery of the whole batch changes nothing.
            const replay = await processRecords(records, { client, tableName: table2 });
            assert.equal(replay.snapshotWrites, 0);
            assert.equal(replay.duplicates, 16);
            // A batch whose first records are applied, one of them inside a run: only the rest is
            // written (the refused write returns the snapshot's seq). Same records, a fresh table.
            const table3 = uniqueTableName("aggregator-prefix");
            await new RateLimiter({ tableName: table3, client }).createTable();
            await processRecords(records.slice(0, 5), { client, tableName: table3 }); // up to x3
            const rest = await processRecords(records, { client, tableName: table3 });
            assert.equal(rest.duplicates, 5 * 2);
            for (const entityId of ["key-x", "key-y"]) {
              for (const window of ["hourly", "daily"] as const) {
                assert.deepEqual(
                  await getUsageSnapshots(client, table3, { entityId, window }),
                  await getUsageSnapshots(client, table2, { entityId, window }),
                );
              }
            }
          } finally {
            await l2.close();
          }
        },
      );

      await t.step("the zip's handler runs under Node against DynamoDB Local", async () => {
        const dir = await Deno.makeTempDir({ prefix: "zae-aggregator-" });
        try {
          for (const [name, data] of Object.entries(unzipSync(buildAggregatorZip()))) {
            await Deno.writeFile(`${dir}/${name}`, data);
          }
          // ESM ignores NODE_PATH: resolve the SDK through a node_modules next to the code.
          await Deno.symlink(
            new URL("../node_modules", import.meta.url).pathname,
            `${dir}/node_modules`,
          );
          await Deno.writeTextFile(
            `${dir}/run.mjs`,
            `import { handler } from "./index.mjs";\n` +
              `const out = await handler(JSON.parse(process.argv[2]));\n` +
              `process.stdout.write("RESULT " + JSON.stringify(out) + "\\n");\n`,
          );
          const keysOf = { PK: { S: "ENTITY#node-key" }, SK: { S: "#BUCKET#gpt-4" } };
          const event = {
            Records: [{
              eventID: "1",
              eventName: "INSERT",
              eventSource: "aws:dynamodb",
              awsRegion: "us-east-1",
              dynamodb: {
                ApproximateCreationDateTime: 1_795_000_000,
                Keys: keysOf,
                NewImage: {
                  ...keysOf,
                  u_tpm: { N: "742000" },
                  rq: { N: "1" },
                  ts: { N: String(at("2026-11-28T16:20:00Z")) },
                },
                SequenceNumber: "111111111111111111111",
                SizeBytes: 100,
                StreamViewType: "NEW_AND_OLD_IMAGES",
              },
            }],
          };
          const runNode = async (table: string) => {
            const out = await new Deno.Command("node", {
              args: ["run.mjs", JSON.stringify(event)],
              cwd: dir,
              env: {
                TABLE_NAME: table,
                SNAPSHOT_RETENTION_DAYS: "30",
                AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
                AWS_REGION: "us-east-1",
                AWS_ACCESS_KEY_ID: "local",
                AWS_SECRET_ACCESS_KEY: "local",
              },
              clearEnv: true,
              stdout: "piped",
              stderr: "piped",
            }).output();
            const stdout = new TextDecoder().decode(out.stdout);
            const stderr = new TextDecoder().decode(out.stderr);
            assert.equal(out.code, 0, stderr);
            const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
            assert.ok(line, stdout + stderr);
            return JSON.parse(line.slice(7));
          };
          assert.deepEqual(await runNode(tableName), { batchItemFailures: [] });
          const [hour] = await getUsageSnapshots(client, tableName, {
            entityId: "node-key",
            window: "hourly",
          });
          assert.deepEqual(hour, {
            entityId: "node-key",
            resource: RESOURCE,
            window: "hourly",
            windowStart: "2026-11-28T16:00:00Z",
            windowEnd: "2026-11-28T17:00:00Z",
            consumed: { tpm: 742 },
            requests: 1,
          });
          // Delivered again: idempotent.
          assert.deepEqual(await runNode(tableName), { batchItemFailures: [] });
          assert.equal(
            (await getUsageSnapshots(client, tableName, { entityId: "node-key", window: "daily" }))[
              0
            ]
              .consumed.tpm,
            742,
          );
          // A write that fails comes back as a batch item failure, for Lambda to retry.
          assert.deepEqual(await runNode("no_such_table"), {
            batchItemFailures: [{ itemIdentifier: "111111111111111111111" }],
          });
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      });
    } finally {
      await limiter.close();
      client.destroy();
      await ddb.stop();
    }
  },
});

/** Every record of a table's stream, shard by shard (DynamoDB Local has one open shard). */
async function readStream(
  client: DynamoDBClient,
  tableName: string,
): Promise<BucketStreamRecord[]> {
  const table = await client.send(new DescribeTableCommand({ TableName: tableName }));
  const streams = new DynamoDBStreamsClient({
    region: client.config.region,
    credentials: client.config.credentials,
    endpoint: client.config.endpoint,
  });
  const out: BucketStreamRecord[] = [];
  try {
    const desc = await streams.send(
      new DescribeStreamCommand({ StreamArn: table.Table!.LatestStreamArn! }),
    );
    for (const shard of desc.StreamDescription?.Shards ?? []) {
      let iterator = (await streams.send(
        new GetShardIteratorCommand({
          StreamArn: table.Table!.LatestStreamArn!,
          ShardId: shard.ShardId!,
          ShardIteratorType: "TRIM_HORIZON",
        }),
      )).ShardIterator;
      while (iterator) {
        const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
        if (!page.Records?.length) break;
        out.push(...(page.Records as BucketStreamRecord[]));
        iterator = page.NextShardIterator;
      }
    }
  } finally {
    streams.destroy();
  }
  return out;
}

/** The real client, with UpdateItem calls matching `fail` refused (fault injection). */
function withFault(
  client: DynamoDBClient,
  fail: (input: { ExpressionAttributeValues?: Record<string, AttributeValue> }) => boolean,
): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== "send") return Reflect.get(target, prop, receiver);
      return (command: unknown, ...rest: unknown[]) => {
        if (command instanceof UpdateItemCommand && fail(command.input)) {
          return Promise.reject(new Error("injected fault: UpdateItem refused"));
        }
        return (target.send as (...args: unknown[]) => Promise<unknown>)(command, ...rest);
      };
    },
  });
}
