/**
 * The aggregator's answer to malformed stream records (issue 12, item 12): each is a reported
 * batch item failure, never counted and never dropped. Run through the deployed zip's handler
 * under Node, against DynamoDB Local; the snapshots written are read back.
 *
 * @module
 */

import assert from "node:assert/strict";
import { unzipSync } from "fflate";
import { RateLimiter } from "../mod.ts";
import { buildAggregatorZip } from "../src/aggregator/bundle.ts";
import {
  type BucketStreamRecord,
  consumptionOf,
  MalformedRecordError,
} from "../src/aggregator/snapshot.ts";
import { getUsageSnapshots } from "../src/usage.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const RESOURCE = "gpt-4";
const TS = String(Date.parse("2026-11-28T16:20:00Z"));
const keysOf = (entityId: string) => ({
  PK: { S: `ENTITY#${entityId}` },
  SK: { S: `#BUCKET#${RESOURCE}` },
});

/** A well-formed first write of a bucket: `tpm` tokens, one request. */
function insert(entityId: string, seq: string, tpm: number): BucketStreamRecord {
  const keys = keysOf(entityId);
  return {
    eventName: "INSERT",
    dynamodb: {
      Keys: keys,
      NewImage: { ...keys, u_tpm: { N: String(tpm * 1000) }, rq: { N: "1" }, ts: { N: TS } },
      SequenceNumber: seq,
    },
  };
}

/** A bucket record with its images replaced. */
function record(
  entityId: string,
  seq: string,
  eventName: string,
  images: { NewImage?: Record<string, unknown>; OldImage?: Record<string, unknown> },
): BucketStreamRecord {
  const keys = keysOf(entityId);
  const withKeys = (image?: Record<string, unknown>) =>
    image === undefined ? undefined : { ...keys, ts: { N: TS }, ...image };
  return {
    eventName,
    dynamodb: {
      Keys: keys,
      ...(images.NewImage ? { NewImage: withKeys(images.NewImage) } : {}),
      ...(images.OldImage ? { OldImage: withKeys(images.OldImage) } : {}),
      SequenceNumber: seq,
    } as BucketStreamRecord["dynamodb"],
  };
}

/**
 * Each case: a batch holding a good record of `good-<n>`, the malformed record of `bad-<n>`, and a
 * good later record of `bad-<n>` (which must wait behind the malformed one).
 */
const CASES: {
  name: string;
  bad: (entityId: string, seq: string) => BucketStreamRecord;
  message: RegExp;
}[] = [
  {
    name: "a MODIFY without OldImage (a running total of 1,000,000 tokens, 5,000 requests)",
    bad: (id, seq) =>
      record(id, seq, "MODIFY", {
        NewImage: { u_tpm: { N: "1000000000" }, rq: { N: "5000" } },
      }),
    message: /is malformed: a MODIFY without OldImage \(the stream must be NEW_AND_OLD_IMAGES\)/,
  },
  {
    name: "a MODIFY without NewImage",
    bad: (id, seq) => record(id, seq, "MODIFY", { OldImage: { u_tpm: { N: "1000" } } }),
    message: /is malformed: a MODIFY without NewImage/,
  },
  {
    name: "a u_* stored as a string",
    bad: (id, seq) =>
      record(id, seq, "MODIFY", {
        OldImage: { u_tpm: { N: "1000" }, rq: { N: "1" } },
        NewImage: { u_tpm: { S: "250000" }, rq: { N: "2" } },
      }),
    message: /NewImage\.u_tpm is \{"S":"250000"\}, not a whole number/,
  },
  {
    name: "an rq stored as a boolean",
    bad: (id, seq) =>
      record(id, seq, "INSERT", { NewImage: { u_tpm: { N: "5000" }, rq: { BOOL: true } } }),
    message: /NewImage\.rq is \{"BOOL":true\}, not a whole number/,
  },
];

Deno.test("consumptionOf refuses what it cannot read, naming the record and the attribute", () => {
  const bad = (r: BucketStreamRecord, message: RegExp) =>
    assert.throws(
      () => consumptionOf(r),
      (e: unknown) =>
        e instanceof MalformedRecordError && e.sequenceNumber === "42" &&
        message.test(e.message) && !/[\r\n]/.test(e.message),
    );
  for (const c of CASES) bad(c.bad("key-1", "42"), c.message);
  bad(
    record("key-1", "42", "MODIFY", { OldImage: {}, NewImage: { u_tpm: { N: "1.5" } } }),
    /NewImage\.u_tpm is \{"N":"1\.5"\}, not a whole number/,
  );
  bad(
    record("key-1", "42", "MODIFY", { OldImage: { u_tpm: { N: "5" } }, NewImage: {} }),
    /u_tpm is in OldImage but not in NewImage/,
  );
  bad(
    record("key-1", "42", "INSERT", { NewImage: { u_tpm: { N: "5" }, ts: { S: "\n" } } }),
    /NewImage\.ts is \{"S":"\\n"\}, not a whole number/,
  );
  bad(record("key-1", "42", "UPSERT", { NewImage: {} }), /eventName "UPSERT" is none of/);
  // Well-formed records are read as before: a REMOVE and a record of another item carry nothing.
  assert.equal(consumptionOf(record("key-1", "42", "REMOVE", {})), undefined);
  assert.equal(
    consumptionOf({ eventName: "MODIFY", dynamodb: { Keys: { PK: { S: "ENTITY#a" } } } }),
    undefined,
  );
  assert.deepEqual(consumptionOf(insert("key-1", "42", 7))?.consumed, new Map([["tpm", 7000n]]));
});

