/**
 * The reads and writes of one entity's pages: the entity and its resources, its live buckets,
 * the stored limits at every level with the one acquires use marked, its usage series, its audit
 * events, and the edit of its stored limits (read back after the write).
 *
 * @module
 */

import type { AuditEvent } from "../audit_read.ts";
import { listBucketResources, readEntityBuckets } from "../entity_buckets.ts";
import { ConfigurationError, EntityNotFoundError, ValidationError } from "../errors.ts";
import type { Limit } from "../limit.ts";
import type { RateLimiter } from "../limiter.ts";
import { validateResource } from "../validate.ts";
import type {
  AuditView,
  BucketsView,
  EntityPageView,
  LimitLevel,
  LimitLevelsView,
  LimitsWriteResult,
  UsageView,
} from "./api_types.ts";
import { limitsFromJson, limitView } from "./limit_view.ts";
import { type ChartWindow, firstWindowStart, SeriesBuilder } from "./series.ts";

/** The resource part of the entity-wide stored limits, as the API names it. */
export const ALL_RESOURCES = "*";
/** Audit events per page. */
const AUDIT_PAGE = 50;

/**
 * The entity, its children and its resources; `EntityNotFoundError` when it was never created.
 *
 * @example
 * ```ts ignore
 * const page = await readEntityPage(limiter, "key-1");
 * ```
 */
export async function readEntityPage(
  limiter: RateLimiter,
  entityId: string,
): Promise<EntityPageView> {
  const entity = await limiter.getEntity(entityId);
  if (entity === undefined) throw new EntityNotFoundError(entityId);
  const [children, withBuckets, stored] = await Promise.all([
    entity.parentId === undefined ? limiter.listChildren(entityId) : Promise.resolve([]),
    listBucketResources(limiter, entityId),
    limiter.listStoredLimits({ entityId }),
  ]);
  const resources = new Set<string>(withBuckets);
  for (const s of stored) if (s.resource !== undefined) resources.add(s.resource);
  return {
    entity: {
      entityId: entity.entityId,
      ...(entity.name === undefined ? {} : { name: entity.name }),
      ...(entity.parentId === undefined ? {} : { parentId: entity.parentId }),
      cascade: entity.cascade,
      disabled: entity.disabled === true,
      bypass: entity.bypass === true,
      createdAt: entity.createdAt,
      metadata: entity.metadata,
    },
    children: children.map((c) => c.entityId).sort(),
    resources: [...resources].sort(),
  };
}

/** The stored limits of each level for `resource`, most specific first (`null`: none stored). */
async function levelLimits(
  limiter: RateLimiter,
  entityId: string,
  resource: string,
): Promise<{ level: LimitLevel; limits: Limit[] | null }[]> {
  const stored = (limits: Limit[]) => (limits.length === 0 ? null : limits);
  const [own, entityWide, defaults, system] = await Promise.all([
    limiter.getLimits({ entityId, resource }),
    limiter.getLimits({ entityId }),
    limiter.getResourceDefaults({ resource }),
    limiter.getSystemDefaults(),
  ]);
  return [
    { level: "entity-resource", limits: stored(own) },
    { level: "entity", limits: stored(entityWide) },
    { level: "resource", limits: stored(defaults) },
    { level: "system", limits: stored(system) },
  ];
}

/**
 * Every level of stored limits for one resource, the effective one marked: the most specific
 * that stores limits, in the order acquires resolve them (src/config.ts, `storedTarget`: the
 * entity's for the resource, the entity's for every resource, the resource's defaults, the
 * system's).
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { readLimitLevels } from "./entity.ts";
 * const limiter = createTestLimiter();
 * await limiter.setSystemDefaults({ limits: [Limit.perMinute("rpm", 10)] });
 * await limiter.setLimits({ entityId: "key-1", limits: [Limit.perMinute("rpm", 20)] });
 * const { levels } = await readLimitLevels(limiter, "key-1", "api");
 * console.assert(levels.find((l) => l.effective)?.level === "entity");
 * ```
 */
