/**
 * An in-memory backend with the same semantics as DynamoDB, for unit tests of code that uses a
 * {@link RateLimiter}: no DynamoDB, no network, and an injected clock for time.
 *
 * It evaluates the very bucket writes the limiter sends to DynamoDB, with the same conditions,
 * and one conformance suite runs against both backends, so they cannot drift. Differences: items
 * never expire (DynamoDB's TTL deletes lazily anyway), and `listResourceBuckets` sees a bucket at
 * once (on DynamoDB the aggregator indexes it).
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "./mod.ts";
 * import { Limit } from "../limit.ts";
 * let now = 0;
 * const limiter = createTestLimiter({ clock: () => now });
 * const limits = [Limit.perMinute("rpm", 2)];
 * await limiter.acquire({ entityId: "key-1", resource: "api", limits, consume: { rpm: 2 } });
 * now += 30_000;
 * const { rpm } = await limiter.available({ entityId: "key-1", resource: "api", limits });
 * console.assert(rpm === 1);
 * ```
 *
 * @module
 */

export type { Backend, BucketBackend, EntityBackend } from "../backend.ts";
export type { AuditRecord, AuditScope } from "../audit_record.ts";
export type { EntityConfig, ResourceControls, StoredLimits, StoredShards } from "../entities.ts";
export type { CatalogBackend, CatalogPage, CatalogQuery } from "../entity_list.ts";
export type { AdminBucketChange, AdminLimitOp, AdminOutcome } from "../bucket_items.ts";
export type { EntityPatch } from "../control_store.ts";
export type { AuditPage, AuditQuery, AuditSettings } from "../audit_query.ts";
export type {
  BucketWrite,
  LimitOp,
  StoredBucket,
  StoredLimit,
  WriteOutcome,
} from "../repository.ts";
import { RateLimiter, type RateLimiterOptions } from "../limiter.ts";
import { InMemoryBackend } from "./memory_backend.ts";
export { InMemoryBackend } from "./memory_backend.ts";

/**
 * Options of {@link createTestLimiter}: a limiter's, less the DynamoDB ones.
 *
 * @example
 * ```ts
 * import { createTestLimiter, type TestLimiterOptions } from "./mod.ts";
 * let now = 0;
 * const options: TestLimiterOptions = { clock: () => now, denyCache: false };
 * const limiter = createTestLimiter(options);
 * console.assert(limiter.tableName === "in-memory");
 * now += 1000;
 * ```
 */
export type TestLimiterOptions = Omit<
  RateLimiterOptions,
  "tableName" | "client" | "region" | "endpoint" | "createTable" | "backend"
>;

/**
 * A {@link RateLimiter} on a fresh {@link InMemoryBackend}.
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "./mod.ts";
 * const limiter = createTestLimiter({ clock: () => 0 });
 * await limiter.createEntity({ entityId: "proj-1" });
 * console.assert((await limiter.getEntity("proj-1"))?.entityId === "proj-1");
 * ```
 */
export function createTestLimiter(options: TestLimiterOptions = {}): RateLimiter {
  return new RateLimiter({ ...options, tableName: "in-memory", backend: new InMemoryBackend() });
}

export {
  type ItemCharge,
  startWriteCeiling,
  type WriteCeiling,
  type WriteCeilingOptions,
  type WriteCeilingStats,
} from "./ceiling.ts";
