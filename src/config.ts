/**
 * Which buckets a call writes, and with which limits: the entity's metadata (its parent and
 * cascade flag) and its stored limits, cached for `limitsCacheTtlMs`.
 *
 * Past its TTL an entry is served stale while one background read per key refreshes it, so a
 * busy entity never waits for a config read; past twice its TTL it is no longer served and the
 * call reads it inline. Times are real time (not the limiter's injected clock): the cache bounds
 * how old a read is, not where the buckets' time stands.
 *
 * @module
 */

import type { Backend } from "./backend.ts";
import { TtlCache } from "./cache.ts";
import type { Entity, EntityConfig, ResourceControls } from "./entities.ts";
import { makeTarget } from "./engine/plan.ts";
import { layoutAt, pickShard } from "./engine/shards.ts";
import type { Target, ValidRequest } from "./engine/types.ts";
import type { BucketWriter } from "./engine/writer.ts";

/** Options of {@link ConfigResolver}. */
export interface ConfigResolverOptions {
  backend: Backend;
  writer: BucketWriter;
  /** How long an entry is fresh, ms; it is served stale (and refreshed) for as long again. */
  ttlMs: number;
  maxEntries: number;
  /** Real-time clock of the cache, ms. @default Date.now */
  now?: () => number;
}

/**
 * The cached parts of a call's config: an entity's metadata (with its controls), its limits for a
 * resource, and the resource's controls (shared by every entity).
 */
type Part = "meta" | "limits" | "resource";
const PARTS: readonly Part[] = ["meta", "limits", "resource"];
/** What one config read returned, by part. */
type Loaded = Record<Part, EntityConfig>;
/**
 * The cache keys of an entity's metadata (any resource), of its limits for `resource`, and of the
 * resource's controls (`#` starts no entity id, so it is no entity's key).
 */
const cacheKeys = (entityId: string, resource: string): Record<Part, string> => ({
  meta: `${entityId}#`,
  limits: `${entityId}#${resource}`,
  resource: `#CONTROL#${resource}`,
});

/** The controls that bear on a call, as cached: see `src/engine/gate.ts`. */
export interface CallControls {
  /** The entity, when it exists. */
  entity?: Entity;
  /** Its parent, when it has one that exists. */
  parent?: Entity;
  /** The resource's controls. */
  resource?: ResourceControls;
}

/** Resolves the targets of a call from cached entity metadata and stored limits. */
export class ConfigResolver {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: TtlCache<string, EntityConfig>;
  /**
   * Config reads under way, by cache key: shared by concurrent cold calls and background
   * refreshes, so a key has at most one read in flight. A read overtaken by `forget` is
   * unregistered here, and its result is not cached.
   */
  readonly #loads = new Map<string, Promise<Loaded>>();

  constructor(options: ConfigResolverOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = new TtlCache(options.ttlMs, options.maxEntries, {
      now: options.now,
      staleMs: options.ttlMs,
    });
  }

