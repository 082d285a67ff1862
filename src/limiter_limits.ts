/**
 * {@link LimiterLimits}: the calls of {@link RateLimiter} on stored limits (an entity's, with their
 * shard count) and default limits (a resource's, the system's), each a line that delegates to
 * `admin.ts` or `defaults.ts`. `RateLimiter` (limiter.ts) extends it.
 *
 * @module
 */

import type { EntityAdmin } from "./admin.ts";
import type { DefaultsAdmin } from "./defaults.ts";
import type { StoredLimitsEntry } from "./defaults_store.ts";
import type { Limit } from "./limit.ts";
import { checkOpen, LimiterAdmin, type LimiterState, limiterState } from "./limiter_admin.ts";
import type { RateLimiterOptions } from "./options.ts";

/**
 * The stored-limits and default-limits calls of {@link RateLimiter}. Use `RateLimiter`, which
 * extends it.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { LimiterLimits } from "./limiter_limits.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * console.assert(limiter instanceof LimiterLimits);
 * await limiter.setSystemDefaults({ limits: [Limit.perMinute("rpm", 10)] });
 * console.assert((await limiter.getSystemDefaults())[0].name === "rpm");
 * ```
 */
export class LimiterLimits extends LimiterAdmin {
  readonly #state: LimiterState;
  readonly #admin: EntityAdmin;
  readonly #defaults: DefaultsAdmin;

  /**
   * Checks the options and assembles the parts (nothing is sent): see `RateLimiter`'s constructor.
   *
   * @param options See {@link RateLimiterOptions}.
   * @throws {ValidationError} When an option breaks its rule.
   *
   * @example
   * ```ts
   * import { RateLimiter } from "./limiter.ts";
   * const limiter = new RateLimiter({ tableName: "rate_limits", region: "us-east-1" });
   * console.assert(limiter.tableName === "rate_limits");
   * await limiter.close();
   * ```
   */
  constructor(options: RateLimiterOptions) {
    super(options);
    this.#state = limiterState(this);
    this.#admin = this.#state.parts.admin;
    this.#defaults = this.#state.parts.defaults;
  }

  #checkOpen(): void {
    checkOpen(this.#state);
  }

  /**
   * Stores limits for an entity: for one resource, or for every resource when none is given.
   * `shards` splits each of its buckets into that many items (1–64; kept as stored when not
   * given), each with `1/shards` of every limit: see docs/hot-keys.md, "Shards".
   *
   * @example
   * ```ts ignore
   * await limiter.setLimits({ entityId: "user-premium", limits: [Limit.perMinute("rpm", 500)] });
   * await limiter.setLimits({ entityId: "hot-key", limits: [Limit.perSecond("rps", 4000)], shards: 8 });
   * ```
   */
  setLimits(
    options: { entityId: string; resource?: string; limits: Limit[]; shards?: number },
  ): Promise<void> {
    this.#checkOpen();
    return this.#admin.setLimits(options);
  }

  /**
   * Stored limits of an entity for a resource (or the entity-wide ones); `[]` when none.
   *
   * @example
   * ```ts ignore
   * const limits = await limiter.getLimits({ entityId: "user-premium" });
   * ```
   */
  getLimits(options: { entityId: string; resource?: string }): Promise<Limit[]> {
    this.#checkOpen();
    return this.#admin.getLimits(options);
  }

