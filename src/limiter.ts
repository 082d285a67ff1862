/**
 * {@link RateLimiter}: acquire tokens from DynamoDB-backed buckets. The class is a facade: the
 * write engine (`engine/`), the config resolver (`config.ts`), entities and limits (`admin.ts`),
 * reads (`reads.ts`), usage (`usage.ts`) and table set-up (`setup.ts`) each own one job.
 *
 * @module
 */

import type * as aws from "./aws_types.ts";
import type { Entity, ResourceControls } from "./entities.ts";
import type { LeaseEngine } from "./engine/leases.ts";
import type { EntityAdmin } from "./admin.ts";
import type { EntityListPage, ListEntitiesOptions } from "./entity_list.ts";
import type { DefaultsAdmin } from "./defaults.ts";
import type { StoredLimitsEntry } from "./defaults_store.ts";
import type {
  BucketAdmin,
  BucketChangeResult,
  ResetBucketOptions,
  TopUpOptions,
} from "./bucket_admin.ts";
import type { ControlAdmin } from "./controls.ts";
import type { AuditEventsPage, GetAuditEventsOptions } from "./audit_read.ts";
import type { Outbox } from "./engine/outbox.ts";
import { RateLimiterUnavailable, ZaeLimiterError } from "./errors.ts";
import type { Lease } from "./lease.ts";
import type { Limit } from "./limit.ts";
import type {
  AcquireOptions,
  AvailableOptions,
  CreateEntityOptions,
  RateLimiterOptions,
  ResourceBucket,
  TimeUntilAvailableOptions,
} from "./options.ts";
import type { KeySpace } from "./keyspace.ts";
import type { PingResult } from "./ping.ts";
import type { BucketReader } from "./reads.ts";
import { assemble } from "./wiring.ts";
import { validateAcquire } from "./request.ts";
import { validateEntityId, validateResource } from "./validate.ts";
import {
  getUsageSnapshots,
  getUsageSummary,
  type UsageQuery,
  type UsageSnapshot,
  type UsageSummary,
} from "./usage.ts";

export {
  type AcquireOptions,
  type AvailableOptions,
  type BatchOptions,
  type CreateEntityOptions,
  type CreateStackSettings,
  FailureMode,
  type RateLimiterOptions,
  type ResourceBucket,
  type TimeUntilAvailableOptions,
} from "./options.ts";
export { newOpId, Op, UncertainOutcome } from "./engine/op.ts";
export type { LeaseOps } from "./engine/types.ts";
export { makeClient } from "./setup.ts";

/**
 * A distributed rate limiter: token buckets stored in one DynamoDB table.
 *
 * @example
 * ```ts ignore
 * import { Limit, RateLimiter } from "./limiter.ts";
 * const limiter = new RateLimiter({ tableName: "rate_limits", endpoint: "http://localhost:8000", createTable: true });
 * await limiter.acquire({
 *   entityId: "key-1", resource: "gpt-4",
 *   limits: [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)],
 *   consume: { rpm: 1, tpm: 500 },
 * }, async (lease) => {
 *   await lease.adjust({ tpm: 120 }); // the answer used 620 tokens
 * });
 * ```
 */
export class RateLimiter implements AsyncDisposable {
  /** The table. */
  readonly tableName: string;
  /** The DynamoDB client in use. */
  readonly client: aws.DynamoDBClient;
  /** The namespace (`"default"` for the default one; see `RateLimiterOptions.namespace`). */
  readonly namespace: string;
  readonly #keys: KeySpace;
  readonly #ownsClient: boolean;
  readonly #outbox: Outbox;
  readonly #leases: LeaseEngine;
  readonly #reader: BucketReader;
  readonly #admin: EntityAdmin;
  readonly #listEntities: (options?: ListEntitiesOptions) => Promise<EntityListPage>;
  readonly #defaults: DefaultsAdmin;
  readonly #buckets: BucketAdmin;
  readonly #controls: ControlAdmin;
  readonly #createTableNow: () => Promise<void>;
  readonly #ping: () => Promise<PingResult>;
  readonly #closeTimeoutMs: number;
  #closed = false;
  #reported = 0;