export async function readLimitLevels(
  limiter: RateLimiter,
  entityId: string,
  resource: string,
): Promise<LimitLevelsView> {
  const levels = await levelLimits(limiter, entityId, resource);
  const effective = levels.findIndex((l) => l.limits !== null);
  return {
    resource,
    levels: levels.map((l, i) => ({
      level: l.level,
      limits: l.limits === null ? null : l.limits.map(limitView),
      effective: i === effective,
    })),
  };
}

/**
 * The live buckets at the limiter's clock (`readEntityBuckets`): as `limiter.available` reads
 * them for each resource with stored limits at some level; a resource with no stored limits from
 * its unsharded bucket item, under the limits of its last write (`fromLastWrite`).
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { readBuckets } from "./entity.ts";
 * const limiter = createTestLimiter();
 * await limiter.setLimits({ entityId: "key-1", resource: "api", limits: [Limit.perMinute("rpm", 10)] });
 * const { buckets } = await readBuckets(limiter, "key-1");
 * console.assert(buckets[0].available === 10 && buckets[0].capacity === 10);
 * ```
 */
export async function readBuckets(limiter: RateLimiter, entityId: string): Promise<BucketsView> {
  const { nowMs, buckets } = await readEntityBuckets(limiter, { entityId });
  return {
    now: nowMs,
    buckets: buckets.flatMap((b) =>
      b.available === undefined || b.capacity === undefined ? [] : [{
        resource: b.resource,
        limit: b.limit,
        available: b.available,
        capacity: b.capacity,
        msUntilFull: b.msUntilFull,
        ...(b.fromLastWrite ? { fromLastWrite: true as const } : {}),
      }]
    ),
  };
}

/**
 * The resource of an edit or a delete: a resource name, or `*` for the entity-wide limits.
 *
 * @example
 * ```ts
 * import { resourceOfEdit } from "./entity.ts";
 * console.assert(resourceOfEdit("*") === undefined && resourceOfEdit("gpt-4") === "gpt-4");
 * ```
 */
export function resourceOfEdit(resource: unknown): string | undefined {
  return resource === undefined || resource === ALL_RESOURCES
    ? undefined
    : validateResource(resource);
}

/**
 * Stores an entity's limits for a resource (or for every resource: `resource` is `*`) through
 * `setLimits` (audited), then reads them back. Bad input (a missing `resource` among it) throws
 * `ValidationError` before anything is written.
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { writeLimits } from "./entity.ts";
 * const limiter = createTestLimiter();
 * const json = { name: "rpm", capacity: 5, refillAmount: 5, refillPeriodSeconds: 60 };
 * const stored = await writeLimits(limiter, "key-1", { resource: "api", limits: [json] });
 * console.assert(stored.resource === "api" && stored.limits?.[0].capacity === 5);
 * ```
 */
export async function writeLimits(
  limiter: RateLimiter,
  entityId: string,
  body: unknown,
): Promise<LimitsWriteResult> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ValidationError("body", body, "must be an object { resource, limits }");
  }
  const { resource: given, limits: json, ...rest } = body as Record<string, unknown>;
  for (const key of Object.keys(rest)) {
    throw new ValidationError(key, rest[key], "is not a field of a limits edit (resource, limits)");
  }
  if (given === undefined) {
    throw new ValidationError("resource", given, 'must be given: a resource, or "*"');
  }
  const resource = resourceOfEdit(given);
  const limits = limitsFromJson(json);
  await limiter.setLimits({ entityId, resource, limits });
  return await readStored(limiter, entityId, resource);
}

/**
 * Deletes an entity's limits for a resource (or the entity-wide ones, `*`), then reads back.
 *
 * @example
 * ```ts ignore
 * await deleteLimits(limiter, "key-1", "gpt-4");
 * ```
 */
export async function deleteLimits(
  limiter: RateLimiter,
  entityId: string,
  resource: unknown,
): Promise<LimitsWriteResult> {
  if (resource === undefined) {
    throw new ValidationError("resource", resource, 'must be given: a resource, or "*"');
  }
  const r = resourceOfEdit(resource);
  await limiter.deleteLimits({ entityId, resource: r });
  return await readStored(limiter, entityId, r);
}