  /**
   * The shard count stored with an entity's limits for a resource (or the entity-wide ones): 1
   * when none; when it takes (or took) over (ISO 8601), and the count it replaces, which serves
   * until then.
   *
   * @example
   * ```ts ignore
   * const { shards } = await limiter.getShards({ entityId: "hot-key" });
   * ```
   */
  async getShards(
    options: { entityId: string; resource?: string },
  ): Promise<{ shards: number; shardsSince?: string; previousShards?: number }> {
    this.#checkOpen();
    const stored = (await this.#admin.getStoredLimits(options))?.shards;
    return {
      shards: stored?.count ?? 1,
      ...(stored?.sinceMs === undefined
        ? {}
        : { shardsSince: new Date(stored.sinceMs).toISOString() }),
      ...(stored?.prev ? { previousShards: stored.prev.count } : {}),
    };
  }

  /**
   * Deletes stored limits of an entity for a resource (or the entity-wide ones).
   *
   * @example
   * ```ts ignore
   * await limiter.deleteLimits({ entityId: "user-premium", resource: "gpt-4" });
   * ```
   */
  deleteLimits(options: { entityId: string; resource?: string }): Promise<void> {
    this.#checkOpen();
    return this.#admin.deleteLimits(options);
  }

  /**
   * Stores a resource's default limits: they apply to every entity on the resource that has no
   * stored limits of its own for it (nor entity-wide ones). Other processes see the change within
   * their `limitsCacheTtlMs` (docs/design.md, "Entities and stored limits").
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * await limiter.setResourceDefaults({ resource: "gpt-4", limits: [Limit.perMinute("rpm", 2)] });
   * const lease = await limiter.acquire({ entityId: "anyone", resource: "gpt-4", consume: { rpm: 1 } });
   * console.assert(lease.statuses[0].limitName === "rpm" && lease.statuses[0].available === 1);
   * ```
   */
  setResourceDefaults(options: { resource: string; limits: Limit[] }): Promise<void> {
    this.#checkOpen();
    return this.#defaults.setResourceDefaults(options);
  }

  /**
   * A resource's default limits; `[]` when none.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * console.assert((await limiter.getResourceDefaults({ resource: "gpt-4" })).length === 0);
   * ```
   */
  getResourceDefaults(options: { resource: string }): Promise<Limit[]> {
    this.#checkOpen();
    return this.#defaults.getResourceDefaults(options);
  }

  /**
   * Deletes a resource's default limits (the system defaults apply then, if any).
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.setResourceDefaults({ resource: "gpt-4", limits: [Limit.perMinute("rpm", 60)] });
   * await limiter.deleteResourceDefaults({ resource: "gpt-4" });
   * console.assert((await limiter.listResources()).length === 0);
   * ```
   */
  deleteResourceDefaults(options: { resource: string }): Promise<void> {
    this.#checkOpen();
    return this.#defaults.deleteResourceDefaults(options);
  }

  /**
   * The resources that have default limits, sorted.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * const limits = [Limit.perMinute("rpm", 60)];
   * await limiter.setResourceDefaults({ resource: "gpt-4", limits });
   * await limiter.setResourceDefaults({ resource: "claude", limits });
   * console.assert((await limiter.listResources()).join() === "claude,gpt-4");
   * ```
   */
  listResources(): Promise<string[]> {
    this.#checkOpen();
    return this.#defaults.listResources();
  }

  /**
   * Stores the system default limits: the last stored level, for every entity and resource with
   * nothing more specific stored.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0 });
   * await limiter.setSystemDefaults({ limits: [Limit.perMinute("rpm", 100)] });
   * const { rpm } = await limiter.available({ entityId: "key-1", resource: "any" });
   * console.assert(rpm === 100);
   * ```
   */
  setSystemDefaults(options: { limits: Limit[] }): Promise<void> {
    this.#checkOpen();
    return this.#defaults.setSystemDefaults(options);
  }

  /**
   * The system default limits; `[]` when none.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * console.assert((await createTestLimiter().getSystemDefaults()).length === 0);
   * ```
   */
  getSystemDefaults(): Promise<Limit[]> {
    this.#checkOpen();
    return this.#defaults.getSystemDefaults();
  }

  /**
   * Deletes the system default limits.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.setSystemDefaults({ limits: [Limit.perMinute("rpm", 100)] });
   * await limiter.deleteSystemDefaults();
   * console.assert((await limiter.getSystemDefaults()).length === 0);
   * ```
   */
  deleteSystemDefaults(): Promise<void> {
    this.#checkOpen();
    return this.#defaults.deleteSystemDefaults();
  }

  /**
   * Every stored-limits item of an entity: the entity-wide ones (`resource` undefined) first,
   * then one per resource, sorted.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.createEntity({ entityId: "key-1" });
   * await limiter.setLimits({ entityId: "key-1", resource: "gpt-4", limits: [Limit.perMinute("rpm", 5)] });
   * const [entry] = await limiter.listStoredLimits({ entityId: "key-1" });
   * console.assert(entry.resource === "gpt-4" && entry.limits[0].capacity === 5);
   * ```
   */
  listStoredLimits(options: { entityId: string }): Promise<StoredLimitsEntry[]> {
    this.#checkOpen();
    return this.#defaults.listStoredLimits(options);
  }
}