  /** Forgets an entity's cached metadata and limits, and any read of them under way. */
  forget(entityId: string): void {
    const mine = (k: string) => k.startsWith(`${entityId}#`);
    this.#config.deleteWhere(mine);
    for (const key of [...this.#loads.keys()]) if (mine(key)) this.#loads.delete(key);
  }

  /** Forgets a resource's cached controls, and any read of them under way. */
  forgetResource(resource: string): void {
    const key = cacheKeys("", resource).resource;
    this.#config.delete(key);
    this.#loads.delete(key);
  }

  /** Forgets an entity's cached metadata only (it was just created). */
  forgetMeta(entityId: string): void {
    this.#config.delete(`${entityId}#`);
    this.#loads.delete(`${entityId}#`);
  }

  /** The buckets to write for a call: the entity's, and its parent's when cascading. */
  async resolveTargets(
    req: ValidRequest,
    deadline: number,
    operation = "acquire",
  ): Promise<Target[]> {
    return (await this.resolve(req, deadline, operation)).targets;
  }

  /**
   * The buckets to write for a call, and the controls that bear on it: the entity's metadata and
   * the resource's controls (one read, cached), and the parent's metadata when it has one (with
   * the parent's stored limits when the call cascades and uses them).
   */
  async resolve(
    req: ValidRequest,
    deadline: number,
    operation = "acquire",
  ): Promise<{ targets: Target[]; controls: CallControls }> {
    const useStored = req.useStoredLimits;
    const own = await this.#loadConfig(
      req.entityId,
      req.resource,
      { meta: true, limits: useStored, resource: true },
      deadline,
      operation,
    );
    const cascade = req.cascade ?? own.entity?.cascade ?? false;
    const parentId = own.entity?.parentId;
    const parent = parentId === undefined ? undefined : await this.#loadConfig(
      parentId,
      req.resource,
      { meta: true, limits: useStored && cascade, resource: false },
      deadline,
      operation,
    );
    const nowMs = Number(this.#writer.now());
    const targets = [storedTarget(req.entityId, req, useStored ? own : {}, nowMs)];
    if (cascade && parentId !== undefined) {
      targets.push(storedTarget(parentId, req, useStored ? parent! : {}, nowMs));
    }
    return {
      targets,
      controls: { entity: own.entity, parent: parent?.entity, resource: own.resourceControls },
    };
  }

  /**
   * The wanted parts of an entity's config: from the cache when every part is there (stale
   * parts are refreshed in the background), else read inline, stale parts along in the same read.
   */
  async #loadConfig(
    entityId: string,
    resource: string,
    want: Record<Part, boolean>,
    deadline: number,
    operation: string,
  ): Promise<EntityConfig> {
    const key = cacheKeys(entityId, resource);
    const parts = PARTS.filter((p) => want[p]);
    const hits = parts.map((p) => ({ part: p, hit: this.#config.lookup(key[p]) }));
    const cached: EntityConfig = Object.assign({}, ...hits.map((h) => h.hit?.value ?? {}));
    const stale = hits.filter((h) => h.hit && !h.hit.fresh).map((h) => h.part);
    if (hits.every((h) => h.hit)) {
      if (stale.length > 0) {
        // Refreshed off the hot path; a failed refresh is retried at the next use.
        this.#read(entityId, resource, stale, deadline, operation).catch(() => {});
      }
      return cached;
    }
    const missing = hits.filter((h) => !h.hit).map((h) => h.part);
    const read = await this.#read(entityId, resource, [...missing, ...stale], deadline, operation);
    return { ...cached, ...read };
  }

  /**
   * Reads `parts` of an entity's config, joining the reads already under way for any of them and
   * starting one read for the rest.
   */
  async #read(
    entityId: string,
    resource: string,
    parts: Part[],
    deadline: number,
    operation: string,
  ): Promise<EntityConfig> {
    const key = cacheKeys(entityId, resource);
    const unread = parts.filter((p) => !this.#loads.has(key[p]));
    if (unread.length > 0) {
      const startedAt = this.#config.now();
      const wanted = {
        meta: unread.includes("meta"),
        limits: unread.includes("limits"),
        resource: unread.includes("resource"),
      };
      const load: Promise<Loaded> = this.#writer.call(
        undefined,
        (signal) => this.#backend.entities.loadConfig([entityId], resource, wanted, signal),
        deadline,
        operation,
      ).then((found) => {
        const cfg = found.get(entityId) ?? {};
        const got: Loaded = {
          meta: { entity: cfg.entity },
          limits: {
            resourceLimits: cfg.resourceLimits,
            defaultLimits: cfg.defaultLimits,
            resourceShards: cfg.resourceShards,
            defaultShards: cfg.defaultShards,
          },
          resource: { resourceControls: cfg.resourceControls ?? {} },
        };
        // Aged from the read's start: the value is at least that old.
        for (const p of unread) {
          if (this.#loads.get(key[p]) === load) this.#config.set(key[p], got[p], startedAt);
        }
        return got;
      }).finally(() => {
        for (const p of unread) if (this.#loads.get(key[p]) === load) this.#loads.delete(key[p]);
      });
      // Nobody may await a background refresh: its failure only leaves the cache as it was.
      load.catch(() => {});
      for (const p of unread) this.#loads.set(key[p], load);
    }
    // Each part from the read that covers it (a shared read may hold another resource's limits).
    const got = await Promise.all(parts.map(async (p) => (await this.#loads.get(key[p])!)[p]));
    return Object.assign({}, ...got);
  }
}

/**
 * The target of one entity's bucket: its stored limits (the resource's, else the entity-wide ones,
 * else the call's), and a shard picked at random of the layout in force at `nowMs` when the stored
 * limits are split into shards.
 */
function storedTarget(
  entityId: string,
  req: ValidRequest,
  cfg: EntityConfig,
  nowMs: number,
): Target {
  const own = cfg.resourceLimits !== undefined;
  const limits = cfg.resourceLimits ?? cfg.defaultLimits ?? req.limits;
  if (!own && cfg.defaultLimits === undefined) return makeTarget(entityId, req.resource, limits);
  // Stored limits carry their shard count (one item when none is stored), which may double.
  const shards = layoutAt(own ? cfg.resourceShards : cfg.defaultShards, nowMs);
  return makeTarget(entityId, req.resource, limits, {
    resource: req.resource,
    index: pickShard(shards.count)!,
    count: shards.count,
    sinceMs: shards.sinceMs === undefined ? undefined : BigInt(shards.sinceMs),
    untilMs: shards.untilMs === undefined ? undefined : BigInt(shards.untilMs),
    source: own ? req.resource : undefined,
    whole: limits,
  });
}
