/**
 * Entities and stored limits: the admin side of the limiter (create, read, list and delete
 * entities; store, read and delete limits; list a resource's buckets). The hot path never calls
 * it; every change clears the process's caches for the entity at once.
 *
 * @module
 */

import { type AdminCall, adminCaller } from "./admin_call.ts";
import type { Auditor } from "./audit.ts";
import { type AuditEventsPage, getAuditEvents, type GetAuditEventsOptions } from "./audit_read.ts";
import * as math from "./bucket.ts";
import type { Backend } from "./backend.ts";
import type { ConfigResolver } from "./config.ts";
import { type Entity, ShardsChanged, type StoredLimits } from "./entities.ts";
import { checkShards, scheduleChange } from "./engine/shards.ts";
import { ValidationError } from "./errors.ts";
import type { BucketWriter } from "./engine/writer.ts";
import type { Limit } from "./limit.ts";
import type { CreateEntityOptions, ResourceBucket } from "./options.ts";
import { validateLimits } from "./request.ts";
import {
  checkBoolean,
  checkObject,
  validateEntityId,
  validateMetadata,
  validateResource,
} from "./validate.ts";

/**
 * How many times a change of stored limits is decided again when the item changed meanwhile (a
 * concurrent admin change, or auto-doubling of its shards): each round, one of the racing
 * changes succeeds.
 */
const MAX_ATTEMPTS = 50;

/** Options of {@link EntityAdmin}. */
export interface EntityAdminOptions {
  backend: Backend;
  writer: BucketWriter;
  config: ConfigResolver;
  clock: () => number;
  ready: (deadline: number) => Promise<number>;
  timeoutMs: number;
  /** How long after a change of the shard count the new count takes over, ms. */
  switchDelayMs: number;
  /** Makes the audit event of each change (written in the change's transaction). */
  auditor: Auditor;
}

/** Entities and their stored limits. */
export class EntityAdmin {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: ConfigResolver;
  readonly #clock: () => number;
  /** Runs one admin call: its deadline, retries and failure (src/admin_call.ts). */
  readonly #run: AdminCall;
  readonly #switchDelayMs: number;
  readonly #auditor: Auditor;

  constructor(options: EntityAdminOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = options.config;
    this.#clock = options.clock;
    this.#run = adminCaller(options.writer, options.ready, options.timeoutMs);
    this.#switchDelayMs = options.switchDelayMs;
    this.#auditor = options.auditor;
  }

