/**
 * What the SIGKILL outage test needs to tell a write DynamoDB Local lost from a count the limiter
 * got wrong:
 *
 * - {@link OutageTrace.watch} records every bucket write a client had answered with success (per
 *   SDK call: its operation id per item, and the request and `used` deltas it carried);
 * - {@link bucketHistory} reads the table's stream: per bucket, the operation ids that were applied
 *   (each write leaves its own receipt `r_{id}`) and the sum of what they changed;
 * - {@link lostWrites} lists the acknowledged writes that no stream record shows.
 *
 * With `ZAE_OUTAGE_TRACE` naming a file, it also keeps every HTTP attempt, the test's own events
 * and the stream records, and writes them there as JSON (for a failing run).
 *
 * @module
 */

import {
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
} from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from "@aws-sdk/client-dynamodb-streams";
import { bucketSk, entityPk, RECEIPT_PREFIX, REQUESTS } from "../src/keys.ts";

type Attr = { S?: string; N?: string };
type UpdateInput = {
  Key?: Record<string, Attr>;
  UpdateExpression?: string;
  ExpressionAttributeValues?: Record<string, Attr>;
};

/** One item's part of a bucket write: its operation id and what it adds (thousandths). */
export interface WrittenItem {
  pk: string;
  op: string;
  cancel: boolean;
  requests: number;
  used: Record<string, number>;
}

/** A bucket write answered with success. */
export interface AckedWrite {
  client: string;
  command: string;
  /** When it was sent and when the answer came, epoch ms. */
  sentAt: number;
  answeredAt: number;
  items: WrittenItem[];
}

/** Reads one bucket update back from its expression (as `src/repository.ts` builds it). */
function describeUpdate(u: UpdateInput): WrittenItem {
  const expr = u.UpdateExpression ?? "";
  const values = u.ExpressionAttributeValues ?? {};
  const receipt = new RegExp(`\\b${RECEIPT_PREFIX}([a-z0-9]+) = (:wb|:rcpt)`).exec(expr);
  const rq = new RegExp(`\\b${REQUESTS} (:\\w+)`).exec(expr);
  const used: Record<string, number> = {};
  for (const m of expr.matchAll(/\bu_(\w+) (:u\d+)/g)) used[m[1]] = Number(values[m[2]]?.N);
  return {
    pk: u.Key?.PK?.S ?? "",
    op: receipt?.[1] ?? "",
    cancel: receipt?.[2] === ":rcpt",
    requests: rq ? Number(values[rq[1]]?.N) : 0,
    used,
  };
}

function itemsOf(input: Record<string, unknown>): WrittenItem[] {
  const tx = input.TransactItems as { Update?: UpdateInput }[] | undefined;
  return tx ? tx.map((i) => describeUpdate(i.Update ?? {})) : [describeUpdate(input)];
}

type Next = (args: { input: Record<string, unknown> }) => Promise<Record<string, unknown>>;
type Context = { commandName?: string };
const BUCKET_WRITES = new Set(["UpdateItemCommand", "TransactWriteItemsCommand"]);

/** The acknowledged bucket writes of some clients, and (optionally) a full trace of the run. */
export class OutageTrace {
  /** Where the full trace goes (`ZAE_OUTAGE_TRACE`), if anywhere. */
  readonly path = Deno.env.get("ZAE_OUTAGE_TRACE");
  readonly started = Date.now();
  readonly acked: AckedWrite[] = [];
  readonly events: Record<string, unknown>[] = [];

  /** Notes an event of the test in the full trace. */
  event(kind: string, data: Record<string, unknown> = {}): void {
    if (this.path) this.events.push({ t: Date.now() - this.started, kind, ...data });
  }

  /** Records the bucket writes `client` has answered with success (and, traced, every attempt). */
  watch(client: DynamoDBClient, name: string): void {
    const call =
      (next: Next, context: Context) => async (args: { input: Record<string, unknown> }) => {
        const command = context.commandName ?? "";
        if (!BUCKET_WRITES.has(command)) return next(args);
        const items = itemsOf(args.input);
        const sent = Date.now();
        try {
          const out = await next(args);
          this.acked.push({ client: name, command, sentAt: sent, answeredAt: Date.now(), items });
          this.event("call", { client: name, command, sent: sent - this.started, items, ok: true });
          return out;
        } catch (err) {
          const e = err as { name?: string; $metadata?: { attempts?: number } };
          this.event("call", {
            client: name,
            command,
            sent: sent - this.started,
            items,
            error: e?.name,
            attempts: e?.$metadata?.attempts,
          });
          throw err;
        }
      };
    // deno-lint-ignore no-explicit-any
    client.middlewareStack.add(call as any, { step: "initialize", name: `acked-${name}` });
    if (!this.path) return;
    // Each HTTP attempt (inside the SDK's retries): status or error.
    const attempt =
      (next: Next, context: Context) => async (args: { input: Record<string, unknown> }) => {
        if (!BUCKET_WRITES.has(context.commandName ?? "")) return next(args);
        const sent = Date.now() - this.started;
        try {
          const out = await next(args);
          const status = (out.response as { statusCode?: number } | undefined)?.statusCode;
          this.event("attempt", { client: name, sent, status });
          return out;
        } catch (err) {
          this.event("attempt", { client: name, sent, error: String(err).slice(0, 120) });
          throw err;
        }
      };
    // deno-lint-ignore no-explicit-any
    client.middlewareStack.add(attempt as any, { step: "deserialize", name: `attempt-${name}` });
  }

