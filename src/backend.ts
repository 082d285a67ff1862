/**
 * The storage a {@link RateLimiter} runs on: DynamoDB ({@link dynamoBackend}), or the in-memory
 * backend of `@zae/limiter/testing`. Both evaluate the same bucket writes ({@link BucketWrite}) with
 * the same conditions, so they cannot drift; one conformance suite runs against both.
 *
 * @module
 */

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { AuditPage, AuditQuery, AuditSettings } from "./audit_query.ts";
import type { AuditRecord } from "./audit_record.ts";
import type { EntityPatch } from "./control_store.ts";
import type { StoredDefaults, StoredLimitsEntry } from "./defaults_store.ts";
import type {
  Entity,
  EntityConfig,
  ResourceControls,
  StoredLimits,
  StoredShards,
} from "./entities.ts";
import { EntityStore } from "./entities.ts";
import { type CatalogBackend, DynamoCatalog } from "./entity_list.ts";
import { KeySpace } from "./keyspace.ts";
import type { Limit } from "./limit.ts";
import type { PingResult } from "./ping.ts";
import { leanTransportOf } from "./transport/lean.ts";
import type { Telemetry } from "./telemetry.ts";
import type { AdminBucketChange, AdminOutcome } from "./bucket_items.ts";
import {
  type BucketWrite,
  Repository,
  type StoredBucket,
  type WriteOutcome,
} from "./repository.ts";

/**
 * Bucket storage: conditional writes of {@link BucketWrite}s, and reads.
 *
 * @example
 * ```ts
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const backend = new InMemoryBackend();
 * const limiter = new RateLimiter({ tableName: "unit-test", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
 * const bucket = await backend.buckets.getBucket("key-1", "api");
 * console.assert(bucket?.limits.has("rpm"));
 * ```
 */
