// Concurrency limits: slots taken by acquire and freed by commit or rollback, exactly, on DynamoDB
// Local and on the in-memory backend (an injected clock), combined with a rate limit in one
// write, across OS processes (one killed mid-lease), and through the HTTP helper's streaming.
import assert from "node:assert/strict";
import {
  LeaseExpiredError,
  Limit,
  RateLimiter,
  type RateLimiterOptions,
  RateLimitExceeded,
  ValidationError,
} from "../mod.ts";
import { InMemoryBackend } from "../src/testing/mod.ts";
import { Repository } from "../src/repository.ts";
import { formatLimit, parseLimitSpec } from "../cli/limits.ts";
import { rateLimitHeaders, withRateLimit } from "../src/http/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

type Make = (clock: () => number, options?: Partial<RateLimiterOptions>) => Promise<RateLimiter>;
type Read = (entityId: string) => Promise<{ held?: bigint; slots: number } | undefined>;

const T0 = 1_800_000_000_000;
const streams = Limit.concurrent("streams", 4);
const rpd = Limit.perDay("rpd", 100);

async function refusal(p: Promise<unknown>): Promise<RateLimitExceeded> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RateLimitExceeded) return e;
    throw e;
  }
  throw new Error("not refused");
}

/** The stored count and slot attributes of a bucket's `streams` limit. */
function reader(buckets: Pick<Repository, "getBucket">): Read {
  return async (entityId) => {
    const b = await buckets.getBucket(entityId, "llm");
    const st = b?.limits.get("streams");
    return st && { held: st.held, slots: st.slots?.size ?? 0 };
  };
}

