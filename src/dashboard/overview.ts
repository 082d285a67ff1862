/**
 * The overview's and the entity tree's reads: entities from the entity index (GSI3, paged, at
 * most {@link MAX_OVERVIEW_ENTITIES} per answer), their usage snapshots summed into hourly and
 * daily series, the entities refused most, and the buckets closest to their limits (from the
 * resource index). docs/dashboard.md says what each costs.
 *
 * @module
 */

import type { Entity } from "../entity_items.ts";
import type { RateLimiter } from "../limiter.ts";
import type { OverviewView, TreeNode, TreeView } from "./api_types.ts";
import { firstWindowStart, refusedOf, SeriesBuilder } from "./series.ts";

/**
 * Entities one overview reads at most (their snapshots: two Queries each). A table with more
 * gets `truncated: true`; it would want a rollup the aggregator keeps (see docs/dashboard.md).
 */
export const MAX_OVERVIEW_ENTITIES = 500;
/** Entities one tree answer lists at most. */
export const MAX_TREE_ENTITIES = 2000;
/** Snapshot reads in flight at once. */
const PARALLEL_READS = 8;
/** Entries of `mostRefused` and `closeToLimit`. */
const TOP = 10;

/** Buckets read per resource for "close to the limit": the first of the resource index, by id. */
export const MAX_CLOSE_BUCKETS = 1_000;
const DAY = 86_400_000;

/**
 * Up to `max` entities from the entity index, by id; `truncated` when more exist.
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { listSomeEntities } from "./overview.ts";
 * const limiter = createTestLimiter();
 * for (const id of ["a", "b", "c"]) await limiter.createEntity({ entityId: id });
 * const { entities, truncated } = await listSomeEntities(limiter, 2);
 * console.assert(entities.length === 2 && truncated);
 * ```
 */
export async function listSomeEntities(
  limiter: RateLimiter,
  max: number,
): Promise<{ entities: Entity[]; truncated: boolean }> {
  const entities: Entity[] = [];
  let cursor: string | undefined;
  do {
    const page = await limiter.listEntities({
      limit: Math.min(1000, max - entities.length + 1),
      cursor,
    });
    entities.push(...page.entities);
    cursor = page.cursor;
  } while (cursor !== undefined && entities.length <= max);
  const truncated = entities.length > max || cursor !== undefined;
  return { entities: entities.slice(0, max), truncated };
}

/** Runs `fn` on every item, at most `parallel` at once. */
async function eachLimited<T>(
  items: readonly T[],
  parallel: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}

/**
 * Whether an entity's usage is already counted on its parent: a key that cascades by default
 * writes each request to its own bucket and to its project's, so the totals leave it out (a call
 * that overrides `cascade` is counted as its key says).
 */
function countedOnParent(entity: Entity): boolean {
  return entity.parentId !== undefined && entity.cascade;
}

/**
 * The overview at `nowMs`: see {@link OverviewView}.
 *
 * @example
 * ```ts ignore
 * const view = await readOverview(limiter, Date.now());
 * ```
 */
export async function readOverview(limiter: RateLimiter, nowMs: number): Promise<OverviewView> {
  const { entities, truncated } = await listSomeEntities(limiter, MAX_OVERVIEW_ENTITIES);
  const hourly = new SeriesBuilder("hourly", nowMs);
  const daily = new SeriesBuilder("daily", nowMs);
  const refusals: OverviewView["mostRefused"] = [];
  const dayAgo = nowMs - DAY;
  // Resources with traffic, beside those with default limits, for the buckets close to a limit.
  const resources = new Set<string>();
  await eachLimited(entities, PARALLEL_READS, async (entity) => {
    const [hours, days] = await Promise.all([
      limiter.getUsageSnapshots({
        entityId: entity.entityId,
        window: "hourly",
        start: firstWindowStart("hourly", nowMs),
      }),
      limiter.getUsageSnapshots({
        entityId: entity.entityId,
        window: "daily",
        start: firstWindowStart("daily", nowMs),
      }),
    ]);
    const counted = !countedOnParent(entity);
    let refused = 0;
    let requests = 0;
    for (const s of hours) {
      resources.add(s.resource);
      if (counted) hourly.add(s);
      else hourly.addRefused(s);
      if (Date.parse(s.windowStart) > dayAgo) { // the 24 hours that began in the last day
        refused += refusedOf(s);
        requests += s.requests;
      }
    }
    if (counted) { for (const s of days) daily.add(s); }
    if (refused > 0) refusals.push({ entityId: entity.entityId, refused, requests });
  });
  refusals.sort((a, b) => b.refused - a.refused || (a.entityId < b.entityId ? -1 : 1));
  const close = await closeToLimit(limiter, resources);
  return {
    generatedAt: new Date(nowMs).toISOString(),
    hourly: hourly.points(),
    daily: daily.points(),
    mostRefused: refusals.slice(0, TOP),
    closeToLimit: close.buckets,
    entitiesScanned: entities.length,
    truncated: truncated || close.truncated,
  };
}

