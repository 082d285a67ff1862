/**
 * A per-item write ceiling in front of DynamoDB (Local): an HTTP proxy that forwards every call
 * and refuses a write with DynamoDB's own throttling error once the item it writes has used its
 * write capacity for the second. It makes a hot key visible on a laptop, where DynamoDB Local
 * itself never throttles.
 *
 * How it counts (the rule of a real partition, scaled down by `wcuPerSecond`):
 *
 * - `PutItem`, `UpdateItem`, `DeleteItem`: 1 WCU for the item (one write of an item under 1 KB;
 *   the item's real size is not measured, the limiter's bucket items stay well under 1 KB).
 * - `TransactWriteItems`: 2 WCU for every item in it (`ConditionCheck` included), all or nothing:
 *   if one item lacks capacity, none is charged and the whole transaction is refused.
 * - `BatchWriteItem`: 1 WCU per item; the items over the ceiling come back in `UnprocessedItems`
 *   (the rest are forwarded), and when every item is over it the call fails.
 * - Reads, table operations and PartiQL are forwarded uncounted.
 *
 * Each item has a token bucket of `burst` WCU (one second's worth by default) refilled at
 * `wcuPerSecond`, in exact integer thousandths of a WCU per millisecond. A write is charged when
 * it reaches the proxy, whatever DynamoDB answers then (a failed condition costs capacity on
 * DynamoDB too); a refused write is not charged.
 *
 * Over the ceiling, the answer is what DynamoDB sends for a hot partition of an on-demand table:
 * HTTP 400, `application/x-amz-json-1.0`, `ProvisionedThroughputExceededException` for a single
 * write or a whole batch, and `TransactionCanceledException` with the cancellation reason
 * `ThrottlingError` on the throttled items (`None` on the others) for a transaction. The AWS SDK
 * and the limiter retry both, and know that neither was applied.
 *
 * The proxy lives in the calling process and owns no child process: it stops with
 * {@link WriteCeiling.close} (or `await using`), and with the process however that ends.
 *
 * @example
 * ```ts ignore
 * import { startWriteCeiling } from "@zae/limiter/testing";
 * await using ceiling = await startWriteCeiling({ upstream: "http://127.0.0.1:8000", wcuPerSecond: 100 });
 * // point the limiter's client at ceiling.endpoint, run the load, then:
 * console.log(ceiling.stats().throttled);
 * ```
 *
 * @module
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Buffer } from "node:buffer";
import { ValidationError } from "../errors.ts";
import {
  canonicalKey,
  chargesOf,
  ItemBuckets,
  type ItemCharge,
  positiveInteger,
  WRITES,
} from "./ceiling_charges.ts";

export { canonicalKey, chargesOf, ItemBuckets, type ItemCharge };

type Json = Record<string, unknown>;
type Bytes = Uint8Array<ArrayBuffer>;
type KeyOf = (table: string, item: Json) => Promise<Json>;

/** Options of {@link startWriteCeiling}. */
export interface WriteCeilingOptions {
  /** The DynamoDB endpoint calls are forwarded to, e.g. `http://127.0.0.1:8000`. */
  upstream: string;
  /** Write capacity units each item takes per second. @default 1000 (a real partition's) */
  wcuPerSecond?: number;
  /** WCU an idle item can take at once. @default wcuPerSecond (one second's worth) */
  burst?: number;
  /** Port to listen on. @default 0 (a free port) */
  port?: number;
  /** Address to listen on. @default "127.0.0.1" */
  hostname?: string;
  /** Monotonic clock in ms, for tests of the accounting. @default performance.now */
  clock?: () => number;
}

/** What the ceiling saw since it started (or since {@link WriteCeiling.reset}). */
export interface WriteCeilingStats {
  /** Calls received, of any kind. */
  calls: number;
  /** Write calls (counted operations) forwarded to DynamoDB. */
  writesForwarded: number;
  /** Write calls refused whole with a throttling error. */
  throttled: number;
  /** Refused calls by operation, e.g. `{ TransactWriteItems: 12 }`. */
  throttledByOperation: Record<string, number>;
  /** Batch items sent back in `UnprocessedItems`. */
  unprocessedItems: number;
  /** WCU charged in all. */
  wcu: number;
  /** Per item (`table` and key as canonical JSON): WCU charged and writes refused. */
  items: Map<string, { table: string; key: string; wcu: number; throttled: number }>;
}

/** A running write ceiling: see {@link startWriteCeiling}. */
export interface WriteCeiling extends AsyncDisposable {
  /** The proxy's URL: give it to the DynamoDB client as `endpoint`. */
  readonly endpoint: string;
  /** The port it listens on. */
  readonly port: number;
  /** WCU per item per second; can be changed while running (buckets keep their level). */
  wcuPerSecond: number;
  /** A snapshot of the counters. */
  stats(): WriteCeilingStats;
  /** Zeroes the counters and refills every item. */
  reset(): void;
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>;
}