async function cases(t: Deno.TestContext, make: Make, read: Read) {
  const clock = { now: T0 };
  const limiter = await make(() => clock.now);
  const take = (entityId: string, limits: Limit[] = [streams, rpd], timeout = 10_000) =>
    limiter.acquire({
      entityId,
      resource: "llm",
      limits,
      consume: limits.includes(rpd) ? { rpd: 1 } : {},
      leaseTimeoutMs: timeout,
    });

  await t.step(
    "four slots taken, a fifth lease refused, freed by commit and rollback",
    async () => {
      const leases = [];
      for (let i = 0; i < 4; i++) leases.push(await take("e1"));
      assert.deepEqual(leases.map((l) => l.statuses[0].available), [3, 2, 1, 0]);
      assert.deepEqual(await read("e1"), { held: 4n, slots: 4 });
      const e = await refusal(take("e1"));
      const s = e.statuses.find((x) => x.limitName === "streams")!;
      assert.equal(s.exceeded, true);
      assert.equal(s.available, 0);
      assert.equal(s.retryAfterSeconds, 0, "unknown: a slot frees when a lease ends");
      assert.equal(e.statuses.find((x) => x.limitName === "rpd")!.exceeded, false);
      assert.deepEqual(
        await limiter.available({ entityId: "e1", resource: "llm", limits: [streams, rpd] }),
        {
          streams: 0,
          rpd: 96,
        },
      );
      await leases[0].commit();
      assert.deepEqual(await read("e1"), { held: 3n, slots: 3 });
      const fifth = await take("e1");
      await refusal(take("e1"));
      await leases[1].rollback();
      assert.deepEqual(await read("e1"), { held: 3n, slots: 3 });
      await leases[1].commit(); // closed: nothing more
      for (const l of [leases[2], leases[3], fifth]) await l.commit();
      assert.deepEqual(await read("e1"), { held: 0n, slots: 0 });
      // rpd: 5 acquires admitted, one rolled back.
      assert.deepEqual(
        await limiter.available({ entityId: "e1", resource: "llm", limits: [streams, rpd] }),
        {
          streams: 4,
          rpd: 96,
        },
      );
    },
  );

  await t.step("a lease's consume and release keep the slot", async () => {
    const tpm = Limit.perMinute("tpm", 1000);
    const lease = await take("e2", [streams, tpm]);
    await lease.consume({ tpm: 10 });
    await lease.release({ tpm: 5 });
    assert.deepEqual(await read("e2"), { held: 1n, slots: 1 });
    await lease.commit();
    assert.deepEqual(await read("e2"), { held: 0n, slots: 0 });
  });

  await t.step("a slot expires after leaseTimeoutMs; the late commit is told", async () => {
    const one = Limit.concurrent("streams", 1);
    clock.now = T0 + 60_000;
    const a = await take("e3", [one, rpd], 1000);
    clock.now += 1000; // expiry = now: not yet expired (`exp < now`)
    await refusal(take("e3", [one, rpd], 1000));
    assert.equal(
      await limiter.timeUntilAvailable({
        entityId: "e3",
        resource: "llm",
        limits: [one],
        needed: {},
      }),
      0.001,
    );
    clock.now += 1;
    const b = await take("e3", [one, rpd], 1000);
    assert.deepEqual(await read("e3"), { held: 1n, slots: 1 }, "reclaimed and taken in one write");
    await a.adjust({ rpd: 2 });
    await assert.rejects(a.commit(), LeaseExpiredError);
    assert.equal(a.state, "committed");
    await a.commit(); // closed: no second write
    // The late lease's adjustment was written: 2 acquires + 2.
    assert.deepEqual(
      await limiter.available({ entityId: "e3", resource: "llm", limits: [one, rpd] }),
      {
        streams: 0,
        rpd: 96,
      },
    );
    await b.commit();
    assert.deepEqual(await read("e3"), { held: 0n, slots: 0 });
    // A rollback of an expired lease gives its tokens back and throws nothing.
    const c = await take("e3", [one, rpd], 1000);
    clock.now += 1001;
    const d = await take("e3", [one, rpd], 1000);
    await c.rollback();
    assert.equal(c.state, "rolled back");
    await d.commit();
    assert.deepEqual(await read("e3"), { held: 0n, slots: 0 });
  });

  await t.step("an entity's stored concurrent limit holds its slots", async () => {
    // Stored limits carry a layout of one item: that is no split, and the slots are one count.
    await limiter.setLimits({ entityId: "e5", resource: "llm", limits: [streams, rpd] });
    const stored = (entityId: string) =>
      limiter.acquire({ entityId, resource: "llm", consume: { rpd: 1 }, leaseTimeoutMs: 10_000 });
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await stored("e5"));
    const refused = await refusal(stored("e5"));
    assert.ok(refused.statuses.some((s) => s.limitName === "streams" && s.exceeded));
    await held[0].commit();
    const again = await stored("e5");
    assert.deepEqual(await read("e5"), { held: 4n, slots: 4 });
    for (const l of [...held.slice(1), again]) await l.commit();
    assert.deepEqual(await read("e5"), { held: 0n, slots: 0 });
  });

  await t.step("refused before any write: no leaseTimeoutMs, batch, shadow, also", async () => {
    const req = { entityId: "e4", resource: "llm", limits: [streams], consume: {} };
    await assert.rejects(limiter.acquire(req), (e: unknown) => {
      assert.ok(e instanceof ValidationError);
      assert.equal(e.field, "leaseTimeoutMs");
      return true;
    });
    for (
      const [extra, field] of [
        [{ batch: true }, "batch"],
        [{ shadow: true }, "shadow"],
        [{ also: ["other"] }, "targets"],
      ] as [Record<string, unknown>, string][]
    ) {
      await assert.rejects(
        limiter.acquire({ ...req, leaseTimeoutMs: 1000, ...extra }),
        (e: unknown) => e instanceof ValidationError && e.field === field,
      );
    }
    await assert.rejects(
      limiter.acquire({ ...req, leaseTimeoutMs: 0 }),
      (e: unknown) => e instanceof ValidationError && e.field === "leaseTimeoutMs",
    );
    assert.equal(await read("e4"), undefined);
  });
  await limiter.close();
}

Deno.test("concurrent limits: construction, plain data, CLI spec, headers", () => {
  assert.throws(() => Limit.concurrent("c", 0), ValidationError);
  assert.throws(() => Limit.concurrent("c", 1.5), ValidationError);
  assert.throws(() => streams.withSoft(true), ValidationError);
  const copy = Limit.custom(JSON.parse(JSON.stringify(streams)));
  assert.ok(copy.equals(streams) && copy.concurrent);
  assert.ok(!copy.equals(Limit.perSecond("streams", 4)));
  assert.equal(formatLimit(parseLimitSpec("streams:5/concurrent")), "streams:5/concurrent");
  assert.throws(() => parseLimitSpec("streams:0/concurrent"));
  const h = rateLimitHeaders([
    {
      entityId: "k",
      resource: "llm",
      limitName: "streams",
      limit: streams,
      available: 3,
      requested: 0,
      exceeded: false,
      retryAfterSeconds: 0,
    },
  ]);
  assert.equal(h.get("RateLimit-Policy"), `"streams";q=4;qu="concurrent-requests"`);
  assert.equal(h.get("RateLimit"), `"streams";r=3`);
});

