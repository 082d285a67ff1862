/**
 * Does DynamoDB Local keep every write it acknowledged when it is killed (SIGKILL)? No limiter
 * here: plain SDK calls. Writers send `UpdateItem` (one new item each) and `TransactWriteItems`
 * (two new items each) as fast as they can; DynamoDB Local, on a data folder, is killed in the
 * middle and restarted on the same data; then every write that was answered with success is
 * looked for. Prints one JSON line per kill and a summary.
 *
 *   deno run -A scripts/dynamo_local_kill.ts [kills=10] [writers=8]
 *
 * See docs/reliability.md ("A SIGKILL run one request short").
 *
 * @module
 */

import process from "node:process";
import {
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { type LocalDynamo, startDynamoDBLocal } from "../src/local/mod.ts";

const kills = Number(Deno.args[0] ?? 10);
const writers = Number(Deno.args[1] ?? 8);
const table = "durability";

const client = (endpoint: string) =>
  new DynamoDBClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
const key = (id: string) => ({ PK: { S: id } });

const dataDir = await Deno.makeTempDir({ prefix: "zae-kill-" });
let ddb: LocalDynamo = await startDynamoDBLocal({ dataDir, startupTimeoutMs: 120_000 });
const port = ddb.port;
let c = client(ddb.endpoint);
await c.send(
  new CreateTableCommand({
    TableName: table,
    KeySchema: [{ AttributeName: "PK", KeyType: "HASH" }],
    AttributeDefinitions: [{ AttributeName: "PK", AttributeType: "S" }],
    BillingMode: "PAY_PER_REQUEST",
  }),
);

/** A write answered with success: what it wrote, when it was sent and answered (epoch ms). */
type Acked = { ids: string[]; kind: string; sentAt: number; answeredAt: number };
const totals = {
  acked: { UpdateItem: 0, TransactWriteItems: 0 },
  lost: { UpdateItem: 0, TransactWriteItems: 0 },
  killsWithLoss: 0,
  lostAnsweredAfterKill: 0,
  lostWithWitnesses: 0,
  worstBeforeKillMs: 0,
};
let seq = 0;
try {
  for (let k = 1; k <= kills; k++) {
    const acked: Acked[] = [];
    let stop = false;
    let killedAt = Infinity;
    const loop = async (w: number) => {
      while (!stop) {
        const n = ++seq;
        const tx = (n + w) % 2 === 0;
        const ids = tx ? [`t${n}a`, `t${n}b`] : [`u${n}`];
        const sent = Date.now();
        try {
          if (tx) {
            await c.send(
              new TransactWriteItemsCommand({
                TransactItems: ids.map((id) => ({
                  Update: {
                    TableName: table,
                    Key: key(id),
                    UpdateExpression: "SET v = :v",
                    ConditionExpression: "attribute_not_exists(PK)",
                    ExpressionAttributeValues: { ":v": { N: String(n) } },
                  },
                })),
              }),
            );
          } else {
            await c.send(
              new UpdateItemCommand({
                TableName: table,
                Key: key(ids[0]),
                UpdateExpression: "SET v = :v",
                ConditionExpression: "attribute_not_exists(PK)",
                ExpressionAttributeValues: { ":v": { N: String(n) } },
              }),
            );
          }
          const now = Date.now();
          acked.push({
            ids,
            kind: tx ? "TransactWriteItems" : "UpdateItem",
            sentAt: sent,
            answeredAt: now,
          });
        } catch {
          if (Date.now() < killedAt) continue; // a conflict or slow start: try on
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const loops = Array.from({ length: writers }, (_, w) => loop(w));
    await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
    killedAt = Date.now();
    process.kill(ddb.pid, "SIGKILL");
    await ddb.stop();
    stop = true;
    await Promise.all(loops);
    c.destroy();
    ddb = await startDynamoDBLocal({ dataDir, port, startupTimeoutMs: 120_000 });
    c = client(ddb.endpoint);
    // Every acknowledged write, with its items found or not, and its times relative to the kill.
    const lost: {
      kind: string;
      found: string;
      sentMs: number;
      answeredMs: number;
      laterAnswers: { UpdateItem: number; TransactWriteItems: number };
      witnesses: number;
    }[] = [];
    for (const a of acked) {
      let found = 0;
      for (const id of a.ids) {
        const got = await c.send(
          new GetItemCommand({ TableName: table, Key: key(id), ConsistentRead: true }),
        );
        if (got.Item) found++;
      }
      if (found === a.ids.length) continue;
      const answeredMs = a.answeredAt - killedAt;
      lost.push({
        kind: a.kind,
        found: `${found} of ${a.ids.length} items`,
        sentMs: a.sentAt - killedAt,
        answeredMs,
        // Writes answered after this one (each of them kept, or listed here too).
        // Writes sent after its answer and answered: DynamoDB Local's one SQLite queue would have
        // run its COMMIT before them.
        witnesses: acked.filter((b) => b.sentAt > a.answeredAt).length,
        laterAnswers: {
          UpdateItem: acked.filter((b) => b.kind === "UpdateItem" && b.answeredAt > a.answeredAt)
            .length,
          TransactWriteItems: acked.filter((b) =>
            b.kind === "TransactWriteItems" && b.answeredAt > a.answeredAt
          ).length,
        },
      });
      if (answeredMs >= 0) totals.lostAnsweredAfterKill++;
      if (acked.some((b) => b.sentAt > a.answeredAt)) totals.lostWithWitnesses++;
      else totals.worstBeforeKillMs = Math.min(totals.worstBeforeKillMs, answeredMs);
    }
    const last = Math.max(...acked.map((a) => a.answeredAt)) - killedAt;
    for (const a of acked) totals.acked[a.kind as "UpdateItem"]++;
    for (const l of lost) totals.lost[l.kind as "UpdateItem"]++;
    if (lost.length > 0) totals.killsWithLoss++;
    console.log(JSON.stringify({ kill: k, acked: acked.length, lastAnswerMs: last, lost }));
  }
} finally {
  console.log(`SUMMARY ${JSON.stringify({ kills, writers, ...totals })}`);
  c.destroy();
  await ddb.stop();
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
}
