/**
 * {@link LimiterAdmin}: the admin calls of {@link RateLimiter} on entities, controls, buckets, the
 * audit trail, listings and the health check, each a line that delegates to the module owning the
 * job (`admin.ts`, `controls.ts`, `bucket_admin.ts`, `entity_list.ts`, `ping.ts`). It is the first
 * class of the facade: its constructor assembles the parts (`wiring.ts`) that `LimiterLimits`
 * (limiter_limits.ts) and `RateLimiter` (limiter.ts), which extend it, take over with
 * {@link limiterState}.
 *
 * @module
 */

import type { Entity, ResourceControls } from "./entities.ts";
import type { EntityAdmin } from "./admin.ts";
import type { EntityListPage, ListEntitiesOptions } from "./entity_list.ts";
import type {
  BucketAdmin,
  BucketChangeResult,
  ResetBucketOptions,
  TopUpOptions,
} from "./bucket_admin.ts";
import type { ControlAdmin } from "./controls.ts";
import type { AuditEventsPage, GetAuditEventsOptions } from "./audit_read.ts";
import { ZaeLimiterError } from "./errors.ts";
import type { CreateEntityOptions, RateLimiterOptions, ResourceBucket } from "./options.ts";
import type { PingResult } from "./ping.ts";
import { assemble, type LimiterParts } from "./wiring.ts";

/**
 * What the classes of one limiter's facade share: the parts, and whether it was closed.
 *
 * @example
 * ```ts
 * import { limiterState } from "./limiter_admin.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * await limiter.close();
 * console.assert(limiterState(limiter).closed);
 * ```
 */
export interface LimiterState {
  /** What `wiring.ts` assembled from the options. */
  readonly parts: LimiterParts;
  /** `close()` was called: the calls that check it throw. */
  closed: boolean;
}

const states = new WeakMap<LimiterAdmin, LimiterState>();

/**
 * The state a {@link LimiterAdmin} made in its constructor: how the classes that extend it
 * (`LimiterLimits`, `RateLimiter`) get the parts without any of them being public.
 *
 * @example
 * ```ts
 * import { limiterState } from "./limiter_admin.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * console.assert(limiterState(limiter).parts.tableName === limiter.tableName);
 * ```
 */
export function limiterState(limiter: LimiterAdmin): LimiterState {
  const state = states.get(limiter);
  if (state === undefined) throw new TypeError("not a limiter made by LimiterAdmin");
  return state;
}

/**
 * Throws when the limiter is closed.
 *
 * @example
 * ```ts
 * import { checkOpen } from "./limiter_admin.ts";
 * let error: unknown;
 * try {
 *   checkOpen({ closed: true });
 * } catch (e) {
 *   error = e;
 * }
 * console.assert(error instanceof Error && error.message === "The rate limiter is closed");
 * ```
 */
export function checkOpen(state: Pick<LimiterState, "closed">): void {
  if (state.closed) throw new ZaeLimiterError("The rate limiter is closed");
}

/**
 * The admin calls of {@link RateLimiter} (entities, controls, reset and top-up, audit events,
 * listings, ping). Use `RateLimiter`, which extends it.
 *
 * @example
 * ```ts
 * import { LimiterAdmin } from "./limiter_admin.ts";
 * import { createTestLimiter } from "./testing/mod.ts";
 * const limiter = createTestLimiter();
 * console.assert(limiter instanceof LimiterAdmin);
 * await limiter.createEntity({ entityId: "key-1" });
 * console.assert((await limiter.getEntity("key-1"))?.entityId === "key-1");
 * ```
 */
export class LimiterAdmin {
  readonly #state: LimiterState;
  readonly #admin: EntityAdmin;
  readonly #listEntities: (options?: ListEntitiesOptions) => Promise<EntityListPage>;
  readonly #buckets: BucketAdmin;
  readonly #controls: ControlAdmin;
  readonly #ping: () => Promise<PingResult>;

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
    const parts = assemble(options);
    this.#state = { parts, closed: false };
    states.set(this, this.#state);
    this.#admin = parts.admin;
    this.#listEntities = parts.listEntities;
    this.#buckets = parts.buckets;
    this.#controls = parts.controls;
    this.#ping = parts.ping;
  }

  #checkOpen(): void {
    checkOpen(this.#state);
  }