  /**
   * Makes a limiter over one table. Nothing is sent to DynamoDB until the first call; the
   * options are checked at once.
   *
   * @param options See {@link RateLimiterOptions}.
   * @throws {ValidationError} When an option breaks its rule (e.g. a `tableName` DynamoDB refuses).
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
    this.tableName = parts.tableName;
    this.client = parts.client;
    this.#keys = parts.keys;
    this.namespace = parts.keys.name;
    this.#ownsClient = parts.ownsClient;
    this.#outbox = parts.outbox;
    this.#leases = parts.leases;
    this.#reader = parts.reader;
    this.#admin = parts.admin;
    this.#listEntities = parts.listEntities;
    this.#defaults = parts.defaults;
    this.#buckets = parts.buckets;
    this.#controls = parts.controls;
    this.#createTableNow = parts.createTable;
    this.#ping = parts.ping;
    this.#closeTimeoutMs = parts.closeTimeoutMs;
  }

  /**
   * Takes `consume` tokens from every limit at once, or none: returns a {@link Lease}, or throws
   * {@link RateLimitExceeded} carrying every limit's status.
   *
   * With a callback, the lease is committed when `fn` returns and rolled back when it throws
   * (the error is rethrown); the callback's result is returned.
   *
   * @example
   * ```ts ignore
   * await using lease = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("rpm", 100)], consume: { rpm: 1 } });
   * ```
   */
  acquire(options: AcquireOptions): Promise<Lease>;
  /**
   * Takes `consume` tokens from every limit at once, or none, then runs `fn` with the lease:
   * commits it when `fn` returns, rolls it back when `fn` throws (the error is rethrown).
   * Returns what `fn` returns; throws {@link RateLimitExceeded} without calling `fn` when a limit
   * lacks tokens.
   *
   * @example
   * ```ts ignore
   * const answer = await limiter.acquire({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("tpm", 10_000)], consume: { tpm: 500 } }, async (lease) => {
   *   const used = 620; // from the LLM's answer
   *   await lease.adjust({ tpm: used - 500 });
   *   return used;
   * });
   * ```
   */
  acquire<T>(options: AcquireOptions, fn: (lease: Lease) => T | Promise<T>): Promise<T>;
  async acquire<T>(
    options: AcquireOptions,
    fn?: (lease: Lease) => T | Promise<T>,
  ): Promise<Lease | T> {
    const lease = await this.#acquire(options);
    if (fn === undefined) return lease;
    let result: T;
    try {
      result = await fn(lease);
    } catch (err) {
      await lease.rollback();
      throw err;
    }
    await lease.commit();
    return result;
  }

