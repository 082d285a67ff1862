/**
 * Cost per operation: DynamoDB calls, round trips and capacity of each limiter operation, and of
 * rate-limiter-flexible's `RateLimiterDynamo` for comparison, measured on a real DynamoDB (Local)
 * with {@link Meter} (`ReturnConsumedCapacity: "INDEXES"`) and {@link Tracer}.
 *
 * Time is an injected clock, so "after refill" is exact and every figure is the same on every run.
 *
 * @module
 */

import type { DynamoDB } from "@aws-sdk/client-dynamodb";
import { RateLimiterDynamo } from "rate-limiter-flexible";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { Meter } from "./meter.ts";
import { type Cost, costOf, Tracer } from "./bench_trace.ts";
import { benchClient } from "./bench_clients.ts";

/** A target from the issue: round trips and WCU (table + indexes), both "at most". */
export interface CostGoal {
  /** Round trips at most. */
  roundTrips: number;
  /** Billed WCU at most (reported + failed conditional writes). */
  wcu: number;
}

/** One measured operation. */
export interface CostRow {
  /** Which library. */
  library: "zae-limiter" | "rate-limiter-flexible";
  /** What was done. */
  operation: string;
  /** The worst of `repeats` measurements (per operation; per rejection for rejections). */
  cost: Cost;
  /** How many times it was measured. */
  repeats: number;
  /** The goal, for the operations the issue sets one for. */
  goal?: CostGoal;
  /** A remark printed beside the row. */
  note?: string;
}

/** Billed write capacity: what DynamoDB reports plus 1 WCU per failed condition (AWS bills a
 * failed conditional write; DynamoDB Local reports nothing for it). */
export function billedWcu(cost: Cost): number {
  return cost.wcu + cost.failedConditions;
}

/** Whether a row meets its goal (`undefined` without one). */
export function goalMet(row: CostRow): boolean | undefined {
  if (!row.goal) return undefined;
  return row.cost.roundTrips <= row.goal.roundTrips && billedWcu(row.cost) <= row.goal.wcu;
}

/** Options of {@link measureCosts}. */
export interface MeasureCostsOptions {
  /** DynamoDB (Local) endpoint. */
  endpoint: string;
  /** Measurements per operation; the worst is kept. @default 3 */
  repeats?: number;
  /** Rejections measured for the repeated-rejection row. @default 100 */
  rejections?: number;
  /** Also measure rate-limiter-flexible. @default true */
  flexible?: boolean;
}

const rpm = (n: number) => Limit.perMinute("rpm", n);
const tpm = (n: number) => Limit.perMinute("tpm", n);
const LIMITS = [rpm(1_000), tpm(100_000)];
const CONSUME = { rpm: 1, tpm: 500 };

/**
 * Measures every operation's cost on a fresh table at `endpoint`.
 *
 * @example
 * ```ts ignore
 * const rows = await measureCosts({ endpoint: "http://127.0.0.1:8000" });
 * ```
 */