  /**
   * Creates an entity. A parent must exist and be top-level.
   *
   * @example
   * ```ts ignore
   * await limiter.createEntity({ entityId: "proj-1", name: "Production" });
   * await limiter.createEntity({ entityId: "key-abc", parentId: "proj-1", cascade: true });
   * ```
   */
  createEntity(options: CreateEntityOptions): Promise<Entity> {
    this.#checkOpen();
    return this.#admin.createEntity(options);
  }

  /**
   * Reads an entity, or `undefined`.
   *
   * @example
   * ```ts ignore
   * const entity = await limiter.getEntity("key-abc");
   * ```
   */
  getEntity(entityId: string): Promise<Entity | undefined> {
    this.#checkOpen();
    return this.#admin.getEntity(entityId);
  }

  /**
   * Every child of a parent (all pages), sorted by id.
   *
   * @example
   * ```ts ignore
   * const keys = await limiter.listChildren("proj-1");
   * ```
   */
  listChildren(parentId: string): Promise<Entity[]> {
    this.#checkOpen();
    return this.#admin.listChildren(parentId);
  }

  /**
   * One page of entities, sorted by id, from the entity index (GSI3): pass the page's `cursor` to
   * get the next. Needs a schema version 2 table (`ConfigurationError` `schema-outdated`
   * otherwise: run `zae-limiter upgrade`).
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.createEntity({ entityId: "a" });
   * await limiter.createEntity({ entityId: "b" });
   * await limiter.setLimits({ entityId: "b", limits: [Limit.perMinute("rpm", 10)] });
   * const first = await limiter.listEntities({ limit: 1 });
   * const next = await limiter.listEntities({ limit: 1, cursor: first.cursor });
   * console.assert(first.entities[0].entityId === "a" && next.entities[0].entityId === "b");
   * const custom = await limiter.listEntities({ withCustomLimits: true });
   * console.assert(custom.entities.map((e) => e.entityId).join() === "b");
   * ```
   */
  listEntities(options: ListEntitiesOptions = {}): Promise<EntityListPage> {
    this.#checkOpen();
    return this.#listEntities(options);
  }

  /**
   * Deletes an entity with its stored limits, buckets and usage. A parent with children is refused.
   *
   * @example
   * ```ts ignore
   * await limiter.deleteEntity("key-abc");
   * ```
   */
  deleteEntity(entityId: string): Promise<void> {
    this.#checkOpen();
    return this.#admin.deleteEntity(entityId);
  }

  /**
   * Switches an entity off: its acquires, its children's, and `available` / `timeUntilAvailable`
   * on it throw {@link EntityDisabledError} (an HTTP 403), before any bucket write. Audited
   * (`entity.disable`); other processes see it within `limitsCacheTtlMs`. Returns the entity.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.createEntity({ entityId: "key-1" });
   * console.assert((await limiter.disableEntity("key-1")).disabled === true);
   * ```
   */
  disableEntity(entityId: string): Promise<Entity> {
    this.#checkOpen();
    return this.#controls.setDisabled(entityId, true);
  }

  /**
   * Switches a disabled entity on again (audited: `entity.enable`). Returns the entity.
   *
   * @example
   * ```ts ignore
   * await limiter.enableEntity("key-1");
   * ```
   */
  enableEntity(entityId: string): Promise<Entity> {
    this.#checkOpen();
    return this.#controls.setDisabled(entityId, false);
  }

  /**
   * Turns bypass on or off: a bypassed entity's (and its children's) acquires are admitted
   * without consuming (`lease.bypassed`; the lease writes nothing) and counted as `bypassed` in
   * usage. Audited (`entity.bypass`). Returns the entity.
   *
   * @example
   * ```ts ignore
   * await limiter.setBypass({ entityId: "internal-batch", bypass: true });
   * ```
   */
  setBypass(options: { entityId: string; bypass: boolean }): Promise<Entity> {
    this.#checkOpen();
    return this.#controls.setBypass(options);
  }

  /**
   * Moves an existing entity under a parent (existing and top-level; the entity must have no
   * children), or detaches it (`parentId` left out). Audited (`entity.set-parent`).
   *
   * @example
   * ```ts ignore
   * await limiter.setParent({ entityId: "key-1", parentId: "proj-2" });
   * ```
   */
  setParent(options: { entityId: string; parentId?: string }): Promise<Entity> {
    this.#checkOpen();
    return this.#controls.setParent(options);
  }

  /**
   * Sets whether an existing entity's acquires cascade to its parent by default. Audited
   * (`entity.set-cascade`).
   *
   * @example
   * ```ts ignore
   * await limiter.setCascade({ entityId: "key-1", cascade: true });
   * ```
   */
  setCascade(options: { entityId: string; cascade: boolean }): Promise<Entity> {
    this.#checkOpen();
    return this.#controls.setCascade(options);
  }

