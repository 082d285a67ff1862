/**
 * Bad input, by property tests (fast-check) on DynamoDB Local:
 *
 * - end to end, the limiter admits exactly what an exact rational token bucket admits (random
 *   limits, amounts and clock steps; the pure GCRA math has its own property test against the
 *   same kind of model in `bucket_test.ts`);
 * - random ids, resources, limit names and amounts (separators, unicode, empty, 10,000
 *   characters, NaN, ±Infinity, negative, 1e300, values of the wrong type) give a
 *   `ValidationError` naming the field before any DynamoDB call (counted on the client), and are
 *   never let through in FAIL_OPEN, not even with DynamoDB down.
 *
 * Figures are printed as a `RELIABILITY input` JSON line (see docs/reliability.md).
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { FailureMode, RateLimiter } from "../src/limiter.ts";
import { Limit } from "../src/limit.ts";
import { RateLimitExceeded, ValidationError } from "../src/errors.ts";
import { freePort } from "../src/local/mod.ts";
import { Meter } from "../scripts/meter.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

// The documented input rules (docs/design.md), restated as the specification the code must meet.
const ENTITY_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$/;
const RESOURCE = /^[A-Za-z][A-Za-z0-9_.\/-]{0,63}$/;
const LIMIT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const MAX_AMOUNT = 1e15;

/** Strings that probe every rule: separators, unicode, control characters, empty, huge. */
const nastyString = fc.oneof(
  fc.constantFrom(
    "",
    "#",
    "a#b",
    "ENTITY#victim",
    "victim#BUCKET#gpt-4",
    "#META",
    "*",
    "a/b",
    "../a",
    "a b",
    " a",
    "a\n",
    "a\u0000",
    "ä",
    "İ",
    "🔥",
    "a\u200bb",
    "x".repeat(257),
    "x".repeat(10_000),
    "${x}",
    "a%23b",
  ),
  fc.string(),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ minLength: 250, maxLength: 10_000 }),
  fc.tuple(fc.stringMatching(/^[a-z0-9]{1,20}$/), fc.constantFrom("#", "/", " ", "\u0000", "é"))
    .map(([s, sep]) => `${s}${sep}${s}`),
);

/** Any value where a string is expected: nasty strings, and values of other types. */
const anyId = fc.oneof(
  { weight: 4, arbitrary: nastyString },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom(null, undefined, 0, 42, true, [], {}, NaN, 1n),
      fc.anything(),
    ),
  },
);

/** Amounts the rules refuse in `consume` (negative allowed in `adjust` only). */
const badAmount = fc.oneof(
  fc.constantFrom(
    NaN,
    Infinity,
    -Infinity,
    1e300,
    -1e300,
    Number.MAX_VALUE,
    MAX_AMOUNT * 2,
    "1",
    "",
    null,
    undefined,
    true,
    [],
    {},
    1n,
  ),
  fc.double({ noNaN: false }).filter((x) => !(Number.isFinite(x) && Math.abs(x) <= MAX_AMOUNT)),
  fc.anything().filter((x) => typeof x !== "number"),
);
const negativeAmount = fc.double({ min: -MAX_AMOUNT, max: -Number.MIN_VALUE, noNaN: true });

/** Exact token bucket in rationals: the balance in thousandths is `num / period`. */
class ReferenceBucket {
  #num: bigint;
  #at: bigint;
  constructor(
    readonly capacityMilli: bigint,
    readonly refillMilli: bigint,
    readonly periodMs: bigint,
    at: bigint,
  ) {
    this.#num = capacityMilli * periodMs;
    this.#at = at;
  }
  #advance(to: bigint): void {
    this.#num += (to - this.#at) * this.refillMilli;
    const full = this.capacityMilli * this.periodMs;
    if (this.#num > full) this.#num = full;
    this.#at = to;
  }
  fits(m: bigint, at: bigint): boolean {
    this.#advance(at);
    return this.#num >= m * this.periodMs;
  }
  take(m: bigint): void {
    this.#num -= m * this.periodMs;
  }
  give(m: bigint): void {
    this.#num += m * this.periodMs;
    const full = this.capacityMilli * this.periodMs;
    if (this.#num > full) this.#num = full;
  }
}

const limitArb = fc.record({
  capacityMilli: fc.oneof(
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }) },
    { weight: 6, arbitrary: fc.integer({ min: 1_000, max: 50_000 }) },
  ),
  refillMilli: fc.integer({ min: 1, max: 20_000 }),
  periodMs: fc.integer({ min: 1, max: 10_000 }),
});