const JSON_1_0 = "application/x-amz-json-1.0";
const ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#";
const HOP_BY_HOP = new Set([
  "host",
  "connection",
  "keep-alive",
  "content-length",
  "transfer-encoding",
  "expect",
  "upgrade",
  "te",
  "trailer",
]);

/**
 * Starts the proxy on `hostname:port` in front of `upstream`. Close it when done.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { startWriteCeiling } from "@zae/limiter/testing";
 * await using ceiling = await startWriteCeiling({ upstream: "http://127.0.0.1:8000", wcuPerSecond: 100 });
 * const client = new DynamoDBClient({ endpoint: ceiling.endpoint, region: "us-east-1" });
 * ```
 */
export async function startWriteCeiling(options: WriteCeilingOptions): Promise<WriteCeiling> {
  const {
    upstream,
    wcuPerSecond = 1000,
    burst,
    port = 0,
    hostname = "127.0.0.1",
    clock = () => performance.now(),
  } = options;
  let upstreamUrl: URL;
  try {
    upstreamUrl = new URL(upstream);
  } catch {
    throw new ValidationError("upstream", upstream, "must be an http(s) URL");
  }
  if (upstreamUrl.protocol !== "http:" && upstreamUrl.protocol !== "https:") {
    throw new ValidationError("upstream", upstream, "must be an http(s) URL");
  }
  const base = upstreamUrl.href.replace(/\/+$/, "");
  const buckets = new ItemBuckets(wcuPerSecond, burst ?? wcuPerSecond);
  const followsRate = burst === undefined;
  let stats = emptyStats();
  const schemas = new Map<string, Promise<string[] | undefined>>();

  const forward = async (req: IncomingMessage, body: Bytes, target?: string) => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      headers.set(name, Array.isArray(value) ? value.join(", ") : value);
    }
    if (target) headers.set("x-amz-target", target);
    return await fetch(`${base}${req.url ?? "/"}`, {
      method: req.method,
      headers,
      body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
    });
  };

  /** The key attribute names of a table, by DescribeTable (asked once per table). */
  const keyOf = (req: IncomingMessage): KeyOf => async (table, item) => {
    let names = schemas.get(table);
    if (names === undefined) {
      names = forward(
        req,
        new TextEncoder().encode(JSON.stringify({ TableName: table })),
        "DynamoDB_20120810.DescribeTable",
      ).then(async (r) => {
        if (!r.ok) {
          await r.body?.cancel();
          return undefined;
        }
        const d = await r.json() as { Table?: { KeySchema?: { AttributeName: string }[] } };
        return d.Table?.KeySchema?.map((k) => k.AttributeName);
      }).catch(() => undefined);
      schemas.set(table, names);
      const got = await names;
      if (got === undefined) schemas.delete(table); // ask again next time
    }
    const got = await names;
    // Without the schema (the table is missing: DynamoDB will refuse the put), the whole item.
    if (got === undefined) return item ?? {};
    return Object.fromEntries(got.map((n) => [n, item?.[n]]));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    stats.calls++;
    const target = String(req.headers["x-amz-target"] ?? "");
    const operation = target.slice(target.indexOf(".") + 1);
    let parsed: Json | undefined;
    let charges: ItemCharge[] = [];
    if (WRITES.has(operation)) {
      try {
        parsed = JSON.parse(new TextDecoder().decode(body)) as Json;
        charges = await chargesOf(operation, parsed, keyOf(req));
      } catch {
        charges = []; // malformed: DynamoDB answers with its ValidationException
      }
    }
    let sent: Bytes = body;
    let unprocessed: Json | undefined;
    if (charges.length > 0) {
      const ids = charges.map((c) => `${c.table}\n${c.key}`);
      const refusal = (why: string[]) => {
        stats.throttled++;
        stats.throttledByOperation[operation] = (stats.throttledByOperation[operation] ?? 0) + 1;
        for (const c of charges) if (why.includes(`${c.table}\n${c.key}`)) item(c).throttled++;
      };
      if (operation === "BatchWriteItem") {
        const kept: Json = {};
        unprocessed = {};
        const requests = Object.entries(parsed!.RequestItems as Json)
          .flatMap(([t, rs]) => (rs as Json[]).map((r) => [t, r] as const));
        let left = 0;
        requests.forEach(([table, r], i) => {
          const into = buckets.take([ids[i]], [1], clock()).length === 0 ? kept : unprocessed!;
          ((into[table] ??= []) as Json[]).push(r);
          if (into === kept) charged(charges[i]);
          else left++;
        });
        if (Object.keys(kept).length === 0) {
          refusal(ids);
          return send(res, 400, throughputExceeded(charges[0].table));
        }
        for (const [i, c] of charges.entries()) {
          if (!((kept[c.table] ?? []) as Json[]).includes(requests[i][1])) item(c).throttled++;
        }
        stats.unprocessedItems += left;
        sent = new TextEncoder().encode(JSON.stringify({ ...parsed, RequestItems: kept }));
        if (Object.keys(unprocessed).length === 0) unprocessed = undefined;
      } else {
        const short = buckets.take(ids, charges.map((c) => c.wcu), clock());
        if (short.length > 0) {
          refusal(short);
          return send(
            res,
            400,
            operation === "TransactWriteItems"
              ? transactionThrottled(ids.map((id) => short.includes(id)))
              : throughputExceeded(charges[0].table),
          );
        }
        charges.forEach(charged);
      }
      stats.writesForwarded++;
    }
    const answer = await forward(req, sent);
    const out = new Uint8Array(await answer.arrayBuffer());
    const headers: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.has(name) && name !== "content-encoding") headers[name] = value;
    });
    if (unprocessed && answer.ok) {
      const result = JSON.parse(new TextDecoder().decode(out)) as Json;
      const left = (result.UnprocessedItems ?? {}) as Json;
      for (const [t, rs] of Object.entries(unprocessed)) {
        left[t] = [...((left[t] ?? []) as Json[]), ...(rs as Json[])];
      }
      delete headers["x-amz-crc32"]; // the body changes
      return send(res, answer.status, { ...result, UnprocessedItems: left }, headers);
    }
    res.writeHead(answer.status, { ...headers, "content-length": String(out.byteLength) });
    res.end(Buffer.from(out));
  };

  const item = (c: ItemCharge) => {
    const id = `${c.table}\n${c.key}`;
    let s = stats.items.get(id);
    if (s === undefined) {
      stats.items.set(id, s = { table: c.table, key: c.key, wcu: 0, throttled: 0 });
    }
    return s;
  };
  const charged = (c: ItemCharge) => {
    item(c).wcu += c.wcu;
    stats.wcu += c.wcu;
  };

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      // DynamoDB unreachable or the call broken: the client sees a dropped connection, as it
      // would without the proxy.
      res.destroy();
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  return {
    endpoint: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${bound}`,
    port: bound,
    get wcuPerSecond() {
      return buckets.wcuPerSecond;
    },
    set wcuPerSecond(v: number) {
      positiveInteger("wcuPerSecond", v);
      buckets.wcuPerSecond = v;
      if (followsRate) buckets.burst = v;
    },
    stats: () => ({
      ...stats,
      throttledByOperation: { ...stats.throttledByOperation },
      items: new Map([...stats.items].map(([k, v]) => [k, { ...v }])),
    }),
    reset: () => {
      stats = emptyStats();
      buckets.clear();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function emptyStats(): WriteCeilingStats {
  return {
    calls: 0,
    writesForwarded: 0,
    throttled: 0,
    throttledByOperation: {},
    unprocessedItems: 0,
    wcu: 0,
    items: new Map(),
  };
}

async function readBody(req: IncomingMessage): Promise<Bytes> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of req) chunks.push(chunk as Uint8Array);
  return new Uint8Array(Buffer.concat(chunks));
}

function send(res: ServerResponse, status: number, body: Json, extra: Record<string, string> = {}) {
  const text = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    ...extra,
    "content-type": JSON_1_0,
    "content-length": String(text.byteLength),
    "x-amzn-requestid": extra["x-amzn-requestid"] ?? crypto.randomUUID(),
  });
  res.end(text);
}

/** DynamoDB's answer to a write on a hot partition. */
function throughputExceeded(table: string): Json {
  return {
    __type: `${ERROR_PREFIX}ProvisionedThroughputExceededException`,
    message: "Throughput exceeds the current capacity of your table or index: the item is over " +
      "its write ceiling (zae-limiter write-ceiling harness). Try again shortly.",
    ThrottlingReasons: [{
      reason: "TableWriteKeyRangeThroughputExceeded",
      resource: `arn:aws:dynamodb:ddblocal:000000000000:table/${table}`,
    }],
  };
}

/** DynamoDB's answer to a transaction with a throttled item: one reason per item, in order. */
function transactionThrottled(throttled: boolean[]): Json {
  const codes = throttled.map((t) => (t ? "ThrottlingError" : "None"));
  return {
    __type: `${ERROR_PREFIX}TransactionCanceledException`,
    Message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${
      codes.join(", ")
    }]`,
    CancellationReasons: throttled.map((t) =>
      t
        ? {
          Code: "ThrottlingError",
          Message: "Throughput exceeds the current capacity of your table or index.",
        }
        : { Code: "None" }
    ),
  };
}