  async createEntity(options: CreateEntityOptions): Promise<Entity> {
    checkObject("options", options);
    const entityId = validateEntityId(options.entityId);
    const parentId = options.parentId === undefined
      ? undefined
      : validateEntityId(options.parentId, "parentId");
    if (parentId === entityId) {
      throw new ValidationError("parentId", parentId, "must differ from entityId");
    }
    if (
      options.name !== undefined && (typeof options.name !== "string" || options.name.length > 1024)
    ) {
      throw new ValidationError(
        "name",
        options.name,
        "must be a string of at most 1024 characters",
      );
    }
    checkBoolean("cascade", options.cascade, true);
    const metadata = validateMetadata(options.metadata);
    const entity: Entity = {
      entityId,
      cascade: options.cascade ?? false,
      metadata,
      createdAt: new Date(this.#clock()).toISOString(),
    };
    if (options.name !== undefined) entity.name = options.name;
    if (parentId !== undefined) entity.parentId = parentId;
    const audit = await this.#auditor.record({
      action: "entity.create",
      scope: { kind: "entity", entityId },
      after: entity,
    });
    await this.#run(
      "createEntity",
      (signal) => this.#backend.entities.create(entity, signal, audit),
    );
    this.#config.forgetMeta(entityId);
    return entity;
  }

  async getEntity(entityId: string): Promise<Entity | undefined> {
    validateEntityId(entityId);
    return await this.#run("getEntity", (signal) => this.#backend.entities.get(entityId, signal));
  }

  async listChildren(parentId: string): Promise<Entity[]> {
    validateEntityId(parentId, "parentId");
    return await this.#run(
      "listChildren",
      (signal) => this.#backend.entities.children(parentId, signal),
    );
  }

  async deleteEntity(entityId: string): Promise<void> {
    validateEntityId(entityId);
    const children = await this.listChildren(entityId);
    if (children.length > 0) {
      const some = children.slice(0, 3).map((c) => c.entityId).join(", ");
      throw new ValidationError(
        "entityId",
        entityId,
        `has ${children.length} children (${some}${
          children.length > 3 ? ", ..." : ""
        }); delete them first`,
      );
    }
    const before = await this.getEntity(entityId);
    const audit = await this.#auditor.record({
      action: "entity.delete",
      scope: { kind: "entity", entityId },
      before,
    });
    await this.#run(
      "deleteEntity",
      (signal) => this.#backend.entities.deleteAll(entityId, signal, audit),
      60_000,
    );
    this.#forget(entityId);
  }

  /**
   * Stores limits, with their shard count when given (kept as stored otherwise). A changed count
   * takes over `switchDelayMs` from now, the current layout serving until then: see
   * docs/hot-keys.md, "Shards".
   */
  async setLimits(
    options: { entityId: string; resource?: string; limits: Limit[]; shards?: number },
  ): Promise<void> {
    const { entityId, resource } = validateLimitTarget(options);
    const limits = validateLimits(options.limits, false);
    if (options.shards !== undefined) checkShards("shards", options.shards, limits);
    for (let attempt = 0;; attempt++) {
      const stored = await this.#run(
        "setLimits",
        (signal) => this.#backend.entities.getLimits(entityId, resource, signal),
      );
      const before = stored?.shards;
      const count = options.shards ?? before?.count;
      // The stored count (and the one it replaces, while pending) must still suit the limits.
      if (count !== undefined) checkShards("shards", count, limits);
      if (before?.prev) checkShards("shards", before.prev.count, limits);
      const shards = count === undefined
        ? undefined
        : count === (before?.count ?? 1)
        ? before ?? { count }
        : scheduleChange(
          "shards",
          before,
          count,
          Number(this.#writer.now()),
          this.#switchDelayMs,
        );
      const audit = await this.#auditor.record({
        action: "limits.set",
        scope: { kind: "entity", entityId },
        resource: resource ?? "*",
        before: stored && storedJson(stored),
        after: storedJson({ limits, shards }),
        replaces: stored?.auditSk ?? null,
      });
      const done = await this.#run(
        "setLimits",
        (signal) =>
          this.#backend.entities.putLimits(
            entityId,
            resource,
            limits,
            signal,
            shards,
            before?.count ?? 1,
            audit,
          )
            .then(() => true, (err) => {
              // Doubled meanwhile by a process that saw throttling: decide again on what is stored.
              if (err instanceof ShardsChanged && attempt < MAX_ATTEMPTS) return false;
              throw err;
            }),
      );
      if (done) break;
    }
    this.#forget(entityId);
  }

  async getLimits(options: { entityId: string; resource?: string }): Promise<Limit[]> {
    return (await this.getStoredLimits(options))?.limits ?? [];
  }

  /** Stored limits with their shard count, or `undefined`. */
  async getStoredLimits(
    options: { entityId: string; resource?: string },
  ): Promise<StoredLimits | undefined> {
    const { entityId, resource } = validateLimitTarget(options);
    return await this.#run(
      "getLimits",
      (signal) => this.#backend.entities.getLimits(entityId, resource, signal),
    );
  }

  async deleteLimits(options: { entityId: string; resource?: string }): Promise<void> {
    const { entityId, resource } = validateLimitTarget(options);
    for (let attempt = 0;; attempt++) {
      const stored = await this.getStoredLimits({ entityId, resource });
      const audit = await this.#auditor.record({
        action: "limits.delete",
        scope: { kind: "entity", entityId },
        resource: resource ?? "*",
        before: stored && storedJson(stored),
        replaces: stored?.auditSk ?? null,
      });
      const done = await this.#run(
        "deleteLimits",
        (signal) =>
          this.#backend.entities.deleteLimits(entityId, resource, signal, audit).then(
            () => true,
            (err) => {
              // Changed meanwhile by another admin: record what is stored now.
              if (err instanceof ShardsChanged && attempt < MAX_ATTEMPTS) return false;
              throw err;
            },
          ),
      );
      if (done) break;
    }
    this.#forget(entityId);
  }

  async listResourceBuckets(
    options: { resource: string; limit?: number },
  ): Promise<ResourceBucket[]> {
    const resource = validateResource(options?.resource);
    const limit = options.limit;
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1)) {
      throw new ValidationError("limit", limit, "must be a whole number of buckets, at least 1");
    }
    const nowMs = this.#writer.now();
    const found = await this.#run(
      "listResourceBuckets",
      (signal) => this.#backend.buckets.resourceBuckets(resource, signal, limit),
      30_000,
    );
    return found.map(({ entityId, bucket }) => {
      const available: Record<string, number> = {};
      const capacity: Record<string, number> = {};
      for (const [name, st] of bucket.limits) {
        const spec = st.key === undefined ? undefined : math.parseSpecKey(st.key);
        if (!spec) continue;
        available[name] = Number(math.floorDiv(math.availableMilli(spec, st.tat, nowMs), 1000n));
        capacity[name] = Number(spec.capacityMilli) / 1000;
      }
      return { entityId, resource, available, capacity };
    });
  }

  /** Audit events, newest first, a page at a time (src/audit_read.ts). */
  auditEvents(options?: GetAuditEventsOptions): Promise<AuditEventsPage> {
    return getAuditEvents(
      options,
      (query) =>
        this.#run("getAuditEvents", (signal) => this.#backend.entities.auditEvents(query, signal)),
    );
  }

  /** Runs a storage call of the audit trail itself (its settings) with the admin's deadline. */
  auditCall<T>(operation: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return this.#run(operation, fn);
  }

  #forget(entityId: string): void {
    this.#config.forget(entityId);
    this.#writer.knowledge.forget(entityId);
  }
}

function validateLimitTarget(options: { entityId: string; resource?: string }): {
  entityId: string;
  resource?: string;
} {
  checkObject("options", options);
  return {
    entityId: validateEntityId(options.entityId),
    resource: options.resource === undefined ? undefined : validateResource(options.resource),
  };
}

/** Stored limits as an audit value: the limits, and the shard count when not one. */
export function storedJson(stored: StoredLimits): { limits: unknown[]; shards?: number } {
  const limits = stored.limits.map((l) => l.toJSON());
  const count = stored.shards?.count ?? 1;
  return count === 1 ? { limits } : { limits, shards: count };
}