Deno.test({
  name: "bad input: exact admission, and ValidationError before any call",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const meter = new Meter(client);
    const tableName = uniqueTableName("input");
    const deadPort = await freePort();
    let clock = 1_800_000_000_000;
    // Generous deadlines: these tests are about validation and exactness, and CI is loaded.
    const closed = new RateLimiter({ tableName, client, clock: () => clock, timeoutMs: 10_000 });
    const open = new RateLimiter({
      tableName,
      client,
      clock: () => clock,
      failureMode: FailureMode.FAIL_OPEN,
      timeoutMs: 10_000,
    });
    // Nothing listens there: any request that got past validation would fail open.
    // (recordFailedOpen off: the sanity lease below would wait in the outbox for ever.)
    const downOptions = {
      tableName,
      endpoint: `http://127.0.0.1:${deadPort}`,
      failureMode: FailureMode.FAIL_OPEN,
      timeoutMs: 300,
    };
    const down = new RateLimiter(Object.assign(downOptions, { recordFailedOpen: false }));
    const figures = {
      date: new Date().toISOString(),
      exactRuns: 0,
      exactAcquires: 0,
      exactAdmitted: 0,
      badInputs: {} as Record<string, number>,
      dynamoCallsForBadInput: 0,
      passesInFailOpen: 0,
    };
    const tried = (what: string) => (figures.badInputs[what] = (figures.badInputs[what] ?? 0) + 1);

    /** Runs `call` on each limiter; each must throw a ValidationError naming `field`, with no call. */
    const refuses = async (
      what: string,
      field: string | RegExp,
      call: (l: RateLimiter) => Promise<unknown>,
    ) => {
      tried(what);
      for (const limiter of [closed, open, down]) {
        meter.reset();
        let outcome: unknown;
        try {
          outcome = await call(limiter);
        } catch (err) {
          outcome = err;
        }
        figures.dynamoCallsForBadInput += meter.count;
        if (!(outcome instanceof Error)) figures.passesInFailOpen++;
        assert.ok(
          outcome instanceof ValidationError,
          `${what}: expected ValidationError, got ${
            outcome instanceof Error ? `${outcome.name}: ${outcome.message}` : "a pass"
          }`,
        );
        if (typeof field === "string") assert.equal(outcome.field, field);
        else assert.match(outcome.field, field);
        assert.ok(outcome.rule.length > 0 && outcome.message.includes(outcome.field));
        assert.ok(outcome.value.length <= 80, "the value is shown cut short");
        assert.equal(meter.count, 0, `${what}: ${meter.count} DynamoDB call(s) before refusing`);
      }
    };

    try {
      await closed.createTable();
      const rps = Limit.perSecond("rps", 10);
      const ok = { entityId: "key-1", resource: "gpt-4", limits: [rps], consume: { rps: 1 } };

      await t.step("sanity: a valid request passes when DynamoDB is down (FAIL_OPEN)", async () => {
        const lease = await down.acquire(ok);
        assert.equal(lease.failedOpen, true);
      });

      await t.step(
        "end to end on DynamoDB Local, the limiter admits exactly what the rational model does",
        async () => {
          await fc.assert(
            fc.asyncProperty(
              limitArb,
              limitArb,
              fc.array(
                fc.record({
                  dtMs: fc.oneof(
                    fc.integer({ min: 0, max: 50 }),
                    fc.integer({ min: 0, max: 20_000 }),
                  ),
                  a: fc.oneof(
                    fc.integer({ min: 0, max: 3_000 }),
                    fc.integer({ min: 0, max: 60_000 }),
                  ),
                  b: fc.oneof(
                    fc.integer({ min: 0, max: 3_000 }),
                    fc.integer({ min: 0, max: 60_000 }),
                  ),
                  rollback: fc.boolean(),
                }),
                { minLength: 1, maxLength: 30 },
              ),
              async (la, lb, steps) => {
                figures.exactRuns++;
                const entityId = `exact-${figures.exactRuns}`;
                const limits = [
                  Limit.custom({
                    name: "a",
                    capacity: la.capacityMilli / 1000,
                    refillAmount: la.refillMilli / 1000,
                    refillPeriodSeconds: la.periodMs / 1000,
                  }),
                  Limit.custom({
                    name: "b",
                    capacity: lb.capacityMilli / 1000,
                    refillAmount: lb.refillMilli / 1000,
                    refillPeriodSeconds: lb.periodMs / 1000,
                  }),
                ];
                const at = BigInt(clock);
                const ra = new ReferenceBucket(
                  BigInt(la.capacityMilli),
                  BigInt(la.refillMilli),
                  BigInt(la.periodMs),
                  at,
                );
                const rb = new ReferenceBucket(
                  BigInt(lb.capacityMilli),
                  BigInt(lb.refillMilli),
                  BigInt(lb.periodMs),
                  at,
                );
                for (const step of steps) {
                  clock += step.dtMs;
                  const now = BigInt(clock);
                  const expect = ra.fits(BigInt(step.a), now) && rb.fits(BigInt(step.b), now);
                  figures.exactAcquires++;
                  let admitted: boolean;
                  try {
                    const lease = await closed.acquire({
                      entityId,
                      resource: "exact",
                      limits,
                      consume: { a: step.a / 1000, b: step.b / 1000 },
                    });
                    admitted = true;
                    if (step.rollback) await lease.rollback();
                    else await lease.commit();
                  } catch (err) {
                    if (!(err instanceof RateLimitExceeded)) throw err;
                    admitted = false;
                  }
                  assert.equal(
                    admitted,
                    expect,
                    `at +${clock - Number(at)} ms: a=${step.a} b=${step.b} thousandths`,
                  );
                  if (admitted) {
                    figures.exactAdmitted++;
                    if (!step.rollback) {
                      ra.take(BigInt(step.a));
                      rb.take(BigInt(step.b));
                    }
                  }
                }
                clock += 100_000_000; // the next run starts far from this one
              },
            ),
            { numRuns: 60 },
          );
        },
      );

      await t.step("entity ids outside the rule", async () => {
        await fc.assert(
          fc.asyncProperty(anyId, async (id) => {
            fc.pre(!(typeof id === "string" && ENTITY_ID.test(id)));
            await refuses(
              "entityId",
              "entityId",
              (l) => l.acquire({ ...ok, entityId: id as string }),
            );
          }),
          { numRuns: 150 },
        );
      });

      await t.step("resources outside the rule", async () => {
        await fc.assert(
          fc.asyncProperty(anyId, async (resource) => {
            fc.pre(!(typeof resource === "string" && RESOURCE.test(resource)));
            await refuses(
              "resource",
              "resource",
              (l) => l.acquire({ ...ok, resource: resource as string }),
            );
          }),
          { numRuns: 150 },
        );
      });

      await t.step("amounts: NaN, ±Infinity, negative, 1e300, wrong types", async () => {
        await fc.assert(
          fc.asyncProperty(fc.oneof(badAmount, negativeAmount), async (amount) => {
            await refuses(
              "consume amount",
              "consume.rps",
              (l) => l.acquire({ ...ok, consume: { rps: amount as number } }),
            );
          }),
          { numRuns: 150 },
        );
      });

      await t.step(
        "consume names that no limit of the call has, or that break the rule",
        async () => {
          await fc.assert(
            fc.asyncProperty(nastyString, async (name) => {
              fc.pre(name !== "rps" && name !== "__proto__");
              await refuses(
                "consume name",
                /^consume\./,
                (l) => l.acquire({ ...ok, consume: { [name]: 1 } }),
              );
              fc.pre(!LIMIT_NAME.test(name));
              await refuses(
                "consume name (stored limits)",
                /^consume\./,
                (l) => l.acquire({ ...ok, consume: { [name]: 1 }, useStoredLimits: true }),
              );
            }),
            { numRuns: 150 },
          );
        },
      );

      await t.step(
        "limits: not Limits, duplicates, names and amounts outside the rules",
        async () => {
          await fc.assert(
            fc.asyncProperty(
              fc.oneof(
                anyId.map((x) => [x]),
                fc.constant([rps, rps]),
                fc.constant([]),
                // Absent limits are legal since stored limits resolve at four levels: that call
                // reads the config first (tests/defaults_test.ts covers its refusal).
                fc.anything().filter((x) => !Array.isArray(x) && x !== undefined),
              ),
              async (limits) => {
                await refuses(
                  "limits",
                  /^limits/,
                  (l) => l.acquire({ ...ok, limits: limits as Limit[] }),
                );
              },
            ),
            { numRuns: 100 },
          );
          const custom = (name: unknown, capacity: unknown) => () =>
            Limit.custom({
              name: name as string,
              capacity: capacity as number,
              refillAmount: 1,
              refillPeriodSeconds: 1,
            });
          await fc.assert(
            fc.property(anyId, (name) => {
              fc.pre(!(typeof name === "string" && LIMIT_NAME.test(name)));
              tried("Limit name");
              assert.throws(custom(name, 1), ValidationError);
            }),
            { numRuns: 150 },
          );
          await fc.assert(
            fc.property(fc.oneof(badAmount, negativeAmount), (amount) => {
              tried("Limit capacity");
              assert.throws(custom("rpm", amount), ValidationError);
            }),
            { numRuns: 150 },
          );
        },
      );

      await t.step(
        "adjust: bad amounts refused, the lease untouched, nothing written",
        async () => {
          const lease = await closed.acquire({ ...ok, entityId: "adjust-1" });
          await fc.assert(
            fc.asyncProperty(badAmount, async (amount) => {
              tried("adjust amount");
              meter.reset();
              await assert.rejects(lease.adjust({ rps: amount as number }), ValidationError);
              assert.equal(meter.count, 0);
            }),
            { numRuns: 100 },
          );
          meter.reset();
          await lease.commit();
          assert.equal(meter.count, 0, "no adjustment was recorded, so commit writes nothing");
          assert.deepEqual(lease.consumed, { rps: 1 });
        },
      );

      await t.step("needed of timeUntilAvailable, ids of entities and stored limits", async () => {
        await fc.assert(
          fc.asyncProperty(fc.oneof(badAmount, negativeAmount), async (amount) => {
            await refuses(
              "needed amount",
              "needed.rps",
              (l) => l.timeUntilAvailable({ ...ok, needed: { rps: amount as number } }),
            );
          }),
          { numRuns: 100 },
        );
        await fc.assert(
          fc.asyncProperty(anyId, async (id) => {
            fc.pre(!(typeof id === "string" && ENTITY_ID.test(id)));
            const entityId = id as string;
            await refuses("createEntity", "entityId", (l) => l.createEntity({ entityId }));
            if (id !== undefined) { // no parentId is valid: a top-level entity
              await refuses(
                "createEntity parent",
                "parentId",
                (l) => l.createEntity({ entityId: "child-x", parentId: entityId }),
              );
            }
            await refuses("setLimits", "entityId", (l) => l.setLimits({ entityId, limits: [rps] }));
            await refuses("getLimits", "entityId", (l) => l.getLimits({ entityId }));
            await refuses("deleteEntity", "entityId", (l) => l.deleteEntity(entityId));
            await refuses("available", "entityId", (l) => l.available({ ...ok, entityId }));
          }),
          { numRuns: 100 },
        );
      });

      console.log(`RELIABILITY input ${JSON.stringify(figures)}`);
      await t.step("no bad input reached DynamoDB or passed in FAIL_OPEN", () => {
        assert.equal(figures.dynamoCallsForBadInput, 0);
        assert.equal(figures.passesInFailOpen, 0);
        const total = Object.values(figures.badInputs).reduce((a, b) => a + b, 0);
        assert.ok(total >= 1000, `only ${total} bad inputs tried`);
      });
    } finally {
      await Promise.allSettled([closed.close(), open.close(), down.close()]);
      client.destroy();
      await ddb.stop();
    }
  },
});
