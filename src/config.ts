/**
 * Which buckets a call writes, and with which limits: the entity's metadata (its parent and
 * cascade flag), its stored limits, and the resource's and the system's default limits (with the
 * resource's controls), cached for `limitsCacheTtlMs`. Stored limits resolve from the most
 * specific level: entity+resource, entity-wide, resource default, system default; then the call's.
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
import { ValidationError } from "./errors.ts";
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
  /** Told of each background refresh that failed (the stale value keeps serving). */
  onRefreshFailed?: (resource: string, parts: string[], error: unknown) => void;
}

/**
 * The three cached parts of a call's config: the entity's metadata, its stored limits for the
 * resource, and the resource's part of the system partition (its defaults, the system defaults,
 * its controls), shared by every entity.
 */
type Part = "meta" | "limits" | "defaults";
const PARTS: readonly Part[] = ["meta", "limits", "defaults"];
/** What one config read returned, by part. */
type Loaded = Record<Part, EntityConfig>;
/** Prefix of the resource parts' cache keys (`*` is in no entity id, so no entity's key has it). */
const RESOURCE_KEY = "*#";
/**
 * The cache keys of an entity's metadata (any resource), of its limits for `resource`, and of
 * the resource's defaults.
 */
const cacheKeys = (entityId: string, resource: string): Record<Part, string> => ({
  meta: `${entityId}#`,
  limits: `${entityId}#${resource}`,
  defaults: `${RESOURCE_KEY}${resource}`,
});

/** The controls that bear on a call, as cached: see `src/engine/gate.ts`. */
export interface CallControls {
  /** The entity, when it exists. */
  entity?: Entity;
  /** Its parent, when it has one that exists. */
  parent?: Entity;
  /** The resource's controls. */
  resource?: ResourceControls;
  /** The controls of each further resource of the call (`also`), in order. */
  also?: { resource: string; controls?: ResourceControls }[];
}

/** Resolves the targets of a call from cached entity metadata and stored limits. */
export class ConfigResolver {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: TtlCache<string, EntityConfig>;
  readonly #onRefreshFailed: ConfigResolverOptions["onRefreshFailed"];
  /**
   * Config reads under way, by cache key: shared by concurrent cold calls and background
   * refreshes, so a key has at most one read in flight. A read overtaken by `forget` is
   * unregistered here, and its result is not cached.
   */
  readonly #loads = new Map<string, Promise<Loaded>>();

