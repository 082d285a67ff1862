/**
 * A host whose clock is wrong: the default clock is corrected from the time in DynamoDB's answers
 * (src/clock.ts), so a process an hour fast cannot lock a key out for the others; an injected
 * clock is left alone. The skewed host is a second OS process against DynamoDB Local.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Limit, RateLimiter, ValidationError } from "../mod.ts";
import { ServerClock, SkewEstimate } from "../src/clock.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const HOUR = 3_600_000;
const limits = [Limit.perMinute("rpm", 10)];
const key = { entityId: "shared", resource: "api", limits };

Deno.test("SkewEstimate: bounds from the Date header, moved only by clear evidence", () => {
  const est = new SkewEstimate();
  assert.equal(est.midMs, 0);
  // Sent at 1000, received at 1100; the header says second 5000 (server time in [5000, 6000)).
  assert.equal(est.observe(1000, 1100, 5000), true);
  assert.deepEqual([est.lowMs, est.highMs], [3900, 5000]);
  // An answer whose bounds hold the current ones changes nothing.
  assert.equal(est.observe(0, 1200, 5000), false);
  assert.deepEqual([est.lowMs, est.highMs], [3900, 5000]);
  // One that overlaps narrows them.
  assert.equal(est.observe(2500, 2550, 7000), true);
  assert.deepEqual([est.lowMs, est.highMs], [4450, 5000]);
  // One that contradicts them (the host's clock was stepped) replaces them.
  assert.equal(est.observe(10_000, 10_020, 9000), true);
  assert.deepEqual([est.lowMs, est.highMs], [-1020, 0]);
  assert.equal(est.midMs, -510);
});

Deno.test("ServerClock: corrects beyond the tolerance only, warns once per change", () => {
  const warnings: string[] = [];
  const clock = new ServerClock({ toleranceMs: 1000, warn: (m) => warnings.push(m) });
  assert.equal(clock.verified, false);
  const header = (offset: number) => new Date(Date.now() + offset).toUTCString();
  // A host 400 ms off: within the tolerance, left as is.
  let t = Date.now();
  clock.observe(t, t + 2, header(400));
  assert.equal(clock.verified, true);
  assert.equal(clock.correctionMs, 0);
  assert.equal(warnings.length, 0);
  // The host's clock is now an hour fast: corrected, one warning naming the offset.
  for (let i = 0; i < 20; i++) {
    t = Date.now();
    clock.observe(t, t + 2, header(-HOUR));
  }
  assert.ok(Math.abs(clock.correctionMs + HOUR) <= 1002, `correction ${clock.correctionMs}`);
  assert.ok(Math.abs(clock.now() - (Date.now() - HOUR)) <= 1002);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /3\d{3}\.\d s ahead of DynamoDB's/);
  // Back in agreement: the correction goes, with one more warning.
  for (let i = 0; i < 5; i++) {
    t = Date.now();
    clock.observe(t, t + 2, header(0));
  }
  assert.equal(clock.correctionMs, 0);
  assert.equal(warnings.length, 2);
  assert.match(warnings[1], /no longer corrected/);
});

Deno.test("ServerClock: a clock stepped ahead after the last answer is not believed", () => {
  const clock = new ServerClock({ warn: () => {} });
  const t = Date.now();
  clock.observe(t, t + 1, new Date(t).toUTCString());
  const realNow = Date.now;
  Date.now = () => realNow() + HOUR;
  try {
    const seen = clock.now();
    assert.ok(Math.abs(seen - realNow()) < 1500, `clock read ${seen - realNow()} ms from true`);
  } finally {
    Date.now = realNow;
  }
});

Deno.test("ServerClock.ready: one probe for concurrent first calls; what a failed probe means", async () => {
  const clock = new ServerClock({ warn: () => {} });
  const deadline = Date.now() + 2000;
  // An outage: the callers go on (uncorrected); nothing thrown.
  let calls = 0;
  const down = () => {
    calls++;
    return Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { name: "Error" }));
  };
  await Promise.all([clock.ready(down, deadline), clock.ready(down, deadline)]);
  assert.equal(calls, 1);
  // A misconfiguration is thrown, so the first call reports it.
  const missing = Object.assign(new Error("Cannot do operations on a non-existent table"), {
    name: "ResourceNotFoundException",
  });
  await assert.rejects(
    clock.ready(() => Promise.reject(missing), deadline, (e) => e === missing),
    (e) => e === missing,
  );
  // A signature refused for a skew the SDK has just corrected is asked once more.
  calls = 0;
  const skewed = () => {
    calls++;
    if (calls === 1) {
      return Promise.reject(Object.assign(new Error("Signature expired"), {
        name: "InvalidSignatureException",
        $metadata: { clockSkewCorrected: true },
      }));
    }
    const t = Date.now();
    clock.observe(t, t + 1, new Date(t).toUTCString());
    return Promise.resolve({});
  };
  await clock.ready(skewed, deadline, () => true);
  assert.equal(calls, 2);
  assert.equal(clock.verified, true);
  // Verified: no probe any more.
  await clock.ready(() => Promise.reject(new Error("not called")), deadline, () => true);
});

Deno.test("clockToleranceMs is validated", () => {
  assert.throws(
    () => new RateLimiter({ tableName: "rate_limits", clockToleranceMs: -1 }),
    (e) => e instanceof ValidationError && /clockToleranceMs/.test(e.message),
  );
});

/** Runs tests/_clock_fast_client.ts: a process whose `Date.now` is an hour fast. */
async function runFastProcess(env: Record<string, string>) {
  const script = fileURLToPath(new URL("./_clock_fast_client.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `fast process failed:\n${stdout}\n${stderr}`);
  return { result: JSON.parse(stdout.trim().split("\n").at(-1)!), stderr };
}

/** Captures console.warn while `fn` runs. */
async function warnings<T>(fn: () => Promise<T>): Promise<{ value: T; warned: string[] }> {
  const warned: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warned.push(args.join(" "));
  try {
    return { value: await fn(), warned };
  } finally {
    console.warn = original;
  }
}

dynamoTest("a host an hour fast, against DynamoDB Local", async (t, { ddb }) => {
  const endpoint = ddb.endpoint;

  await t.step(
    "a second process an hour fast costs the others no more than its tokens",
    async () => {
      const tableName = uniqueTableName("clock_fast");
      await using setup = new RateLimiter({ tableName, endpoint, createTable: true });
      await setup.createTable();
      const { result, stderr } = await runFastProcess({
        ZAE_TABLE: tableName,
        ZAE_ENDPOINT: endpoint,
        ZAE_ACQUIRES: "3",
      });
      assert.equal(result.admitted, 3);
      // One warning, naming the offset, for three acquires.
      const lines = stderr.split("\n").filter((l) => l.includes("zae-limiter: this host's clock"));
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0], /is 3\d{3}\.\d s ahead of DynamoDB's/);

      const { value: after, warned } = await warnings(async () => {
        await using correct = new RateLimiter({ tableName, endpoint });
        const available = await correct.available(key);
        // The tolerance (1 s) at 10 per minute is 1/6 of a token: at most one whole token lost.
        let admitted = 0;
        for (let i = 0; i < 10; i++) {
          try {
            await (await correct.acquire({ ...key, consume: { rpm: 1 } })).commit();
            admitted++;
          } catch {
            break;
          }
        }
        return { available: available.rpm, admitted };
      });
      assert.ok(after.available >= 10 - 3 - 1, `available ${after.available}`);
      assert.ok(after.admitted >= 10 - 3 - 1, `admitted ${after.admitted}`);
      // And never more than the capacity plus what a few seconds refill (1/6 token a second).
      assert.ok(after.admitted <= 10 - 3 + 1, `admitted ${after.admitted}`);
      assert.deepEqual(warned, [], "a correct host logs nothing");
    },
  );

  await t.step("an injected clock is left alone", async () => {
    const tableName = uniqueTableName("clock_injected");
    const { warned } = await warnings(async () => {
      await using fast = new RateLimiter({
        tableName,
        endpoint,
        createTable: true,
        clock: () => Date.now() + HOUR,
      });
      await (await fast.acquire({ ...key, consume: { rpm: 10 } })).commit();
      // The bucket holds the injected clock's time: empty at its time, an hour in debt at
      // DynamoDB's (what an injected clock asks for).
      assert.equal((await fast.available(key)).rpm, 0);
      await using correct = new RateLimiter({ tableName, endpoint });
      assert.ok((await correct.available(key)).rpm < -500);
    });
    assert.deepEqual(warned, []);
  });
});
