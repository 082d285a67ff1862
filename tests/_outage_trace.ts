/**
 * Diagnostics for the SIGKILL outage test, on when `ZAE_OUTAGE_TRACE` names a file: every bucket
 * write the limiters send (per HTTP attempt and per SDK call, with operation ids, request and
 * `tpm` deltas and the answer), the test's own events, and after the run the items and the
 * table's stream, written there as JSON.
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
import { bucketSk, entityPk } from "../src/keys.ts";

type Attr = { S?: string; N?: string };
type UpdateInput = {
  Key?: Record<string, Attr>;
  UpdateExpression?: string;
  ExpressionAttributeValues?: Record<string, Attr>;
};

/** The parts of one bucket update that tell what it does. */
function describeUpdate(u: UpdateInput) {
  const expr = u.UpdateExpression ?? "";
  const values = u.ExpressionAttributeValues ?? {};
  const receipt = /(r_[a-z0-9]+) = (:wb|:rcpt)/.exec(expr);
  const rq = /\brq (:\w+)/.exec(expr);
  const tpm = /\bu_tpm (:\w+)/.exec(expr);
  const removes = /REMOVE (.*)$/.exec(expr)?.[1];
  return {
    pk: u.Key?.PK?.S,
    op: receipt?.[1]?.slice(2),
    cancel: receipt?.[2] === ":rcpt",
    bound: values[":wb"]?.N,
    rq: rq ? Number(values[rq[1]]?.N) : 0,
    tpm: tpm ? Number(values[tpm[1]]?.N) : 0,
    sweep: removes,
  };
}

/** A trace of one run, written on `save()` when `ZAE_OUTAGE_TRACE` is set. */
export class OutageTrace {
  readonly path = Deno.env.get("ZAE_OUTAGE_TRACE");
  readonly started = Date.now();
  readonly events: Record<string, unknown>[] = [];
  #seq = 0;

  get on(): boolean {
    return this.path !== undefined;
  }

  event(kind: string, data: Record<string, unknown> = {}): void {
    if (this.on) this.events.push({ t: Date.now() - this.started, kind, ...data });
  }

  /** Records every bucket write `client` sends: per SDK call and per HTTP attempt. */
  watch(client: DynamoDBClient, name: string): void {
    if (!this.on) return;
    const items = (input: Record<string, unknown>) => {
      const tx = input.TransactItems as { Update?: UpdateInput }[] | undefined;
      return tx ? tx.map((i) => describeUpdate(i.Update ?? {})) : [describeUpdate(input)];
    };
    const wrap = (level: string) => (next: any, context: any) => async (args: any) => {
      const cmd = context.commandName as string;
      if (cmd !== "UpdateItemCommand" && cmd !== "TransactWriteItemsCommand") return next(args);
      const id = ++this.#seq;
      const t0 = Date.now() - this.started;
      const what = level === "call" ? items(args.input) : undefined;
      try {
        const out = await next(args);
        this.events.push({
          t: t0,
          t1: Date.now() - this.started,
          kind: level,
          id,
          client: name,
          cmd,
          items: what,
          ok: true,
          status: out?.response?.statusCode,
          attempts: out?.output?.$metadata?.attempts,
        });
        return out;
      } catch (err) {
        const e = err as {
          name?: string;
          message?: string;
          $metadata?: { attempts?: number };
          CancellationReasons?: { Code?: string }[];
        };
        this.events.push({
          t: t0,
          t1: Date.now() - this.started,
          kind: level,
          id,
          client: name,
          cmd,
          items: what,
          ok: false,
          error: e?.name,
          message: String(e?.message).slice(0, 120),
          reasons: e?.CancellationReasons?.map((r) => r.Code),
          attempts: e?.$metadata?.attempts,
        });
        throw err;
      }
    };
    client.middlewareStack.add(wrap("call"), { step: "initialize", name: `trace-call-${name}` });
    client.middlewareStack.add(wrap("attempt"), {
      step: "deserialize",
      name: `trace-attempt-${name}`,
    });
  }

  /** Reads the items (every attribute) and the table's stream records for `entityIds`. */
  async snapshot(
    client: DynamoDBClient,
    endpoint: string,
    tableName: string,
    entityIds: string[],
  ): Promise<void> {
    if (!this.on) return;
    for (const entityId of entityIds) {
      const got = await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { PK: { S: entityPk(entityId) }, SK: { S: bucketSk("api") } },
          ConsistentRead: true,
        }),
      );
      this.event("item", { entityId, item: got.Item });
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
      const pks = new Set(entityIds.map(entityPk));
      for (const shard of desc.StreamDescription?.Shards ?? []) {
        let it = (await streams.send(
          new GetShardIteratorCommand({
            StreamArn: arn,
            ShardId: shard.ShardId,
            ShardIteratorType: "TRIM_HORIZON",
          }),
        )).ShardIterator;
        while (it) {
          const page = await streams.send(
            new GetRecordsCommand({ ShardIterator: it, Limit: 1000 }),
          );
          for (const r of page.Records ?? []) {
            const pk = r.dynamodb?.Keys?.PK?.S;
            if (!pk || !pks.has(pk) || r.dynamodb?.Keys?.SK?.S !== bucketSk("api")) continue;
            const img = (i?: Record<string, { N?: string }>) =>
              i && {
                rq: i.rq?.N,
                tpm: i.u_tpm?.N,
                wc: i.wc?.N,
                receipts: Object.keys(i).filter((k) => k.startsWith("r_")).map((k) =>
                  `${k.slice(2)}=${i[k].N}`
                ),
              };
            this.events.push({
              kind: "stream",
              shard: shard.ShardId,
              seq: r.dynamodb?.SequenceNumber,
              at: r.dynamodb?.ApproximateCreationDateTime,
              pk,
              name: r.eventName,
              old: img(r.dynamodb?.OldImage as Record<string, { N?: string }>),
              new: img(r.dynamodb?.NewImage as Record<string, { N?: string }>),
            });
          }
          if ((page.Records ?? []).length === 0) break;
          it = page.NextShardIterator;
        }
      }
    } catch (err) {
      this.event("stream-error", { message: String(err) });
    } finally {
      streams.destroy();
    }
  }

  async save(extra: Record<string, unknown>): Promise<void> {
    if (!this.path) return;
    await Deno.writeTextFile(this.path, JSON.stringify({ ...extra, events: this.events }));
  }
}