Deno.test({
  name: "malformed stream records are batch item failures, through the zip's handler on Node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("aggregator-malformed");
    const dir = await Deno.makeTempDir({ prefix: "zae-aggregator-malformed-" });
    try {
      await new RateLimiter({ tableName, client }).createTable();
      for (const [name, data] of Object.entries(unzipSync(buildAggregatorZip()))) {
        await Deno.writeFile(`${dir}/${name}`, data);
      }
      await Deno.symlink(
        new URL("../node_modules", import.meta.url).pathname,
        `${dir}/node_modules`,
      );
      // Each event in turn; one line per event: its answer, or the error it threw.
      await Deno.writeTextFile(
        `${dir}/run.mjs`,
        `import { readFileSync } from "node:fs";\n` +
          `import { handler } from "./index.mjs";\n` +
          `for (const event of JSON.parse(readFileSync(process.argv[2], "utf8"))) {\n` +
          `  const out = await handler(event).then((ok) => ({ ok }), (e) => ({ error: String(e) }));\n` +
          `  process.stdout.write("RESULT " + JSON.stringify(out) + "\\n");\n` +
          `}\n`,
      );
      const runNode = async (events: unknown[]) => {
        await Deno.writeTextFile(`${dir}/events.json`, JSON.stringify(events));
        const out = await new Deno.Command("node", {
          args: ["run.mjs", "events.json"],
          cwd: dir,
          env: {
            TABLE_NAME: tableName,
            AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
            AWS_REGION: "us-east-1",
            AWS_ACCESS_KEY_ID: "local",
            AWS_SECRET_ACCESS_KEY: "local",
            PATH: Deno.env.get("PATH") ?? "",
          },
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stdout = new TextDecoder().decode(out.stdout);
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, stderr);
        const results = stdout.split("\n").filter((l) => l.startsWith("RESULT "))
          .map((l) => JSON.parse(l.slice(7)));
        assert.equal(results.length, events.length, stdout + stderr);
        return { results, stderr };
      };
      const tpmOf = async (entityId: string) =>
        (await getUsageSnapshots(client, tableName, { entityId, window: "hourly" }))
          .map((s) => [s.consumed.tpm, s.requests]);

      await t.step(
        "each malformed record is the batch's failure; nothing of it is counted",
        async () => {
          const events = CASES.map((c, n) => ({
            Records: [
              insert(`good-${n}`, `${n + 1}00000000000000000001`, 10 + n),
              c.bad(`bad-${n}`, `${n + 1}00000000000000000002`),
              insert(`bad-${n}`, `${n + 1}00000000000000000003`, 99),
            ],
          }));
          const { results, stderr } = await runNode(events);
          CASES.forEach((c, n) => {
            assert.deepEqual(
              results[n],
              { ok: { batchItemFailures: [{ itemIdentifier: `${n + 1}00000000000000000002` }] } },
              c.name,
            );
            assert.match(stderr, c.message, c.name);
          });
          // One line per malformed record, no stack.
          const lines = stderr.split("\n");
          assert.equal(lines.filter((l) => l.startsWith("usage aggregator:")).length, CASES.length);
          assert.ok(!lines.some((l) => /^\s+at /.test(l)), stderr);
          for (let n = 0; n < CASES.length; n++) {
            assert.deepEqual(await tpmOf(`good-${n}`), [[10 + n, 1]], CASES[n].name);
            // Neither the malformed record nor the later one of its item was applied.
            assert.deepEqual(await tpmOf(`bad-${n}`), [], CASES[n].name);
          }
        },
      );

      await t.step("a null record fails the whole batch (no sequence number to name)", async () => {
        const { results, stderr } = await runNode([{
          Records: [
            insert("around-null-1", "700000000000000000001", 3),
            null,
            insert("around-null-2", "700000000000000000003", 4),
          ],
        }]);
        // An empty identifier: Lambda's documented signal for "the whole batch failed".
        assert.deepEqual(results[0], { ok: { batchItemFailures: [{ itemIdentifier: "" }] } });
        assert.match(
          stderr,
          /Stream record \(no SequenceNumber\) is malformed: the record is null/,
        );
        // The other records were applied once; the retry of the batch skips them.
        assert.deepEqual(await tpmOf("around-null-1"), [[3, 1]]);
        assert.deepEqual(await tpmOf("around-null-2"), [[4, 1]]);
        const again = await runNode([{
          Records: [insert("around-null-1", "700000000000000000001", 3)],
        }]);
        assert.deepEqual(again.results[0], { ok: { batchItemFailures: [] } });
        assert.deepEqual(await tpmOf("around-null-1"), [[3, 1]]);
      });

      await t.step("an event whose Records is not an array throws a clear error", async () => {
        const events = [
          { Records: { 0: insert("x-1", "800000000000000000001", 1) } },
          {
            Records: "[]",
          },
          {},
          null,
        ];
        const { results } = await runNode(events);
        assert.deepEqual(results.map((r) => r.error), [
          "TypeError: Invalid event: Records is an object, not an array (the aggregator takes DynamoDB Streams events only)",
          "TypeError: Invalid event: Records is a string, not an array (the aggregator takes DynamoDB Streams events only)",
          "TypeError: Invalid event: Records is missing, not an array (the aggregator takes DynamoDB Streams events only)",
          "TypeError: Invalid event: Records is missing, not an array (the aggregator takes DynamoDB Streams events only)",
        ]);
        assert.deepEqual(await tpmOf("x-1"), []);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      client.destroy();
      await ddb.stop();
    }
  },
});
