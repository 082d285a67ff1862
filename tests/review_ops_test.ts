/**
 * Second reading of issue 15 where its features meet, against DynamoDB Local: concurrent changes
 * of default limits keep the stored value and the newest audit event in agreement; a limiter sees
 * its own admin changes (defaults, controls, parent, reset, top-up) on its next acquire; crafted
 * ids and resources on the admin paths of issue 15 stay inside the limiter's namespace.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type AttributeValue, type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter } from "../mod.ts";
import { CLOCK_PROBE_KEY } from "../src/clock.ts";
import { dynamoTest, localClient, uniqueTableName } from "./_dynamo.ts";

const rpm = (n: number) => [Limit.perMinute("rpm", n)];

/** The capacities of the `after` of an audit event of limits. */
function afterCapacities(after: unknown): number[] {
  const list = Array.isArray(after) ? after : (after as { limits: unknown[] }).limits;
  return (list as { capacity: number }[]).map((l) => l.capacity);
}

/**
 * Holds this client's first `TransactWriteItems` until `release` is called: the change of one
 * limiter lands after another's, as on two hosts.
 */
function holdFirstTransaction(client: DynamoDBClient): {
  held: Promise<void>;
  release: () => void;
} {
  let release!: () => void;
  let heldNow!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const held = new Promise<void>((r) => (heldNow = r));
  let done = false;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!done && context.commandName === "TransactWriteItemsCommand") {
        done = true;
        heldNow();
        await gate;
      }
      return next(args);
    },
    { step: "initialize", name: "holdFirstTransaction" },
  );
  return { held, release };
}