  #acquire(options: AcquireOptions): Promise<Lease> {
    this.#checkOpen();
    return this.#leases.acquire(validateAcquire(options));
  }

  /**
   * Writes waiting in the outbox for DynamoDB to come back: 0 while DynamoDB answers.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * console.assert(limiter.pendingWrites === 0);
   * ```
   */
  get pendingWrites(): number {
    return this.#outbox.size;
  }

  /**
   * Writes the outbox gave up on, with why: an `UncertainOutcome` (an operation whose answer was
   * lost and whose item then took more writes than its window keeps, so nothing can tell whether
   * it landed), or an error that retrying cannot mend. Empty in normal operation; `flush()` (and
   * so `close()`) throws once for each batch of writes that became unresolved since it last did.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * console.assert(limiter.unresolvedWrites.length === 0);
   * ```
   */
  get unresolvedWrites(): readonly { label: string; error: unknown }[] {
    return this.#outbox.failed;
  }

  /**
   * Waits until every write kept back by an outage (commits, rollbacks, failed-open acquires)
   * has reached DynamoDB. Throws `RateLimiterUnavailable` when some are still waiting after
   * `timeoutMs`.
   *
   * @example
   * ```ts ignore
   * await limiter.flush(5_000);
   * ```
   */
  async flush(timeoutMs = 10_000): Promise<void> {
    const left = await this.#outbox.flush(timeoutMs);
    const unresolved = this.#outbox.failed.length;
    if (unresolved > this.#reported) {
      this.#reported = unresolved;
      const first = this.#outbox.failed[0];
      throw new ZaeLimiterError(
        `${unresolved} writes could not be resolved (first: ${first.label}: ${
          first.error instanceof Error ? first.error.message : String(first.error)
        }); see unresolvedWrites`,
        { cause: first.error },
      );
    }
    if (left > 0) {
      throw new RateLimiterUnavailable(
        "flush",
        new Error(`${left} writes still waiting for DynamoDB after ${timeoutMs} ms`),
      );
    }
  }

  /**
   * Whole tokens available now per limit (rounded down; negative in debt). A bucket never used
   * shows its capacity.
   *
   * @example
   * ```ts ignore
   * const { tpm } = await limiter.available({ entityId: "key-1", resource: "gpt-4", limits: [Limit.perMinute("tpm", 10_000)] });
   * ```
   */
  available(options: AvailableOptions): Promise<Record<string, number>> {
    this.#checkOpen();
    return this.#reader.available(options);
  }

  /**
   * Seconds until every `needed` amount is available (0 when it already is; `Infinity` when a
   * need exceeds its limit's capacity).
   *
   * @example
   * ```ts ignore
   * const wait = await limiter.timeUntilAvailable({ entityId: "key-1", resource: "gpt-4",
   *   limits: [Limit.perMinute("tpm", 10_000)], needed: { tpm: 2_000 } });
   * ```
   */
  timeUntilAvailable(options: TimeUntilAvailableOptions): Promise<number> {
    this.#checkOpen();
    return this.#reader.timeUntilAvailable(options);
  }

  /**
   * Tokens this process holds in its batch of a bucket, per limit (whole tokens; `{}` with no
   * batch). With `batches`, the bucket itself shows these as taken: `available()` is what other
   * processes can still take, and this is what this one can serve without a call.
   *
   * @example
   * ```ts
   * import { Limit } from "./limit.ts";
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter({ clock: () => 0, batches: true });
   * const limits = [Limit.perMinute("rpm", 1_000)];
   * await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 1 } });
   * console.assert(limiter.held({ entityId: "key-1", resource: "api" }).rpm === 15); // 16 taken, 1 used
   * await limiter.close();
   * ```
   */
  held(options: { entityId: string; resource: string }): Record<string, number> {
    this.#checkOpen();
    return this.#leases.held(
      validateEntityId(options?.entityId),
      validateResource(options?.resource),
    );
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
   * Usage snapshots (hourly or daily) of an entity, made by the aggregator; all pages.
   *
   * @example
   * ```ts ignore
   * const hours = await limiter.getUsageSnapshots({ entityId: "key-1", window: "hourly" });
   * ```
   */
  async getUsageSnapshots(query: UsageQuery): Promise<UsageSnapshot[]> {
    this.#checkOpen();
    return await getUsageSnapshots(this.client, this.tableName, query, this.#keys);
  }

  /**
   * Totals, averages and the peak window of an entity's usage snapshots.
   *
   * @example
   * ```ts ignore
   * const { total, peak } = await limiter.getUsageSummary({ entityId: "key-1", window: "daily" });
   * ```
   */
  async getUsageSummary(query: UsageQuery): Promise<UsageSummary> {
    this.#checkOpen();
    return await getUsageSummary(this.client, this.tableName, query, this.#keys);
  }

  /**
   * For one resource, each entity with a bucket and its available tokens per limit (all pages).
   * The resource index is filled by the usage aggregator (deployed, or `aggregate` locally),
   * never by the hot path: a bucket appears once the aggregator has seen its first write.
   *
   * @example
   * ```ts ignore
   * for (const b of await limiter.listResourceBuckets({ resource: "gpt-4" })) console.log(b.entityId, b.available);
   * ```
   */
  listResourceBuckets(options: { resource: string }): Promise<ResourceBucket[]> {
    this.#checkOpen();
    return this.#admin.listResourceBuckets(options);
  }

  /**
   * Creates the table (indexes, TTL, stream) if missing and waits until it is active. Calling it
   * again is harmless. For development and tests: production deploys the stack with the CLI.
   *
   * @example
   * ```ts ignore
   * import { RateLimiter } from "./limiter.ts";
   * const limiter = new RateLimiter({ tableName: "rate_limits", endpoint: "http://localhost:8000" });
   * await limiter.createTable();
   * ```
   */
  async createTable(): Promise<void> {
    await this.#createTableNow();
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

  #checkOpen(): void {
    if (this.#closed) throw new ZaeLimiterError("The rate limiter is closed");
  }

  /**
   * Closes the limiter: waits (up to `closeTimeoutMs`) for writes an outage kept back, then
   * closes the DynamoDB client it made (a client passed in `client` stays open). It never throws
   * because DynamoDB is down, so `await using` and `finally` blocks stay safe in an outage: writes
   * it had to leave stay in `pendingWrites` and `unresolvedWrites`, and one warning says how many.
   * Call {@link flush} first to get an error instead. A second call does nothing.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * const limiter = createTestLimiter();
   * await limiter.close();
   * let error: unknown;
   * try {
   *   await limiter.getEntity("key-1");
   * } catch (e) {
   *   error = e;
   * }
   * console.assert(error instanceof Error && error.message === "The rate limiter is closed");
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Batches go back to their buckets first; the whole of close() stays within closeTimeoutMs.
    const until = Date.now() + this.#closeTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#leases.drain(),
      new Promise((resolve) => (timer = setTimeout(resolve, this.#closeTimeoutMs))),
    ]);
    clearTimeout(timer);
    const left = await this.#outbox.flush(Math.max(0, until - Date.now()));
    const unresolved = this.#outbox.failed.length;
    if (left > 0 || unresolved > this.#reported) {
      console.warn(
        `zae-limiter: closed with ${left} write(s) still waiting for DynamoDB after ` +
          `${this.#closeTimeoutMs} ms and ${unresolved} unresolved (see pendingWrites, ` +
          "unresolvedWrites); they are lost when the process exits",
      );
    }
    this.#outbox.stop();
    if (this.#ownsClient) this.client.destroy();
  }

  /**
   * Same as {@link close}, for `await using`.
   *
   * @example
   * ```ts
   * import { createTestLimiter } from "./testing/mod.ts";
   * {
   *   await using limiter = createTestLimiter();
   *   console.assert(limiter.pendingWrites === 0);
   * } // closed here
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