  /** Writes the full trace, when asked for. */
  async save(extra: Record<string, unknown>): Promise<void> {
    if (!this.path) return;
    await Deno.writeTextFile(
      this.path,
      JSON.stringify({ ...extra, started: this.started, acked: this.acked, events: this.events }),
    );
  }
}

/** What the stream says of one bucket. */
export interface BucketHistory {
  /** Operation ids whose write was applied to the item. */
  ops: Set<string>;
  /** Stream records. */
  records: number;
  /** The sum of the changes of every record (thousandths for `used`). */
  requests: number;
  used: Record<string, number>;
  /** The item as the last record (highest sequence number) left it. */
  last: { requests: number; used: Record<string, number> };
  lastSeq: bigint;
}

type Image = Record<string, { N?: string }> | undefined;
const num = (img: Image, name: string) => Number(img?.[name]?.N ?? 0);

/** Reads the table's stream from its start: the history of the `api` bucket of each entity. */
export async function bucketHistory(
  client: DynamoDBClient,
  endpoint: string,
  tableName: string,
  entityIds: string[],
  limitNames: string[],
): Promise<Record<string, BucketHistory>> {
  const byPk = new Map(entityIds.map((id) => [entityPk(id), id]));
  const out: Record<string, BucketHistory> = {};
  for (const id of entityIds) {
    out[id] = {
      ops: new Set(),
      records: 0,
      requests: 0,
      used: Object.fromEntries(limitNames.map((n) => [n, 0])),
      last: { requests: 0, used: Object.fromEntries(limitNames.map((n) => [n, 0])) },
      lastSeq: -1n,
    };
  }
  const streams = new DynamoDBStreamsClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  try {
    const table = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const arn = table.Table?.LatestStreamArn;
    const desc = await streams.send(new DescribeStreamCommand({ StreamArn: arn }));
    for (const shard of desc.StreamDescription?.Shards ?? []) {
      let it = (await streams.send(
        new GetShardIteratorCommand({
          StreamArn: arn,
          ShardId: shard.ShardId,
          ShardIteratorType: "TRIM_HORIZON",
        }),
      )).ShardIterator;
      while (it) {
        const page = await streams.send(new GetRecordsCommand({ ShardIterator: it, Limit: 1000 }));
        const records = page.Records ?? [];
        for (const r of records) {
          const keys = r.dynamodb?.Keys;
          const entityId = byPk.get(keys?.PK?.S ?? "");
          if (entityId === undefined || keys?.SK?.S !== bucketSk("api")) continue;
          const h = out[entityId];
          const before = r.dynamodb?.OldImage as Image;
          const after = r.dynamodb?.NewImage as Image;
          h.records++;
          for (const name of Object.keys(after ?? {})) {
            if (name.startsWith(RECEIPT_PREFIX) && before?.[name] === undefined) {
              h.ops.add(name.slice(RECEIPT_PREFIX.length));
            }
          }
          h.requests += num(after, REQUESTS) - num(before, REQUESTS);
          for (const n of limitNames) h.used[n] += num(after, `u_${n}`) - num(before, `u_${n}`);
          const seq = BigInt(r.dynamodb?.SequenceNumber ?? "0");
          if (seq > h.lastSeq) {
            h.lastSeq = seq;
            h.last.requests = num(after, REQUESTS);
            for (const n of limitNames) h.last.used[n] = num(after, `u_${n}`);
          }
        }
        if (records.length === 0) break;
        it = page.NextShardIterator;
      }
    }
  } finally {
    streams.destroy();
  }
  return out;
}

/** Reads every attribute of an entity's `api` bucket (for the full trace). */
export async function rawBucket(client: DynamoDBClient, tableName: string, entityId: string) {
  const got = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { PK: { S: entityPk(entityId) }, SK: { S: bucketSk("api") } },
      ConsistentRead: true,
    }),
  );
  return got.Item;
}

/**
 * The acknowledged writes to the watched buckets whose operation no stream record shows on any of
 * their items (`partly`: shown on some items only, which DynamoDB's transactions never allow).
 */
export function lostWrites(
  acked: AckedWrite[],
  history: Record<string, BucketHistory>,
): (AckedWrite & { partly: boolean })[] {
  const byPk = new Map(Object.entries(history).map(([id, h]) => [entityPk(id), h]));
  const out: (AckedWrite & { partly: boolean })[] = [];
  for (const w of acked) {
    const watched = w.items.filter((i) => byPk.has(i.pk));
    if (watched.length === 0) continue;
    const missing = watched.filter((i) => !byPk.get(i.pk)!.ops.has(i.op));
    if (missing.length > 0) out.push({ ...w, partly: missing.length < watched.length });
  }
  return out;
}

/**
 * The writes (of any bucket) sent after `w` was answered and answered with success before
 * `before` (epoch ms: while the same DynamoDB Local process ran). DynamoDB Local runs every write
 * on one SQLite queue, in order, and answers a write once its job has run, but a
 * `TransactWriteItems` once its `COMMIT` is only queued: such a later write means the
 * transaction's `COMMIT` had run.
 */
export function witnesses(acked: AckedWrite[], w: AckedWrite, before: number): AckedWrite[] {
  return acked.filter((x) => x.sentAt > w.answeredAt && x.answeredAt < before);
}