async function readStored(
  limiter: RateLimiter,
  entityId: string,
  resource: string | undefined,
): Promise<LimitsWriteResult> {
  const limits = await limiter.getLimits({ entityId, resource });
  return {
    resource: resource ?? ALL_RESOURCES,
    limits: limits.length === 0 ? null : limits.map(limitView),
  };
}

/**
 * An entity's usage per resource, hourly (48 hours) or daily (30 days), zero-filled.
 *
 * @example
 * ```ts ignore
 * const { series } = await readUsage(limiter, "key-1", "hourly", undefined, Date.now());
 * ```
 */
export async function readUsage(
  limiter: RateLimiter,
  entityId: string,
  window: unknown,
  resource: string | undefined,
  nowMs: number,
): Promise<UsageView> {
  const w = window ?? "hourly";
  if (w !== "hourly" && w !== "daily") {
    throw new ValidationError("window", w, 'must be "hourly" or "daily"');
  }
  const chart = w as ChartWindow;
  const snapshots = await limiter.getUsageSnapshots({
    entityId,
    window: chart,
    start: firstWindowStart(chart, nowMs),
    ...(resource === undefined ? {} : { resource }),
  });
  const byResource = new Map<string, SeriesBuilder>();
  for (const s of snapshots) {
    let series = byResource.get(s.resource);
    if (series === undefined) byResource.set(s.resource, series = new SeriesBuilder(chart, nowMs));
    series.add(s);
  }
  return {
    window: chart,
    series: [...byResource.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([r, series]) => ({ resource: r, points: series.points() })),
  };
}

/** One line of an audit event's change. */
function auditSummary(e: AuditEvent): string {
  const show = (v: unknown): string => {
    if (v === undefined) return "none";
    const limits = (v as { limits?: unknown })?.limits;
    if (Array.isArray(limits)) {
      return limits.map((l) => {
        const { name, capacity, refillAmount, refillPeriodSeconds } = l as Record<string, unknown>;
        return refillAmount === undefined
          ? `${name}: ${capacity}`
          : `${name}: ${refillAmount} per ${refillPeriodSeconds} s` +
            (capacity !== refillAmount ? `, burst ${capacity}` : "");
      }).join("; ") || "none";
    }
    const json = JSON.stringify(v);
    return json.length > 120 ? `${json.slice(0, 117)}...` : json;
  };
  const on = e.resource === undefined ? "" : ` (${e.resource})`;
  return `${e.action}${on}: ${show(e.before)} → ${show(e.after)}`;
}

/**
 * A page of an entity's audit events, newest first. `available: false` when the table refuses
 * the audit query for its schema (a table made without the audit index).
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { readAudit } from "./entity.ts";
 * const limiter = createTestLimiter();
 * await limiter.createEntity({ entityId: "key-1" });
 * const page = await readAudit(limiter, "key-1", undefined);
 * console.assert(page.available && page.events[0].action === "entity.create");
 * ```
 */
export async function readAudit(
  limiter: RateLimiter,
  entityId: string,
  cursor: string | undefined,
): Promise<AuditView> {
  try {
    const page = await limiter.getAuditEvents({ entityId, cursor, limit: AUDIT_PAGE });
    return {
      available: true,
      events: page.events.map((e) => ({
        at: e.at,
        principal: e.principal,
        action: e.action,
        scope: e.scope.kind === "entity"
          ? `entity ${e.scope.entityId}`
          : e.scope.kind === "resource"
          ? `resource ${e.scope.resource}`
          : "system",
        summary: auditSummary(e),
      })),
      ...(page.cursor === undefined ? {} : { cursor: page.cursor }),
    };
  } catch (err) {
    if (
      err instanceof ConfigurationError &&
      (err.kind === "table-schema" || err.kind === "invalid-request" ||
        err.kind === "schema-outdated")
    ) return { available: false, events: [] };
    throw err;
  }
}