  constructor(options: ConfigResolverOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#onRefreshFailed = options.onRefreshFailed;
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

  /**
   * Forgets the cached defaults (and controls) of a resource, or of every resource (the system
   * defaults changed), and any read of them under way.
   */
  forgetResource(resource?: string): void {
    const mine = (k: string) =>
      resource === undefined ? k.startsWith(RESOURCE_KEY) : k === `${RESOURCE_KEY}${resource}`;
    this.#config.deleteWhere(mine);
    for (const key of [...this.#loads.keys()]) if (mine(key)) this.#loads.delete(key);
  }

  /** Forgets an entity's cached metadata only (it was just created). */
  forgetMeta(entityId: string): void {
    this.#config.delete(`${entityId}#`);
    this.#loads.delete(`${entityId}#`);
  }

  /**
   * The buckets to write for a call: the entity's, and its parent's when cascading. Throws
   * `ValidationError` when no limits resolve for one of them (none stored at any level, none
   * passed).
   */
  async resolveTargets(
    req: ValidRequest,
    deadline: number,
    operation = "acquire",
    atMs?: bigint,
  ): Promise<Target[]> {
    const { targets, noLimits } = await this.resolve(req, deadline, operation, atMs);
    if (noLimits) throw noLimits;
    return targets;
  }

  /**
   * The buckets to write for a call, and the controls that bear on it: the entity's metadata and
   * the resource's controls (one read, cached), and the parent's metadata when it has one (with
   * the parent's stored limits when the call cascades and uses them). With `also`, the same for
   * each further resource (read in parallel; the metadata is shared): the targets come resource
   * by resource, the primary's first, each the entity's then the parent's. A scheduled limit
   * comes with the parameters in force at `atMs` (the call's time; default: the writer's clock
   * now), and so does its bucket's spec.
   */
  async resolve(
    req: ValidRequest,
    deadline: number,
    operation = "acquire",
    atMs?: bigint,
  ): Promise<{ targets: Target[]; controls: CallControls; noLimits?: ValidationError }> {
    const resources = [req.resource, ...(req.also ?? [])];
    const parts = await Promise.all(
      resources.map((r) => this.#resolveResource(req, r, deadline, operation, atMs)),
    );
    const [first, ...rest] = parts;
    const controls: CallControls = rest.length === 0 ? first.controls : {
      ...first.controls,
      also: rest.map((p, i) => ({ resource: resources[i + 1], controls: p.controls.resource })),
    };
    const missing = parts.find((p) => p.noLimits)?.noLimits;
    return {
      targets: parts.flatMap((p) => p.targets),
      controls,
      ...(missing ? { noLimits: missing } : {}),
    };
  }

  /** {@link resolve} for one resource of the call. */
  async #resolveResource(
    req: ValidRequest,
    resource: string,
    deadline: number,
    operation: string,
    atMs: bigint | undefined,
  ): Promise<{ targets: Target[]; controls: CallControls; noLimits?: ValidationError }> {
    const useStored = req.useStoredLimits;
    // The entity's metadata and the resource's part (defaults and controls) on every call: the
    // controls bear on it (cached, so a warm call reads nothing).
    const own = await this.#loadConfig(
      req.entityId,
      resource,
      { meta: true, limits: useStored, defaults: true },
      deadline,
      operation,
    );
    const cascade = req.cascade ?? own.entity?.cascade ?? false;
    const parentId = own.entity?.parentId;
    // A parent's metadata always (a disabled parent switches its children off); its stored limits
    // when the call cascades and uses them (the resource's part is the one read for the entity).
    const parent = parentId === undefined ? undefined : await this.#loadConfig(
      parentId,
      resource,
      { meta: true, limits: useStored && cascade, defaults: false },
      deadline,
      operation,
    );
    const nowMs = Number(atMs ?? this.#writer.now());
    const shared = {
      resourceDefaults: own.resourceDefaults,
      systemDefaults: own.systemDefaults,
    };
    const targets = [storedTarget(req.entityId, resource, req, useStored ? own : {}, nowMs)];
    // Reported, not thrown: a disabled or bypassed entity says so first (src/engine/gate.ts).
    let missing = targets[0].limits.length === 0
      ? noLimits(resource, undefined, req.entityId)
      : undefined;
    if (cascade && parentId !== undefined) {
      const cfg = useStored ? { ...parent, ...shared } : {};
      const target = storedTarget(parentId, resource, req, cfg, nowMs);
      if (target.limits.length === 0) missing ??= noLimits(resource, req.entityId, parentId);
      targets.push(target);
    }
    return {
      targets,
      controls: { entity: own.entity, parent: parent?.entity, resource: own.resourceControls },
      ...(missing ? { noLimits: missing } : {}),
    };
  }

  /**
   * The wanted parts of an entity's config: from the cache when every part is there (stale
   * parts are refreshed in the background), else read inline, stale parts along in the same read
   * (those not already being refreshed).
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
        this.#read(entityId, resource, stale, deadline, operation)
          .catch((err) => this.#onRefreshFailed?.(resource, stale, err));
      }
      return cached;
    }
    const missing = hits.filter((h) => !h.hit).map((h) => h.part);
    // Stale parts come along, unless a refresh of them is already under way: their stale value
    // serves meanwhile (a shared part, such as a resource's defaults, may be refreshing for
    // another entity).
    const refresh = stale.filter((p) => !this.#loads.has(key[p]));
    const read = await this.#read(
      entityId,
      resource,
      [...missing, ...refresh],
      deadline,
      operation,
    );
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
        defaults: unread.includes("defaults"),
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
          defaults: {
            resourceDefaults: cfg.resourceDefaults,
            systemDefaults: cfg.systemDefaults,
            resourceControls: cfg.resourceControls,
          },
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
 * The target of one entity's bucket for `resource`: its stored limits (the resource's, else the entity-wide ones,
 * else the resource's defaults, else the system's, else the call's), and a shard picked at random
 * of the layout in force at `nowMs` when the entity's own stored limits are split into shards
 * (defaults carry no shard count: their buckets are one item). A scheduled limit has the
 * parameters in force at `nowMs` (see docs/design.md, "Schedules").
 */
function storedTarget(
  entityId: string,
  resource: string,
  req: ValidRequest,
  cfg: EntityConfig,
  nowMs: number,
): Target {
  const own = cfg.resourceLimits !== undefined;
  if (!own && cfg.defaultLimits === undefined) {
    const limits = cfg.resourceDefaults ?? cfg.systemDefaults ?? req.limits;
    return makeTarget(entityId, resource, limits.map((l) => l.inForceAt(nowMs)));
  }
  const limits = (cfg.resourceLimits ?? cfg.defaultLimits)!.map((l) => l.inForceAt(nowMs));
  // Stored limits carry their shard count (one item when none is stored), which may double.
  const shards = layoutAt(own ? cfg.resourceShards : cfg.defaultShards, nowMs);
  return makeTarget(entityId, resource, limits, {
    resource: resource,
    index: pickShard(shards.count)!,
    count: shards.count,
    sinceMs: shards.sinceMs === undefined ? undefined : BigInt(shards.sinceMs),
    untilMs: shards.untilMs === undefined ? undefined : BigInt(shards.untilMs),
    source: own ? resource : undefined,
    whole: limits,
  });
}

/**
 * The error of a call for which no limits resolve: none passed, none stored for `entityId` (the
 * call's entity, or the parent of `childOf`) at any level.
 */
function noLimits(resource: string, childOf: string | undefined, entityId: string) {
  const whose = childOf === undefined
    ? `entity "${entityId}"`
    : `entity "${entityId}" (parent of "${childOf}", which cascades)`;
  return new ValidationError(
    "limits",
    undefined,
    `no stored limits exist for ${whose} and resource "${resource}" (neither its own, nor ` +
      "the resource's or the system's defaults), and none were passed",
  );
}