/** Records the partition keys each request of `client` names. */
function watchKeys(client: DynamoDBClient): { command: string; pks: string[] }[] {
  const seen: { command: string; pks: string[] }[] = [];
  const fromKey = (out: string[], key: unknown) => {
    const pk = (key as Record<string, AttributeValue> | undefined)?.PK?.S;
    if (pk !== undefined) out.push(pk);
  };
  client.middlewareStack.add(
    (next, context) => (args) => {
      const i = args.input as Record<string, unknown> & {
        TransactItems?: Record<string, { Key?: unknown; Item?: unknown }>[];
        RequestItems?: Record<string, unknown>;
        ExpressionAttributeValues?: Record<string, AttributeValue>;
        KeyConditionExpression?: string;
        ExclusiveStartKey?: unknown;
      };
      const pks: string[] = [];
      fromKey(pks, i.Key);
      fromKey(pks, i.Item);
      fromKey(pks, i.ExclusiveStartKey);
      for (const t of i.TransactItems ?? []) {
        for (const op of Object.values(t)) {
          fromKey(pks, op.Key);
          fromKey(pks, op.Item);
        }
      }
      for (const req of Object.values(i.RequestItems ?? {})) {
        const list = Array.isArray(req) ? req : (req as { Keys?: unknown[] }).Keys ?? [];
        for (const w of list as Record<string, { Key?: unknown; Item?: unknown }>[]) {
          fromKey(pks, w.PutRequest?.Item ?? w.DeleteRequest?.Key ?? w);
        }
      }
      if (i.KeyConditionExpression) {
        const m = /(?:PK|#pk)\s*=\s*(:\w+)/.exec(i.KeyConditionExpression);
        const v = m ? i.ExpressionAttributeValues?.[m[1]]?.S : undefined;
        if (v !== undefined) pks.push(v);
      }
      seen.push({ command: String(context.commandName), pks });
      return next(args);
    },
    { step: "initialize", name: "watchKeys" },
  );
  return seen;
}

async function scanPks(client: DynamoDBClient, tableName: string): Promise<string[]> {
  const out: string[] = [];
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(
      new ScanCommand({ TableName: tableName, ExclusiveStartKey: start, ConsistentRead: true }),
    );
    for (const item of page.Items ?? []) out.push(item.PK.S!);
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}

dynamoTest("review of issue 15: where the features meet", async (t, { ddb, client }) => {
  const tableName = uniqueTableName("review");
  const clients: DynamoDBClient[] = [];
  const mk = (namespace?: string) => {
    const c = localClient(ddb.endpoint);
    clients.push(c);
    return { c, limiter: new RateLimiter({ tableName, client: c, namespace }) };
  };
  const main = mk();
  const limiter = main.limiter;
  const limiters = [limiter];
  try {
    await limiter.createTable();

    for (
      const [what, set, get, events] of [
        [
          "setResourceDefaults",
          (l: RateLimiter, n: number) =>
            l.setResourceDefaults({ resource: "race", limits: rpm(n) }),
          (l: RateLimiter) => l.getResourceDefaults({ resource: "race" }),
          (l: RateLimiter) => l.getAuditEvents({ resource: "race", limit: 10 }),
        ],
        [
          "setSystemDefaults",
          (l: RateLimiter, n: number) => l.setSystemDefaults({ limits: rpm(n) }),
          (l: RateLimiter) => l.getSystemDefaults(),
          async (l: RateLimiter) => {
            const page = await l.getAuditEvents({ limit: 50 });
            return { events: page.events.filter((e) => e.action.startsWith("defaults.system")) };
          },
        ],
      ] as const
    ) {
      await t.step(
        `${what}: a change that lands after a newer one is decided again (newest event = stored)`,
        async () => {
          const a = mk(), b = mk();
          limiters.push(a.limiter, b.limiter);
          const hold = holdFirstTransaction(a.c);
          // A reads (nothing stored), makes its event, and its write is delayed; B changes
          // meanwhile, later; then A's write lands.
          const first = set(a.limiter, 7);
          await hold.held;
          await new Promise((r) => setTimeout(r, 5)); // B's event is made later than A's
          await set(b.limiter, 9);
          hold.release();
          await first;
          const stored = (await get(limiter)).map((l) => l.capacity);
          const { events: list } = await events(limiter);
          assert.equal(list.length, 2, "one event per change");
          const [newest, older] = list;
          assert.deepEqual(stored, afterCapacities(newest.after), "stored = newest event's after");
          // The chain holds: the newer event's `before` is the older one's `after`.
          assert.deepEqual(newest.before, older.after);
        },
      );
    }

    await t.step(
      "disableResource / enableResource: a change that lands after a newer one is decided again",
      async () => {
        const a = mk(), b = mk();
        limiters.push(a.limiter, b.limiter);
        const hold = holdFirstTransaction(a.c);
        const first = a.limiter.disableResource("ctl-race");
        await hold.held;
        await new Promise((r) => setTimeout(r, 5));
        await b.limiter.enableResource("ctl-race");
        hold.release();
        await first;
        const { events: [newest] } = await limiter.getAuditEvents({
          resource: "ctl-race",
          limit: 1,
        });
        const stored = await limiter.getResourceControls("ctl-race");
        assert.deepEqual(
          { disabled: stored.disabled === true },
          newest.after,
          "stored = newest event's after",
        );
      },
    );

    await t.step(
      "disableEntity / enableEntity: a change that lands after a newer one is decided again",
      async () => {
        await limiter.createEntity({ entityId: "ent-race" });
        const a = mk(), b = mk();
        limiters.push(a.limiter, b.limiter);
        const hold = holdFirstTransaction(a.c);
        const first = a.limiter.disableEntity("ent-race");
        await hold.held;
        await new Promise((r) => setTimeout(r, 5));
        await b.limiter.setCascade({ entityId: "ent-race", cascade: true });
        await b.limiter.enableEntity("ent-race");
        hold.release();
        await first;
        const { events } = await limiter.getAuditEvents({ entityId: "ent-race", limit: 10 });
        const newest = events.find((e) =>
          e.action.startsWith("entity.") && "disabled" in
            (e.after as Record<string, unknown>)
        )!;
        const stored = await limiter.getEntity("ent-race");
        assert.deepEqual(
          { disabled: stored?.disabled === true },
          newest.after,
          "stored = newest event's after",
        );
        assert.equal(stored?.cascade, true, "the other change is kept");
      },
    );

    await t.step("a refused or empty change writes no audit event", async () => {
      await limiter.createEntity({ entityId: "top" });
      await limiter.createEntity({ entityId: "child", parentId: "top" });
      await limiter.createEntity({ entityId: "loner" });
      const count = async () => (await limiter.getAuditEvents({ limit: 1000 })).events.length;
      const before = await count();
      const refused: [string, () => Promise<unknown>][] = [
        ["disableEntity of a missing entity", () => limiter.disableEntity("nobody")],
        [
          "setCascade of a missing entity",
          () => limiter.setCascade({ entityId: "nobody", cascade: true }),
        ],
        [
          "setParent to a missing parent",
          () => limiter.setParent({ entityId: "loner", parentId: "nobody" }),
        ],
        ["setParent to a child", () => limiter.setParent({ entityId: "loner", parentId: "child" })],
        ["setParent of a parent", () => limiter.setParent({ entityId: "top", parentId: "loner" })],
        [
          "bad defaults",
          () => limiter.setResourceDefaults({ resource: "x", limits: [] as Limit[] }),
        ],
        ["bad resource", () => limiter.disableResource("a#b")],
      ];
      for (const [what, call] of refused) {
        await assert.rejects(call, (err: Error) => /Error$/.test(err.name), what);
        assert.equal(await count(), before, what);
      }
      // A top-up repeated with the same key changes nothing and writes no second event.
      await limiter.createEntity({ entityId: "tu" });
      const tu = { entityId: "tu", resource: "api", limits: rpm(5), consume: { rpm: 5 } };
      await (await limiter.acquire(tu)).commit();
      const top = { entityId: "tu", resource: "api", limit: "rpm", amount: 2, idempotencyKey: "x" };
      assert.equal((await limiter.topUp(top)).applied, true);
      const once = await count();
      assert.equal((await limiter.topUp(top)).applied, false);
      assert.equal(await count(), once, "repeated top-up");
    });

    await t.step("a limiter's own change is seen by its next acquire", async () => {
      const call = { entityId: "seen", resource: "fresh", consume: { rpm: 1 } };
      await limiter.createEntity({ entityId: "seen" });
      await limiter.setResourceDefaults({ resource: "fresh", limits: rpm(100) });
      await (await limiter.acquire(call)).commit();
      // Lowered defaults: at once (a raised capacity keeps the balance, docs/design.md).
      await limiter.setResourceDefaults({ resource: "fresh", limits: rpm(2) });
      await (await limiter.acquire(call)).commit();
      await (await limiter.acquire(call)).commit();
      await assert.rejects(() => limiter.acquire(call), { name: "RateLimitExceeded" });
      // Reset makes it full at once.
      await limiter.resetBucket({ entityId: "seen", resource: "fresh" });
      await (await limiter.acquire(call)).commit();
      await (await limiter.acquire(call)).commit();
      await assert.rejects(() => limiter.acquire(call), { name: "RateLimitExceeded" });
      await limiter.topUp({
        entityId: "seen",
        resource: "fresh",
        limit: "rpm",
        amount: 1,
        idempotencyKey: "k1",
      });
      await (await limiter.acquire(call)).commit();
      // Controls.
      await limiter.resetBucket({ entityId: "seen", resource: "fresh" });
      await limiter.disableResource("fresh");
      await assert.rejects(() => limiter.acquire(call), {
        name: "EntityDisabledError",
        disabled: "resource",
      });
      await limiter.enableResource("fresh");
      await limiter.disableEntity("seen");
      await assert.rejects(() => limiter.acquire(call), { name: "EntityDisabledError" });
      await limiter.enableEntity("seen");
      await (await limiter.acquire(call)).commit();
      // System defaults, for a resource with none of its own.
      const sys = { entityId: "seen", resource: "sys-only", consume: { rpm: 1 } };
      await limiter.setSystemDefaults({ limits: rpm(50) });
      await (await limiter.acquire(sys)).commit();
      await limiter.setSystemDefaults({ limits: rpm(1) });
      await (await limiter.acquire(sys)).commit(); // clamped to 1
      await assert.rejects(() => limiter.acquire(sys), { name: "RateLimitExceeded" });
      // Deleted resource defaults: the system's apply at once.
      await limiter.deleteResourceDefaults({ resource: "fresh" });
      await limiter.resetBucket({ entityId: "seen", resource: "fresh" });
      await (await limiter.acquire(call)).commit();
      await assert.rejects(() => limiter.acquire(call), { name: "RateLimitExceeded" });
    });

    await t.step("setParent and setCascade: the next acquire charges the new parent", async () => {
      const limits = rpm(10);
      for (const id of ["p-old", "p-new"]) await limiter.createEntity({ entityId: id });
      await limiter.createEntity({ entityId: "kid", parentId: "p-old", cascade: true });
      const call = { entityId: "kid", resource: "tree", limits, consume: { rpm: 1 } };
      await (await limiter.acquire(call)).commit();
      await limiter.setParent({ entityId: "kid", parentId: "p-new" });
      await (await limiter.acquire(call)).commit();
      const avail = async (id: string) =>
        (await limiter.available({ entityId: id, resource: "tree", limits })).rpm;
      assert.equal(await avail("p-old"), 9);
      assert.equal(await avail("p-new"), 9);
      await limiter.setCascade({ entityId: "kid", cascade: false });
      await (await limiter.acquire(call)).commit();
      assert.equal(await avail("p-new"), 9);
      assert.equal(await avail("kid"), 7);
      // The old parent, disabled, no longer switches its former child off.
      await limiter.disableEntity("p-old");
      await (await limiter.acquire(call)).commit();
      await limiter.setCascade({ entityId: "kid", cascade: true });
      await limiter.disableEntity("p-new");
      await assert.rejects(() => limiter.acquire(call), { name: "EntityDisabledError" });
    });

    await t.step(
      "crafted ids and resources on the admin paths of issue 15 stay in the namespace",
      async () => {
        const search = mk("search");
        limiters.push(search.limiter);
        const seen = watchKeys(search.c);
        await limiter.createEntity({ entityId: "victim" });
        await limiter.setLimits({ entityId: "victim", resource: "gpt-4", limits: rpm(5) });
        await search.limiter.createEntity({ entityId: "own" });
        const idArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,12}$/);
        const crafted = fc.oneof(
          fc.constantFrom(
            "victim",
            "ENTITY#victim",
            "NS#default#ENTITY#victim",
            "#ENTITY#victim",
            "NS#",
            "../victim",
            "SYSTEM",
            "AUDIT",
            "ENTITIES",
          ),
          fc.tuple(fc.constantFrom("NS#", "ENTITY#", "#", ""), idArb).map(([a, b]) => a + b),
        );
        const before = JSON.stringify(
          (await scanPks(client, tableName)).filter((pk) => !pk.startsWith("NS#search#")).sort(),
        );
        let checked = 0;
        await fc.assert(
          fc.asyncProperty(crafted, fc.oneof(fc.constantFrom("gpt-4"), crafted), async (id, r) => {
            seen.length = 0;
            const s = search.limiter;
            const calls: (() => Promise<unknown>)[] = [
              () => s.setResourceDefaults({ resource: r, limits: rpm(3) }),
              () => s.getResourceDefaults({ resource: r }),
              () => s.listStoredLimits({ entityId: id }),
              () => s.disableResource(r),
              () => s.getResourceControls(r),
              () => s.enableResource(r),
              () => s.deleteResourceDefaults({ resource: r }),
              () => s.createEntity({ entityId: id }),
              () => s.setParent({ entityId: id, parentId: "own" }),
              () => s.setParent({ entityId: "own", parentId: id }),
              () => s.setCascade({ entityId: id, cascade: true }),
              () => s.setBypass({ entityId: id, bypass: true }),
              () => s.acquire({ entityId: id, resource: r, limits: rpm(3), consume: { rpm: 1 } }),
              () => s.disableEntity(id),
              () => s.enableEntity(id),
              () => s.resetBucket({ entityId: id, resource: r }),
              () =>
                s.topUp({
                  entityId: id,
                  resource: r,
                  limit: "rpm",
                  amount: 1,
                  idempotencyKey: id,
                }),
              () => s.getAuditEvents({ entityId: id, resource: r, limit: 1 }),
              () => s.listEntities({ limit: 2 }),
              () => s.getUsageSummary({ entityId: id, resource: r, window: "hourly" }),
              () => s.deleteEntity(id),
            ];
            for (const call of calls) {
              try {
                const out = await call();
                if (out && typeof out === "object" && "commit" in out) {
                  await (out as { commit(): Promise<void> }).commit();
                }
              } catch (err) {
                if (
                  !(err instanceof Error &&
                    /ValidationError|NotFound|exists|RateLimitExceeded|Disabled/i.test(
                      `${err.name} ${err.message}`,
                    ))
                ) throw err;
              }
            }
            for (const { command, pks } of seen) {
              for (const pk of pks) {
                checked++;
                assert.ok(
                  pk.startsWith("NS#search#") || pk === "NAMESPACES" || pk === CLOCK_PROBE_KEY ||
                    (pk === "SYSTEM" && command === "GetItemCommand"), // version, audit settings
                  `${command} named ${pk} for id ${JSON.stringify(id)}, resource ${r}`,
                );
              }
            }
          }),
          { numRuns: 30 },
        );
        const after = JSON.stringify(
          (await scanPks(client, tableName)).filter((pk) => !pk.startsWith("NS#search#")).sort(),
        );
        assert.equal(after, before, "no item outside the namespace changed");
        assert.ok(checked > 100, `only ${checked} partition keys checked`);
      },
    );
  } finally {
    for (const l of limiters) await l.close();
    for (const c of clients) c.destroy();
  }
});