export async function measureCosts(options: MeasureCostsOptions): Promise<CostRow[]> {
  const { endpoint, repeats = 3, rejections = 100, flexible = true } = options;
  const rows: CostRow[] = [];
  const client = benchClient(endpoint);
  const meter = new Meter(client);
  const tracer = new Tracer(client);
  const tableName = `bench_cost_${Date.now().toString(36)}`;
  let now = Math.floor(Date.now() / 1000) * 1000;
  const clock = () => now;
  const limiter = new RateLimiter({ tableName, client, createTable: true, clock });
  // A second process: its own client, not metered.
  const otherClient = benchClient(endpoint);
  const other = new RateLimiter({ tableName, client: otherClient, clock });

  /** Runs `fn` `repeats` times and keeps the worst cost. */
  const measure = async (
    operation: string,
    fn: (i: number) => Promise<void>,
    extra: Partial<CostRow> = {},
    times = repeats,
  ): Promise<void> => {
    let worst: Cost | undefined;
    for (let i = 0; i < times; i++) {
      meter.reset();
      tracer.reset();
      await fn(i);
      const c = costOf(meter, tracer);
      if (
        !worst || c.roundTrips > worst.roundTrips || c.calls > worst.calls ||
        billedWcu(c) > billedWcu(worst) || c.rcu > worst.rcu
      ) worst = c;
    }
    rows.push({ library: "zae-limiter", operation, cost: worst!, repeats: times, ...extra });
  };
  const acquire = (entityId: string, resource: string, extra: Record<string, unknown> = {}) =>
    limiter.acquire({ entityId, resource, limits: LIMITS, consume: CONSUME, ...extra });

  try {
    await limiter.createTable();
    // Entities: plain keys (no metadata item), and a project with a cascading key.
    await limiter.createEntity({ entityId: "proj-1", name: "Project" });
    for (let i = 0; i < repeats + 1; i++) {
      await limiter.createEntity({ entityId: `key-c${i}`, parentId: "proj-1", cascade: true });
    }

    await measure(
      "first call for an unseen entity (metadata read, then cached 60 s)",
      async (i) => await (await acquire(`key-${i}`, "gpt-4")).commit(),
      {
        note: "per entity and process, again each time the 60 s cache runs out " +
          "(`limitsCacheTtlMs`, refreshed in the background while in use): the entity's " +
          "controls (disabled, bypass) and parent; every call reads it, `cascade: false` too",
      },
    );
    await measure(
      "first call on an unseen resource (defaults and controls read, then cached 60 s)",
      async (i) => await (await acquire("key-0", `new-model-${i}`)).commit(),
      {
        note: "per resource and process, shared by every entity on it: the resource's " +
          "default limits, the system defaults and the resource's controls, one read",
      },
    );
    // Each model's resource part is warmed by another key: the bucket alone is new.
    for (let i = 0; i < repeats; i++) {
      await (await acquire("key-warm", `model-${i}`, { cascade: false })).commit();
    }
    await measure(
      "first use of a bucket",
      async (i) => await (await acquire("key-0", `model-${i}`)).commit(),
      { goal: { roundTrips: 1, wcu: 1 } },
    );
    await measure("warm acquire + commit (2 limits)", async () => {
      now += 1_000;
      await (await acquire("key-0", "gpt-4")).commit();
    }, { goal: { roundTrips: 1, wcu: 1 } });
    await measure("acquire after refill", async () => {
      now += 61_000;
      await (await acquire("key-0", "gpt-4")).commit();
    }, { goal: { roundTrips: 1, wcu: 1 } });
    await measure("acquire + adjust + commit", async () => {
      now += 1_000;
      const lease = await acquire("key-0", "gpt-4");
      await lease.adjust({ tpm: 242 });
      await lease.commit();
    }, { goal: { roundTrips: 2, wcu: 2 } });
    await measure("acquire + rollback", async () => {
      now += 1_000;
      await (await acquire("key-0", "gpt-4")).rollback();
    }, { goal: { roundTrips: 2, wcu: 2 } });
    await measure("acquire + consume mid-lease + commit", async () => {
      now += 1_000;
      const lease = await acquire("key-0", "gpt-4");
      await lease.consume({ tpm: 242 }); // a streamed chunk: a conditional write of its own
      await lease.commit(); // writes nothing more
    }, { goal: { roundTrips: 2, wcu: 2 }, note: "the consume is an acquire's write, no request" });
    // One request charged to a model and to an "all models" pool (issue 16, `also`).
    await (await acquire("key-0", "gpt-4", { also: ["all-models"], cascade: false })).commit();
    await measure("warm acquire on two resources (`also`) + commit", async () => {
      now += 1_000;
      await (await acquire("key-0", "gpt-4", { also: ["all-models"], cascade: false })).commit();
    }, {
      goal: { roundTrips: 1, wcu: 4 },
      note: "one TransactWriteItems of both buckets: 2 WCU an item, as a cascade",
    });

    const quota = [Limit.quota("tokens", 1e9, { reset: "month@Europe/Berlin" })];
    const quotaAcquire = () =>
      limiter.acquire({
        entityId: "key-0",
        resource: "quota",
        limits: quota,
        consume: { tokens: 500 },
      });
    await (await quotaAcquire()).commit(); // cold: the bucket's first write
    await measure("quota acquire (warm)", async () => {
      now += 1_000;
      await (await quotaAcquire()).commit();
    }, { goal: { roundTrips: 1, wcu: 1 }, note: "a monthly quota: same-window write" });

    // A concurrent limit with a rate limit: the slot is taken in the acquire's write and freed
    // in the commit's (docs/design.md, "Concurrency limits").
    const streams = [Limit.concurrent("streams", 5), rpm(1_000_000)];
    const concurrentAcquire = () =>
      limiter.acquire({
        entityId: "key-0",
        resource: "streams",
        limits: streams,
        consume: { rpm: 1 },
        leaseTimeoutMs: 60_000,
      });
    await (await concurrentAcquire()).commit(); // cold: the bucket's first write
    await measure("concurrent acquire + commit", async () => {
      now += 1_000;
      await (await concurrentAcquire()).commit();
    }, {
      goal: { roundTrips: 2, wcu: 2 },
      note: "slot taken with the rate limit, freed by commit",
    });

    // Exhaust a small bucket (3 a minute), then knock on it again and again.
    const tiny = [rpm(3)];
    const knock = async (lim: RateLimiter, entityId: string) => {
      try {
        const lease = await lim.acquire({
          entityId,
          resource: "tiny",
          limits: tiny,
          consume: { rpm: 1 },
          cascade: false,
        });
        await lease.commit();
        return true;
      } catch (err) {
        if (err instanceof RateLimitExceeded) return false;
        throw err;
      }
    };
    now += 1_000;
    for (let i = 0; i < 3; i++) {
      if (!(await knock(limiter, "key-0"))) throw new Error("tiny bucket refused too early");
    }
    await measure("first rejection once the bucket is empty", async () => {
      now += 10;
      if (await knock(limiter, "key-0")) throw new Error("over-admission on the tiny bucket");
    }, { note: "the last admitted write told the process the bucket is empty" });
    meter.reset();
    tracer.reset();
    for (let i = 0; i < rejections; i++) {
      now += 10;
      if (await knock(limiter, "key-0")) throw new Error("over-admission on the tiny bucket");
    }
    const total = costOf(meter, tracer);
    rows.push({
      library: "zae-limiter",
      operation: "repeated rejection of an exhausted bucket",
      cost: perRequest(total, rejections),
      repeats: rejections,
      goal: { roundTrips: 0, wcu: 0 },
      note: `per rejection, over ${rejections} (deny cache)`,
    });
    // The refusals above are counted in memory; the flush (in the background, every 10 s by
    // default) writes them to the key's hourly usage snapshot.
    await measure("refusal counts: the flush after those rejections", async () => {
      await limiter.flush();
    }, {
      goal: { roundTrips: 1, wcu: 1 },
      note: "one UpdateItem per entity, resource and hour with refusals, per flush (every 10 s)",
    }, 1);
    await measure("rejection in a process that never saw the bucket", async () => {
      // Its refusal count, written at close, is the row above's cost: not measured here.
      const fresh = new RateLimiter({ tableName, client, clock, refusalCounts: false });
      if (await knock(fresh, "key-0")) throw new Error("over-admission on the tiny bucket");
      await fresh.close();
    }, { note: "its first write fails and returns the item: refused with no retry" });

    await (await other.acquire({
      entityId: "key-0",
      resource: "warm-up",
      limits: LIMITS,
      consume: CONSUME,
    })).commit();
    await measure(
      "acquire right after another process used a bucket this one saw full",
      async () => {
        now += 61_000;
        await (await other.acquire({ // not metered: another client
          entityId: "key-0",
          resource: "gpt-4",
          limits: LIMITS,
          consume: CONSUME,
        })).commit();
        await (await acquire("key-0", "gpt-4")).commit();
      },
      { note: "the idle guess fails and returns the item; one retry" },
    );

    await measure(
      "first cascaded call for an unseen child (metadata read)",
      async (i) => await (await acquire(`key-c${i}`, "gpt-4")).commit(),
    );
    await measure("warm cascaded acquire + commit", async () => {
      now += 1_000;
      await (await acquire("key-c0", "gpt-4")).commit();
    }, { goal: { roundTrips: 1, wcu: 4 }, note: "one TransactWriteItems of 2 items" });
    await measure("cascaded acquire + adjust + commit", async () => {
      now += 1_000;
      const lease = await acquire("key-c0", "gpt-4");
      await lease.adjust({ tpm: 242 });
      await lease.commit();
    }, { note: "the commit writes both items in parallel" });

    if (flexible) rows.push(...await measureFlexible(client, meter, tracer, repeats, rejections));
  } finally {
    await limiter.close();
    await other.close();
    client.destroy();
    otherClient.destroy();
  }
  return rows;
}