export interface BucketBackend {
  /** One conditional write; on a failed condition, the item as it was. */
  writeBucket(w: BucketWrite, signal?: AbortSignal): Promise<WriteOutcome>;
  /** Several conditional writes, all or none. */
  transactBuckets(
    writes: BucketWrite[],
    signal?: AbortSignal,
  ): Promise<{ ok: true; retried?: boolean } | { ok: false; olds: WriteOutcome[] }>;
  /** One bucket, strongly consistent. */
  getBucket(
    entityId: string,
    resource: string,
    signal?: AbortSignal,
  ): Promise<StoredBucket | undefined>;
  /**
   * An admin change to bucket items (reset, top-up) and its audit event, all or none: `changed`
   * when an item is not as read, `repeated` when the change's idempotency record exists.
   */
  adminWrite(
    change: AdminBucketChange,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<AdminOutcome>;
  /** Raises a bucket's TTL, never lowers it. */
  raiseTtl(entityId: string, resource: string, ttlSec: bigint, signal?: AbortSignal): Promise<void>;
  /**
   * The buckets of a resource (as listed by the resource index), by entity id; with `limit`, the
   * first `limit` of the index only.
   */
  resourceBuckets(
    resource: string,
    signal?: AbortSignal,
    limit?: number,
  ): Promise<{ entityId: string; bucket: StoredBucket }[]>;
  /** Creates the storage when missing. */
  createTable(): Promise<void>;
}

/**
 * Entity and stored-limit storage. Every write takes an optional {@link AuditRecord}: given, the
 * event is stored in the same transaction as the change (see src/audit_record.ts).
 *
 * @example
 * ```ts
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * const backend = new InMemoryBackend();
 * const limiter = new RateLimiter({ tableName: "unit-test", backend });
 * await limiter.createEntity({ entityId: "proj-1" });
 * console.assert((await backend.entities.get("proj-1"))?.entityId === "proj-1");
 * ```
 */
export interface EntityBackend {
  /** Creates an entity (parent must exist and be top-level). */
  create(entity: Entity, signal?: AbortSignal, audit?: AuditRecord): Promise<void>;
  /** Reads an entity. */
  get(entityId: string, signal?: AbortSignal): Promise<Entity | undefined>;
  /** Every child of a parent, sorted by id. */
  children(parentId: string, signal?: AbortSignal): Promise<Entity[]>;
  /** Deletes every item of an entity; returns how many. */
  deleteAll(entityId: string, signal?: AbortSignal, audit?: AuditRecord): Promise<number>;
  /**
   * Stores limits for a resource (or all resources), with their shard count; with
   * `expectShards`, only if the stored count is still that (else `ShardsChanged`).
   */
  putLimits(
    entityId: string,
    resource: string | undefined,
    limits: Limit[],
    signal?: AbortSignal,
    shards?: StoredShards,
    expectShards?: number,
    audit?: AuditRecord,
  ): Promise<void>;
  /** Stored limits with their shard count, or `undefined`. */
  getLimits(
    entityId: string,
    resource: string | undefined,
    signal?: AbortSignal,
  ): Promise<StoredLimits | undefined>;
  /**
   * Changes the shard count from `from` (still stored, no change pending at `nowMs`) to `to`;
   * false when it was not so.
   */
  reshard(
    entityId: string,
    resource: string | undefined,
    from: number,
    to: StoredShards,
    nowMs: number,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<boolean>;
  /** Deletes stored limits. */
  deleteLimits(
    entityId: string,
    resource: string | undefined,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void>;
  /**
   * Metadata and stored limits of some entities for a resource, in one round trip; with
   * `want.defaults`, the resource's and the system's default limits and the resource's controls
   * in the same read (set on every entity's config).
   */
  loadConfig(
    entityIds: string[],
    resource: string,
    want: { meta: boolean; limits: boolean; defaults?: boolean },
    signal?: AbortSignal,
  ): Promise<Map<string, EntityConfig>>;
  /**
   * Stores the default limits of a resource (`undefined`: the system defaults). With an audit
   * record whose `replaces` is set, only if they still carry that event (`ShardsChanged` if not).
   */
  putDefaults(
    resource: string | undefined,
    limits: Limit[],
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void>;
  /** The default limits of a resource (`undefined`: the system's) and their event, or `undefined`. */
  getDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
  ): Promise<StoredDefaults | undefined>;
  /** Deletes the default limits of a resource (`undefined`: the system's), as `putDefaults`. */
  deleteDefaults(
    resource: string | undefined,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void>;
  /** The resources with default limits, sorted. */
  listDefaultResources(signal?: AbortSignal): Promise<string[]>;
  /** Every stored-limits item of an entity (`resource` undefined: the entity-wide ones). */
  listStoredLimits(entityId: string, signal?: AbortSignal): Promise<StoredLimitsEntry[]>;
  /**
   * Changes an existing entity's controls, cascade flag or parent (`EntityNotFoundError` when
   * missing; a new parent must exist and be top-level, checked in the same write).
   */
  updateEntity(
    entityId: string,
    patch: EntityPatch,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void>;
  /**
   * The `auditSk` of an entity's last audited metadata change (`null`: none), for a change that
   * names the state it replaces; a backend without it does not guard that.
   */
  entityAuditSk?(entityId: string, signal?: AbortSignal): Promise<string | null>;
  /** A resource's controls, `undefined` when none are set. */
  getResourceControls(
    resource: string,
    signal?: AbortSignal,
  ): Promise<ResourceControls | undefined>;
  /**
   * A resource's controls with the `auditSk` of their last audited change, for a change that
   * names the state it replaces; a backend without it does not guard that.
   */
  getResourceControlsState?(
    resource: string,
    signal?: AbortSignal,
  ): Promise<{ controls: ResourceControls; auditSk?: string } | undefined>;
  /** Stores a resource's controls; with none set, removes them. */
  putResourceControls(
    resource: string,
    controls: ResourceControls,
    signal?: AbortSignal,
    audit?: AuditRecord,
  ): Promise<void>;
  /** Counts one bypassed request of an entity on a resource, in the hour of `atMs`. */
  countBypassed(
    entityId: string,
    resource: string,
    atMs: number,
    signal?: AbortSignal,
  ): Promise<void>;
  /**
   * Adds `n` refused requests of an entity on a resource to the hour of `atMs` (one write; the
   * limiter sends one per entity, resource and hour with refusals, per flush: src/refusals.ts).
   */
  countRefused(
    entityId: string,
    resource: string,
    atMs: number,
    n: number,
    signal?: AbortSignal,
  ): Promise<void>;
  /** Audit events, newest first (see src/audit_query.ts). */
  auditEvents(query: AuditQuery, signal?: AbortSignal): Promise<AuditPage>;
  /** The audit settings the table records (`{}` when none). */
  auditSettings(signal?: AbortSignal): Promise<AuditSettings>;
}

/**
 * Everything a limiter stores: give one as `RateLimiterOptions.backend`.
 *
 * @example
 * ```ts
 * import type { Backend } from "./backend.ts";
 * import type { BucketWrite } from "./repository.ts";
 * import { Limit } from "./limit.ts";
 * import { RateLimiter } from "./limiter.ts";
 * import { InMemoryBackend } from "./testing/mod.ts";
 * // Records the bucket writes a limiter sends, around the in-memory backend.
 * const inner = new InMemoryBackend();
 * const writes: BucketWrite[] = [];
 * const backend: Backend = {
 *   entities: inner.entities,
 *   buckets: {
 *     ...inner.buckets,
 *     writeBucket: (w, signal) => {
 *       writes.push(w);
 *       return inner.buckets.writeBucket(w, signal);
 *     },
 *   },
 * };
 * const limiter = new RateLimiter({ tableName: "recorded", backend, clock: () => 0 });
 * await limiter.acquire({ entityId: "key-1", resource: "api",
 *   limits: [Limit.perMinute("rpm", 10)], consume: { rpm: 1 } });
 * console.assert(writes.length === 1 && writes[0].entityId === "key-1");
 * ```
 */
export interface Backend {
  /** Buckets. */
  buckets: BucketBackend;
  /** Entities and stored limits. */
  entities: EntityBackend;
  /**
   * Answers `RateLimiter.ping()` for storage that is not a DynamoDB table (the in-memory backend
   * answers healthy, latency 0). @default none: `ping()` describes the table through the
   * limiter's DynamoDB client
   */
  ping?(tableName: string): Promise<PingResult>;

  /**
   * The schema version and the entity list. Both built-in backends have one; without it, the
   * schema is taken as current and `listEntities` is refused.
   */
  catalog?: CatalogBackend;

  /**
   * The same storage seen from a namespace (see `RateLimiterOptions.namespace`): what one
   * namespace stores, another never sees. @default none: such a backend serves the default
   * namespace only, and a limiter given a namespace refuses it
   */
  forNamespace?(space: KeySpace): Backend;
}

/**
 * The DynamoDB backend for a table. Bucket writes and reads go through the client's SDK stack,
 * or through its lean transport when the client has one (the client the limiter makes itself;
 * see "Client CPU" in docs/design.md).
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { dynamoBackend } from "./backend.ts";
 * import { KeySpace } from "./keyspace.ts";
 * const client = new DynamoDBClient({ region: "us-east-1" });
 * const backend = dynamoBackend(client, "rate_limits");
 * console.assert(typeof backend.buckets.writeBucket === "function");
 * const billing = dynamoBackend(client, "rate_limits", KeySpace.of("billing"));
 * console.assert(typeof billing.forNamespace === "function");
 * client.destroy();
 * ```
 */
export function dynamoBackend(
  client: DynamoDBClient,
  tableName: string,
  keys: KeySpace = KeySpace.DEFAULT,
  telemetry?: Telemetry,
): Backend {
  return {
    // A client the limiter made itself sends the hot path through its lean transport.
    buckets: new Repository({
      client,
      tableName,
      transport: leanTransportOf(client),
      keys,
      telemetry,
    }),
    entities: new EntityStore(client, tableName, keys, telemetry),
    catalog: new DynamoCatalog(client, tableName, keys),
    forNamespace: (space) => dynamoBackend(client, tableName, space, telemetry),
  };
}
