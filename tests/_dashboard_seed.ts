/**
 * Seeds a table for the dashboard's browser tests and screenshots, through the library only:
 * two projects, `acme` with three API keys and `globex` with one, limits at all four levels,
 * 30 hours and a week of traffic (committed acquires, with an injected clock that ends at the
 * real time), refused acquires, and the usage snapshots the aggregator makes of them.
 *
 * @module
 */

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { Limit, RateLimiter, RateLimitExceeded } from "../mod.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";

/** What {@link seedDashboard} made. */
export interface Seeded {
  /** The project with three keys. */
  project: string;
  /** Its keys. */
  keys: string[];
  /** The key with limits at every level (the entity page of the tests and the screenshot). */
  key: string;
  /** Acquires refused at the end (over the key's `tpm` on `gpt-4`). */
  refusals: number;
}

const HOUR = 3_600_000;

/**
 * Creates `tableName` (if missing) and fills it. `endAt` is the clock at the last acquire
 * (default: now), so the overview's "last 48 hours" holds the traffic.
 *
 * @example
 * ```ts ignore
 * const seeded = await seedDashboard(client, tableName);
 * ```
 */
export async function seedDashboard(
  client: DynamoDBClient,
  tableName: string,
  endAt: number = Date.now(),
): Promise<Seeded> {
  let now = endAt - 7 * 24 * HOUR;
  const limiter = new RateLimiter({
    tableName,
    client,
    createTable: true,
    clock: () => now,
    timeoutMs: 20_000,
    principal: "seed@example.com",
  });
  try {
    const project = "acme";
    const keys = ["acme-prod", "acme-staging", "acme-ci"];
    await limiter.createEntity({ entityId: project, name: "Acme Corp" });
    const names = ["Production", "Staging", "CI"];
    for (const [i, key] of keys.entries()) {
      await limiter.createEntity({
        entityId: key,
        parentId: project,
        cascade: true,
        name: names[i],
      });
    }
    await limiter.createEntity({ entityId: "globex", name: "Globex" });
    await limiter.createEntity({ entityId: "globex-app", parentId: "globex", name: "App" });

    // The four levels, most general first.
    await limiter.setSystemDefaults({ limits: [Limit.perMinute("rpm", 600)] });
    await limiter.setResourceDefaults({
      resource: "gpt-4",
      limits: [Limit.perMinute("rpm", 300), Limit.perMinute("tpm", 50_000)],
    });
    await limiter.setLimits({
      entityId: keys[0],
      limits: [Limit.perMinute("rpm", 120), Limit.perMinute("tpm", 20_000)],
    });
    await limiter.setLimits({
      entityId: keys[0],
      resource: "gpt-4",
      limits: [Limit.perMinute("rpm", 60), Limit.perMinute("tpm", 10_000, { burst: 15_000 })],
    });
    await limiter.setLimits({
      entityId: project,
      resource: "gpt-4",
      limits: [Limit.perMinute("rpm", 1_000), Limit.perMinute("tpm", 200_000)],
    });

    const call = async (entityId: string, resource: string, tpm: number) => {
      const lease = await limiter.acquire({
        entityId,
        resource,
        useStoredLimits: true,
        consume: { rpm: 1, tpm },
      });
      await lease.commit();
    };
    // A week of light traffic (the daily chart), then 30 hours of more (the hourly one).
    for (let day = 6; day >= 2; day--) {
      now = endAt - day * 24 * HOUR;
      for (const [i, key] of keys.entries()) await call(key, "gpt-4", 400 + day * 150 + i * 90);
    }
    for (let hour = 30; hour >= 1; hour--) {
      now = endAt - hour * HOUR + 60_000;
      await call(keys[0], "gpt-4", 300 + ((hour * 37) % 900));
      if (hour % 2 === 0) await call(keys[1], "gpt-4", 200 + ((hour * 53) % 600));
      if (hour % 3 === 0) await call(keys[2], "claude", 100 + hour * 10);
      if (hour % 5 === 0) await call("globex-app", "gpt-4", 250);
    }
    // The last minute: the production key spends most of its burst, then is refused.
    now = endAt - 5_000;
    await call(keys[0], "gpt-4", 12_000);
    let refusals = 0;
    for (let i = 0; i < 3; i++) {
      now = endAt - 4_000 + i * 1000;
      try {
        await call(keys[0], "gpt-4", 9_000);
      } catch (err) {
        if (!(err instanceof RateLimitExceeded)) throw err;
        refusals++;
      }
    }
    await aggregateLocal({ tableName, client });
    return { project, keys, key: keys[0], refusals };
  } finally {
    await limiter.close();
  }
}
