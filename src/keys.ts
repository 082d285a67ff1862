/**
 * The single-table key schema. `#` separates the parts of a key and is refused in every id,
 * resource and limit name, so no input can address another entity's items.
 *
 * | item            | PK                | SK                                   |
 * |-----------------|-------------------|--------------------------------------|
 * | entity metadata | `ENTITY#{id}`     | `#META`                              |
 * | bucket          | `ENTITY#{id}`     | `#BUCKET#{resource}`                 |
 * | stored limits   | `ENTITY#{id}`     | `#LIMIT#{resource}` (`#LIMIT#*` = all) |
 * | usage snapshot  | `ENTITY#{id}`     | `#USAGE#{resource}#{window}#{start}` |
 * | schema version  | `SYSTEM`          | `#VERSION`                           |
 * | default limits  | `SYSTEM`          | `#LIMIT#{resource}` (`#LIMIT#*` = system) |
 * | resource controls | `SYSTEM`        | `#CONTROL#{resource}`                |
 *
 * GSI1 (`GSI1PK`/`GSI1SK`, on metadata items): `PARENT#{parent}` → `CHILD#{id}`.
 * GSI2 (`GSI2PK`/`GSI2SK`, KEYS_ONLY): `RESOURCE#{resource}` → `ENTITY#{id}`, set on bucket items
 * by the aggregator, never by the hot path (so no acquire pays an index write).
 * GSI3 (`GSI3PK`/`GSI3SK`, ALL; schema version 2): `ENTITIES` → `{id}` on metadata items and
 * `{id}#LIMIT#{resource}` on stored-limits items, to list entities without a scan. Bucket items
 * never carry it.
 *
 * @module
 */

/** Table attribute names. */
export const PK = "PK";
/** Sort key attribute. */
export const SK = "SK";
/** Parent → children index. */
export const GSI1 = "GSI1";
/** Resource → buckets index. */
export const GSI2 = "GSI2";
/** Entity index (schema version 2). */
export const GSI3 = "GSI3";
/** TTL attribute (epoch seconds). */
export const TTL = "ttl";

/** Sort key of entity metadata. */
export const META_SK = "#META";
/** Prefix of bucket sort keys. */
export const BUCKET_PREFIX = "#BUCKET#";
/** Prefix of stored-limit sort keys. */
export const LIMIT_PREFIX = "#LIMIT#";
/** Resource part of the entity-wide stored limits. */
export const ALL_RESOURCES = "*";
/** Prefix of usage snapshot sort keys. */
export const USAGE_PREFIX = "#USAGE#";

/** Partition key of the table's system items: defaults, resource controls, the schema version. */
export const SYSTEM_PK = "SYSTEM";
/** Sort key of the schema version item. */
export const VERSION_SK = "#VERSION";
/** The schema version this library reads and writes. A table without a version item is 1. */
export const SCHEMA_VERSION = 2;
/** GSI3 partition key of every entity metadata and stored-limits item. */
export const ENTITIES_KEY = "ENTITIES";

/** GSI3 sort key of an entity's metadata item. */
export function entityListSk(entityId: string): string {
  return entityId;
}

/**
 * GSI3 sort key of an entity's stored limits: right after its metadata item, before any other
 * entity (every character allowed in an id sorts after `#`).
 */
export function limitListSk(entityId: string, resource?: string): string {
  return `${entityId}${limitSk(resource)}`;
}

/** The GSI3 key attributes of an entity's item (`resource` given: a stored-limits item). */
export function entityIndexKeys(
  entityId: string,
  limits?: { resource?: string },
  entitiesKey: string = ENTITIES_KEY,
): { GSI3PK: { S: string }; GSI3SK: { S: string } } {
  return {
    GSI3PK: { S: entitiesKey },
    GSI3SK: { S: limits ? limitListSk(entityId, limits.resource) : entityListSk(entityId) },
  };
}

/** Partition key of an entity's items. */
export function entityPk(entityId: string): string {
  return `ENTITY#${entityId}`;
}

/** Entity id of a partition key, or `undefined`. */
export function entityIdOf(pk: string): string | undefined {
  return pk.startsWith("ENTITY#") ? pk.slice(7) : undefined;
}

/** Sort key of a bucket. */
export function bucketSk(resource: string): string {
  return `${BUCKET_PREFIX}${resource}`;
}

/**
 * The bucket's resource and shard of a bucket key's resource part (`{resource}#{i}/{N}` for shard
 * `i` of `N`); `undefined` for an unsharded one.
 */