/**
 * The buckets with the smallest share of their capacity available, from the resource index
 * (GSI2, filled by the aggregator) of each resource with default limits or with usage in the
 * snapshots read (`seen`): the first {@link MAX_CLOSE_BUCKETS} of each (`truncated` when a
 * resource has more).
 */
async function closeToLimit(
  limiter: RateLimiter,
  seen: ReadonlySet<string>,
): Promise<{ buckets: OverviewView["closeToLimit"]; truncated: boolean }> {
  const out: (OverviewView["closeToLimit"][number] & { share: number })[] = [];
  const resources = new Set([...await limiter.listResources(), ...seen]);
  let truncated = false;
  for (const resource of [...resources].sort()) {
    const read = await limiter.listResourceBuckets({ resource, limit: MAX_CLOSE_BUCKETS + 1 });
    if (read.length > MAX_CLOSE_BUCKETS) truncated = true;
    for (const bucket of read.slice(0, MAX_CLOSE_BUCKETS)) {
      for (const [limit, capacity] of Object.entries(bucket.capacity)) {
        const available = bucket.available[limit];
        if (available === undefined || !(capacity > 0)) continue;
        out.push({
          entityId: bucket.entityId,
          resource,
          limit,
          available,
          capacity,
          share: available / capacity,
        });
      }
    }
  }
  out.sort((a, b) => a.share - b.share || (a.entityId < b.entityId ? -1 : 1));
  return { buckets: out.slice(0, TOP).map(({ share: _, ...rest }) => rest), truncated };
}

/**
 * The entity tree: projects (entities with no parent) with their keys, by id. With `search`, only
 * the entities whose id or name holds it (any case), with their project; a project that matches
 * keeps all its keys.
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "../testing/mod.ts";
 * import { readTree } from "./overview.ts";
 * const limiter = createTestLimiter();
 * await limiter.createEntity({ entityId: "proj-1", name: "Production" });
 * await limiter.createEntity({ entityId: "key-a", parentId: "proj-1" });
 * await limiter.createEntity({ entityId: "key-b", parentId: "proj-1" });
 * const tree = await readTree(limiter, "KEY-B");
 * console.assert(tree.roots[0].entityId === "proj-1" && tree.roots[0].children.length === 1);
 * ```
 */
export async function readTree(limiter: RateLimiter, search = ""): Promise<TreeView> {
  const { entities, truncated } = await listSomeEntities(limiter, MAX_TREE_ENTITIES);
  const needle = search.trim().toLowerCase();
  const matches = (e: Entity) =>
    needle === "" || e.entityId.toLowerCase().includes(needle) ||
    (e.name ?? "").toLowerCase().includes(needle);
  const node = (e: Entity): TreeNode => ({
    entityId: e.entityId,
    ...(e.name === undefined ? {} : { name: e.name }),
    ...(e.disabled ? { disabled: true } : {}),
    children: [],
  });
  const roots = new Map<string, { node: TreeNode; matched: boolean }>();
  for (const e of entities) {
    if (e.parentId === undefined) roots.set(e.entityId, { node: node(e), matched: matches(e) });
  }
  for (const e of entities) {
    if (e.parentId === undefined) continue;
    let root = roots.get(e.parentId);
    if (root === undefined) {
      // The parent lies past the cap: shown by its id alone.
      root = {
        node: { entityId: e.parentId, children: [] },
        matched: needle !== "" && e.parentId.toLowerCase().includes(needle),
      };
      roots.set(e.parentId, root);
    }
    if (root.matched || matches(e)) root.node.children.push(node(e));
  }
  const shown = [...roots.values()]
    .filter((r) => r.matched || r.node.children.length > 0)
    .map((r) => r.node)
    .sort((a, b) => (a.entityId < b.entityId ? -1 : 1));
  return { roots: shown, truncated };
}