function perRequest(total: Cost, n: number): Cost {
  const div = (x: number) => x / n;
  return {
    calls: div(total.calls),
    roundTrips: div(total.roundTrips),
    wcu: div(total.wcu),
    indexWcu: div(total.indexWcu),
    rcu: div(total.rcu),
    failedConditions: div(total.failedConditions),
    commands: Object.fromEntries(Object.entries(total.commands).map(([k, v]) => [k, div(v)])),
  };
}

/** Waits for a RateLimiterDynamo to set up its table. */
export function makeFlexible(
  client: DynamoDB,
  options: { tableName: string; points: number; duration: number; tableCreated?: boolean },
): Promise<RateLimiterDynamo> {
  return new Promise((resolve, reject) => {
    const rl: RateLimiterDynamo = new RateLimiterDynamo(
      {
        storeClient: client,
        tableName: options.tableName,
        points: options.points,
        duration: options.duration,
        tableCreated: options.tableCreated,
        ttlSet: options.tableCreated,
      },
      (err?: unknown) => (err ? reject(err) : resolve(rl)),
    );
  });
}

async function measureFlexible(
  client: DynamoDB,
  meter: Meter,
  tracer: Tracer,
  repeats: number,
  rejections: number,
): Promise<CostRow[]> {
  const rows: CostRow[] = [];
  const tableName = `bench_rlf_${Date.now().toString(36)}`;
  const rl = await makeFlexible(client, { tableName, points: 1_000_000, duration: 60 });
  const tiny = await makeFlexible(client, {
    tableName,
    points: 3,
    duration: 60,
    tableCreated: true,
  });
  const measure = async (operation: string, fn: (i: number) => Promise<void>, note?: string) => {
    let worst: Cost | undefined;
    for (let i = 0; i < repeats; i++) {
      meter.reset();
      tracer.reset();
      await fn(i);
      const c = costOf(meter, tracer);
      if (!worst || c.calls > worst.calls || billedWcu(c) > billedWcu(worst)) worst = c;
    }
    rows.push({ library: "rate-limiter-flexible", operation, cost: worst!, repeats, note });
  };
  await measure("first consume of a key", async (i) => void await rl.consume(`k-${i}`, 1));
  await measure(
    "consume in steady state",
    async () => void await rl.consume("k-0", 1),
    "the first write fails while the window is open; a second one adds",
  );
  for (let i = 0; i < 3; i++) await tiny.consume("tiny", 1);
  meter.reset();
  tracer.reset();
  for (let i = 0; i < rejections; i++) {
    try {
      await tiny.consume("tiny", 1);
      throw new Error("rate-limiter-flexible admitted past its points");
    } catch (err) {
      if (err instanceof Error) throw err; // a refusal is a RateLimiterRes, not an Error
    }
  }
  rows.push({
    library: "rate-limiter-flexible",
    operation: "repeated rejection of an exhausted key",
    cost: perRequest(costOf(meter, tracer), rejections),
    repeats: rejections,
    note: `per rejection, over ${rejections}`,
  });
  return rows;
}