export function parseShardResource(
  stored: string,
): { resource: string; index: number; count: number } | undefined {
  const m = /^(.*)#(\d+)\/(\d+)$/.exec(stored);
  return m ? { resource: m[1], index: Number(m[2]), count: Number(m[3]) } : undefined;
}

/** Resource of a bucket sort key, or `undefined`. */
export function resourceOfBucketSk(sk: string): string | undefined {
  return sk.startsWith(BUCKET_PREFIX) ? sk.slice(BUCKET_PREFIX.length) : undefined;
}

/** Sort key of stored limits; without resource, the entity-wide ones. */
export function limitSk(resource?: string): string {
  return `${LIMIT_PREFIX}${resource ?? ALL_RESOURCES}`;
}

/** Prefix of a top-up's idempotency record: `#TOPUP#{resource}#{key}`. */
export const TOPUP_PREFIX = "#TOPUP#";

/** Sort key of the record of top-up `key` on `resource` (see src/bucket_admin.ts). */
export function topUpSk(resource: string, key: string): string {
  return `${TOPUP_PREFIX}${resource}#${key}`;
}

/** GSI1 partition key of a parent's children. */
export function parentKey(parentId: string): string {
  return `PARENT#${parentId}`;
}

/** GSI1 sort key of a child. */
export function childKey(entityId: string): string {
  return `CHILD#${entityId}`;
}

/** GSI2 partition key of a resource. */
export function resourceKey(resource: string): string {
  return `RESOURCE#${resource}`;
}

/** Per-limit attribute names on a bucket item. */
export const attr = {
  /** Theoretical arrival time, scaled (see bucket.ts). */
  tat: (limit: string) => `t_${limit}`,
  /** Spec the tat was written under (`C/R/P`). */
  spec: (limit: string) => `k_${limit}`,
  /** Running total consumed, thousandths of a token (for usage; adjustments and rollbacks included). */
  used: (limit: string) => `u_${limit}`,
  /** Credit past capacity, thousandths of a token, written by top-ups (see docs/design.md). */
  credit: (limit: string) => `c_${limit}`,
  /** A quota's window start, epoch ms (see docs/design.md, "Quotas"). */
  window: (limit: string) => `w_${limit}`,
  /** A concurrent limit's count of slots taken (see docs/design.md, "Concurrency limits"). */
  held: (limit: string) => `cc_${limit}`,
  /** A concurrent limit's slot of operation `opId`: its expiry, epoch ms. */
  slot: (limit: string, opId: string) => `s_${limit}_${opId}`,
} as const;

/** Running count of admitted requests on a bucket item (rollbacks subtract). */
export const REQUESTS = "rq";
/** Epoch ms of the latest write to a bucket item (the time of the consumption it carries). */
export const WRITTEN_AT = "ts";

/**
 * How many writes past a writer's known write count its write may land at (see
 * `BucketWrite.maxWrites`): the reach of the write-count bound, which also caps how long a receipt
 * must be kept.
 */
export const BOUND_REACH = 32;

/** The item's write count: every bucket write adds one (see `BucketWrite.maxWrites`). */
export const WRITES = "wc";

/** Prefix of a receipt attribute: `r_{opId}` records that operation `opId` was applied. */
export const RECEIPT_PREFIX = "r_";

/** The attribute of operation `opId`'s receipt. */
export function receiptAttr(opId: string): string {
  return `${RECEIPT_PREFIX}${opId}`;
}

/** The key of an entity's item: `PK` of `entityId`, and `sk`. */
export function itemKey(entityId: string, sk: string): { PK: { S: string }; SK: { S: string } } {
  return { PK: { S: entityPk(entityId) }, SK: { S: sk } };
}

/** Prefix of resource-control sort keys (`SYSTEM` / `#CONTROL#{resource}`). */
export const CONTROL_PREFIX = "#CONTROL#";

/**
 * The key of a system item: `SYSTEM` and `sk`, e.g. `limitSk(resource)` for a resource's default
 * limits, `limitSk()` for the system defaults.
 */
export function systemKey(sk: string): { PK: { S: string }; SK: { S: string } } {
  return { PK: { S: SYSTEM_PK }, SK: { S: sk } };
}

/** Sort key of a resource's controls. */
export function controlSk(resource: string): string {
  return `${CONTROL_PREFIX}${resource}`;
}