Deno.test("concurrent limits on the in-memory backend", async (t) => {
  const backend = new InMemoryBackend();
  await cases(
    t,
    (clock, options) =>
      Promise.resolve(new RateLimiter({ tableName: "in-memory", backend, clock, ...options })),
    reader(backend.buckets),
  );
});

dynamoTest("concurrent limits on DynamoDB Local", async (t, { client, ddb }) => {
  const tableName = uniqueTableName("conc");
  const backend = { buckets: new Repository({ client, tableName }) };
  await cases(t, async (clock, options) => {
    const l = new RateLimiter({ tableName, client, clock, ...options });
    await l.createTable();
    return l;
  }, reader(backend.buckets));

  await t.step("with a rate limit: one UpdateItem to acquire, one to commit", async () => {
    const now = T0 + 3_600_000;
    const limiter = new RateLimiter({ tableName, client, clock: () => now });
    const meter = new Meter(client);
    const go = () =>
      limiter.acquire({
        entityId: "warm",
        resource: "llm",
        limits: [streams, rpd],
        consume: { rpd: 1 },
        leaseTimeoutMs: 5000,
      });
    await (await go()).commit();
    meter.reset();
    const lease = await go();
    await lease.commit();
    assert.deepEqual(meter.calls.map((c) => [c.command, c.failed]), [
      ["UpdateItemCommand", false],
      ["UpdateItemCommand", false],
    ]);
    assert.deepEqual(meter.calls.map((c) => c.tableWcu), [1, 1]);
    await limiter.close();
  });

  await t.step("lost answers: the acquire and the commit are applied once", async () => {
    let lose = 0; // how many of the next bucket writes land but lose their answer
    client.middlewareStack.add(
      (next) => async (args) => {
        const out = await next(args);
        if (lose > 0 && "UpdateExpression" in (args.input as Record<string, unknown>)) {
          lose--;
          throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
        }
        return out;
      },
      { step: "finalizeRequest", name: "conc-lose" },
    );
    try {
      const limiter = new RateLimiter({ tableName, client, clock: () => T0 + 7_200_000 });
      const go = () =>
        limiter.acquire({
          entityId: "lost",
          resource: "llm",
          limits: [streams, rpd],
          consume: { rpd: 1 },
          leaseTimeoutMs: 60_000,
        });
      lose = 1;
      const lease = await go();
      assert.equal(lose, 0);
      assert.deepEqual(await reader(backend.buckets)("lost"), { held: 1n, slots: 1 });
      lose = 1;
      await lease.commit(); // the resend finds the commit's receipt: no LeaseExpiredError
      assert.equal(lose, 0);
      assert.deepEqual(await reader(backend.buckets)("lost"), { held: 0n, slots: 0 });
      const left = await limiter.available({
        entityId: "lost",
        resource: "llm",
        limits: [streams, rpd],
      });
      assert.deepEqual(left, { streams: 4, rpd: 99 });
      await limiter.close();
    } finally {
      client.middlewareStack.remove("conc-lose");
    }
  });

  await t.step("4 processes never exceed max in flight; a killed one's slots free", async () => {
    const max = 2;
    const timeoutMs = 1500;
    const child = new URL("./_concurrency_child.ts", import.meta.url).pathname;
    const spawn = (mode: string, ms: number) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", child],
        env: {
          ENDPOINT: ddb.endpoint,
          TABLE: tableName,
          MODE: mode,
          MAX: String(max),
          TIMEOUT: String(timeoutMs),
          DURATION: String(ms),
        },
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    // One process takes every slot, then is killed mid-lease.
    const crasher = spawn("crash", 0);
    const reader = crasher.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) line += (await reader.read()).value ?? "";
    const held = JSON.parse(line) as { takenAt: number };
    crasher.kill("SIGKILL");
    await crasher.status;
    reader.releaseLock();
    await crasher.stdout.cancel().catch(() => {});
    const workers = Array.from({ length: 4 }, () => spawn("hammer", 4000));
    const reports = await Promise.all(workers.map(async (w) => {
      const out = await w.output();
      return JSON.parse(new TextDecoder().decode(out.stdout)) as {
        intervals: [number, number][];
        refused: number;
        expired: number;
      };
    }));
    const intervals = reports.flatMap((r) => r.intervals);
    assert.ok(intervals.length >= 8, `admitted ${intervals.length}`);
    assert.ok(reports.reduce((n, r) => n + r.refused, 0) > 0, "some refused");
    assert.equal(reports.reduce((n, r) => n + r.expired, 0), 0);
    // No lease admitted before the dead process's slots expired (their expiry: takenAt + timeout).
    const first = Math.min(...intervals.map(([a]) => a));
    assert.ok(first >= held.takenAt + timeoutMs, `first admitted ${first - held.takenAt} ms after`);
    // In flight at once: from the acquire's answer to the commit's call, never more than max.
    const events = intervals.flatMap(([a, b]) => [[a, 1], [b, -1]] as [number, number][])
      .sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let inFlight = 0;
    let most = 0;
    for (const [, d] of events) most = Math.max(most, inFlight += d);
    assert.ok(most <= max, `in flight ${most}`);
    assert.equal(most, max, "the slots were used");
    const b = await backend.buckets.getBucket("shared", "llm");
    assert.equal(b?.limits.get("streams")?.held, 0n);
    assert.equal(b?.limits.get("streams")?.slots?.size ?? 0, 0);
  });

  await t.step("a failed-open acquire takes no slot; its commit frees none", async () => {
    let fault = false;
    client.middlewareStack.add(
      (next) => (args) => {
        if (fault && "UpdateExpression" in (args.input as Record<string, unknown>)) {
          throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
        }
        return next(args);
      },
      { step: "initialize", name: "conc-faults" },
    );
    const limiter = new RateLimiter({
      tableName,
      client,
      failureMode: "fail_open",
      timeoutMs: 300,
    });
    const req = {
      entityId: "open",
      resource: "llm",
      limits: [Limit.concurrent("streams", 1), rpd],
      consume: { rpd: 1 },
      leaseTimeoutMs: 60_000,
    };
    const held = await limiter.acquire(req);
    fault = true;
    const open = await limiter.acquire(req);
    assert.equal(open.failedOpen, true);
    await open.commit();
    fault = false;
    await limiter.flush();
    client.middlewareStack.remove("conc-faults");
    assert.deepEqual(await reader(backend.buckets)("open"), { held: 1n, slots: 1 });
    await held.commit();
    assert.deepEqual(await reader(backend.buckets)("open"), { held: 0n, slots: 0 });
    assert.deepEqual(
      await limiter.available({ entityId: "open", resource: "llm", limits: [rpd] }),
      {
        rpd: 98,
      },
    );
    await limiter.close();
  });

  await t.step("a streaming response frees its slot at body end and at disconnect", async () => {
    const limiter = new RateLimiter({ tableName, client });
    const one = Limit.concurrent("streams", 1);
    let release!: () => void;
    const handler = withRateLimit(() => {
      let n = 0;
      const gate = new Promise<void>((r) => (release = r));
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (n++ === 1) await gate;
          if (n > 3) return c.close();
          c.enqueue(new TextEncoder().encode("x".repeat(70_000)));
        },
      });
      return new Response(body);
    }, {
      limiter,
      key: () => ({
        entityId: "http",
        resource: "llm",
        limits: [one],
        consume: {},
        leaseTimeoutMs: 60_000,
      }),
    });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
    const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
    const slots = () => reader(backend.buckets)("http");
    const until = async (want: bigint) => {
      for (let i = 0; i < 100 && (await slots())?.held !== want; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal((await slots())?.held, want);
    };
    try {
      // Body end: the slot is held while streaming, refused meanwhile, freed after.
      const res = await fetch(url);
      assert.equal(res.headers.get("RateLimit-Policy"), `"streams";q=1;qu="concurrent-requests"`);
      assert.equal(res.headers.get("RateLimit"), `"streams";r=0`);
      const r = res.body!.getReader();
      await r.read();
      assert.deepEqual(await slots(), { held: 1n, slots: 1 });
      const busy = await fetch(url);
      assert.equal(busy.status, 429);
      await busy.body?.cancel();
      release();
      while (!(await r.read()).done);
      await until(0n);
      // Client disconnect mid-stream.
      const ctl = new AbortController();
      const res2 = await fetch(url, { signal: ctl.signal });
      const r2 = res2.body!.getReader();
      await r2.read();
      assert.deepEqual(await slots(), { held: 1n, slots: 1 });
      ctl.abort();
      await r2.cancel().catch(() => {});
      release();
      await until(0n);
    } finally {
      await server.shutdown();
      await limiter.close();
    }
  });
});
