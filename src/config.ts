/**
 * Which buckets a call writes, and with which limits: the entity's metadata (its parent and
 * cascade flag) and its stored limits, cached for `limitsCacheTtlMs` with one read per key in
 * flight.
 *
 * @module
 */

import type { Backend } from "./backend.ts";
import { TtlCache } from "./cache.ts";
import type { EntityConfig } from "./entities.ts";
import { makeTarget } from "./engine/plan.ts";
import type { Target, ValidRequest } from "./engine/types.ts";
import type { BucketWriter } from "./engine/writer.ts";

/** Options of {@link ConfigResolver}. */
export interface ConfigResolverOptions {
  backend: Backend;
  writer: BucketWriter;
  ttlMs: number;
  maxEntries: number;
}

/** Resolves the targets of a call from cached entity metadata and stored limits. */
export class ConfigResolver {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: TtlCache<string, { value: EntityConfig }>;
  /** Config reads under way, shared by concurrent cold calls. */
  readonly #configLoads = new Map<string, Promise<Map<string, EntityConfig>>>();

  constructor(options: ConfigResolverOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = new TtlCache(options.ttlMs, options.maxEntries);
  }

  /** Forgets an entity's cached metadata and limits. */
  forget(entityId: string): void {
    this.#config.deleteWhere((k) => k.startsWith(`${entityId}#`));
  }

  /** Forgets an entity's cached metadata only (it was just created). */
  forgetMeta(entityId: string): void {
    this.#config.delete(`${entityId}#`);
  }

  /** The buckets to write for a call: the entity's, and its parent's when cascading. */
  async resolveTargets(
    req: ValidRequest,
    deadline: number,
    operation = "acquire",
  ): Promise<Target[]> {
    const needMeta = req.cascade !== false;
    const useStored = req.useStoredLimits;
    let own: EntityConfig = {};
    if (needMeta || useStored) {
      own = await this.#loadConfig(
        req.entityId,
        req.resource,
        {
          meta: needMeta,
          limits: useStored,
        },
        deadline,
        operation,
      );
    }
    const cascade = req.cascade ?? own.entity?.cascade ?? false;
    const ids = [req.entityId];
    if (cascade && own.entity?.parentId !== undefined) ids.push(own.entity.parentId);
    const targets: Target[] = [];
    for (const [i, id] of ids.entries()) {
      const cfg = i === 0 ? own : useStored
        ? await this.#loadConfig(
          id,
          req.resource,
          { meta: false, limits: true },
          deadline,
          operation,
        )
        : {};
      const limits = useStored
        ? (cfg.resourceLimits ?? cfg.defaultLimits ?? req.limits)
        : req.limits;
      targets.push(makeTarget(id, req.resource, limits));
    }
    return targets;
  }

  async #loadConfig(
    entityId: string,
    resource: string,
    want: { meta: boolean; limits: boolean },
    deadline: number,
    operation: string,
  ): Promise<EntityConfig> {
    const metaKey = `${entityId}#`;
    const limitKey = `${entityId}#${resource}`;
    const meta = want.meta ? this.#config.get(metaKey) : { value: {} };
    const limits = want.limits ? this.#config.get(limitKey) : { value: {} };
    if (meta && limits) return { ...meta.value, ...limits.value };
    // Concurrent cold calls for the same entity share one read (no stampede on start-up).
    const flightKey = `${limitKey}|${want.meta && !meta}|${want.limits && !limits}`;
    let flight = this.#configLoads.get(flightKey);
    if (!flight) {
      flight = this.#writer.call(
        undefined,
        (signal) =>
          this.#backend.entities.loadConfig([entityId], resource, {
            meta: want.meta && !meta,
            limits: want.limits && !limits,
          }, signal),
        deadline,
        operation,
      ).finally(() => this.#configLoads.delete(flightKey));
      this.#configLoads.set(flightKey, flight);
    }
    const loaded = await flight;
    const cfg = loaded.get(entityId) ?? {};
    if (want.meta && !meta) this.#config.set(metaKey, { value: { entity: cfg.entity } });
    if (want.limits && !limits) {
      this.#config.set(limitKey, {
        value: { resourceLimits: cfg.resourceLimits, defaultLimits: cfg.defaultLimits },
      });
    }
    return { ...(meta?.value ?? {}), ...(limits?.value ?? {}), ...cfg };
  }
}