  /**
   * Switches a resource off for every entity: its acquires throw {@link EntityDisabledError}.
   * Audited (`resource.disable`).
   *
   * @example
   * ```ts ignore
   * await limiter.disableResource("gpt-4");
   * ```
   */
  disableResource(resource: string): Promise<ResourceControls> {
    this.#checkOpen();
    return this.#controls.setResourceDisabled(resource, true);
  }

  /**
   * Switches a disabled resource on again (audited: `resource.enable`).
   *
   * @example
   * ```ts ignore
   * await limiter.enableResource("gpt-4");
   * ```
   */
  enableResource(resource: string): Promise<ResourceControls> {
    this.#checkOpen();
    return this.#controls.setResourceDisabled(resource, false);
  }

  /**
   * A resource's controls (`{}` when none are set).
   *
   * @example
   * ```ts ignore
   * const { disabled } = await limiter.getResourceControls("gpt-4");
   * ```
   */
  getResourceControls(resource: string): Promise<ResourceControls> {
    this.#checkOpen();
    return this.#controls.getResourceControls(resource);
  }

  /**
   * Makes a bucket full again (every limit, or the named ones; every shard item), in one
   * transaction with its audit event. Consumption counters are kept. See docs/usage.md.
   *
   * @example
   * ```ts ignore
   * await limiter.resetBucket({ entityId: "key-1", resource: "gpt-4" });
   * ```
   */
  resetBucket(options: ResetBucketOptions): Promise<BucketChangeResult> {
    this.#checkOpen();
    return this.#buckets.reset(options);
  }

  /**
   * Adds `amount` tokens to one limit of a bucket, up to its capacity, once per
   * `idempotencyKey` (a repeat returns `applied: false`), with its audit event.
   *
   * @example
   * ```ts ignore
   * await limiter.topUp({ entityId: "key-1", resource: "gpt-4", limit: "tpm", amount: 5000,
   *   idempotencyKey: "incident-42" });
   * ```
   */
  topUp(options: TopUpOptions): Promise<BucketChangeResult> {
    this.#checkOpen();
    return this.#buckets.topUp(options);
  }

  /**
   * Audit events (every admin change: who, when, what, before and after), newest first, one page
   * at a time: pass the page's `cursor` to read the next. See "Audit trail" in docs/design.md.
   *
   * @example
   * ```ts
   * import { RateLimiter } from "./limiter.ts";
   * import { InMemoryBackend } from "./testing/mod.ts";
   * const limiter = new RateLimiter({ tableName: "audit", backend: new InMemoryBackend() });
   * await limiter.createEntity({ entityId: "key-1" });
   * const { events } = await limiter.getAuditEvents({ entityId: "key-1", limit: 10 });
   * console.assert(events[0].action === "entity.create" && events[0].principal === "local");
   * await limiter.close();
   * ```
   */
  getAuditEvents(options: GetAuditEventsOptions = {}): Promise<AuditEventsPage> {
    this.#checkOpen();
    return this.#admin.auditEvents(options);
  }

  /**
   * For one resource, each entity with a bucket and its available tokens per limit (all pages, or
   * the first `limit` entities of the index, by id).
   * The resource index is filled by the usage aggregator (deployed, or `aggregate` locally),
   * never by the hot path: a bucket appears once the aggregator has seen its first write.
   *
   * @example
   * ```ts ignore
   * for (const b of await limiter.listResourceBuckets({ resource: "gpt-4" })) console.log(b.entityId, b.available);
   * ```
   */
  listResourceBuckets(options: { resource: string; limit?: number }): Promise<ResourceBucket[]> {
    this.#checkOpen();
    return this.#admin.listResourceBuckets(options);
  }

  /**
   * A health check: whether the table answers, is active, and has the keys and indexes the
   * library needs, with the latency of the one `DescribeTable` it sends. It never throws for an
   * outage or a misconfiguration: `ok` is false and `problem` says which (see {@link PingResult}).
   * A missing GSI3 (schema version 1) and a missing stream are warnings, not failures.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const { ok, latencyMs } = await createTestLimiter().ping(); // in memory: ok, 0 ms
   * console.assert(ok && latencyMs === 0);
   * ```
   */
  ping(): Promise<PingResult> {
    this.#checkOpen();
    return this.#ping();
  }
}
