/**
 * The in-memory backend ({@link InMemoryBackend}): entities, stored limits, buckets and the audit
 * trail in memory, with DynamoDB's semantics. Exported by `testing/mod.ts`.
 *
 * @module
 */

import { auditPageOf } from "../audit_query.ts";
import { type AuditRecord, auditSk } from "../audit_record.ts";
import type { Backend, BucketBackend, EntityBackend } from "../backend.ts";
import type { CatalogBackend } from "../entity_list.ts";
import { SCHEMA_VERSION } from "../keys.ts";
import type { StoredLimitsEntry } from "../defaults_store.ts";
import {
  type Entity,
  type EntityConfig,
  type ResourceControls,
  ShardsChanged,
  type StoredLimits,
} from "../entities.ts";
import { patchEntity } from "./controls.ts";
import { UsageCounts } from "./usage_counts.ts";
import { EntityExistsError, EntityNotFoundError, ValidationError } from "../errors.ts";
import type { Limit } from "../limit.ts";
import { KeySpace } from "../keyspace.ts";
import { memoryPing, type PingResult } from "../ping.ts";
import type { BucketWrite, StoredBucket, WriteOutcome } from "../repository.ts";
import type { AdminBucketChange, AdminOutcome } from "../bucket_items.ts";
import {
  adminItemHolds,
  applyAdminItem,
  applyWrite,
  type MemBucket,
  viewBucket,
  writeHolds,
} from "./memory_bucket.ts";

/**
 * State kept in memory: buckets, entities and stored limits. Limiters with different namespaces
 * on one backend each see their own state only ({@link InMemoryBackend.forNamespace}).
 *
 * @example
 * ```ts
 * import { InMemoryBackend } from "./mod.ts";
 * import { RateLimiter } from "../limiter.ts";
 * const backend = new InMemoryBackend();
 * const limiter = new RateLimiter({ tableName: "unit-test", backend });
 * const billing = new RateLimiter({ tableName: "unit-test", backend, namespace: "billing" });
 * await billing.createEntity({ entityId: "key-1" });
 * console.assert((await limiter.getEntity("key-1")) === undefined);
 * console.assert(backend.namespaces().join() === "billing");
 * await limiter.close();
 * await billing.close();
 * ```
 */
export class InMemoryBackend implements Backend {
  /** Bucket storage. */
  readonly buckets: BucketBackend;
  /** Entity storage. */
  readonly entities: EntityBackend;
  /** Schema version (always the current one) and the entity list, as GSI3 gives it. */
  readonly catalog: CatalogBackend;
  /** Every bucket write evaluated, for assertions in tests. */
  writes = 0;
  /** The audit events stored, oldest first (each with the change it records). */
  readonly auditLog: AuditRecord[] = [];
  readonly #buckets = new Map<string, MemBucket>();
  readonly #entities = new Map<string, Entity>();
  readonly #limits = new Map<string, StoredLimits>();
  /** Default limits by resource (`*`: the system defaults). */
  readonly #defaults = new Map<string, Limit[]>();
  /** The audit event sort key of each defaults item (by resource, `*` the system's). */
  readonly #defaultsAudit = new Map<string, string>();
  /** The namespace this view serves. */
  readonly #space: KeySpace = KeySpace.DEFAULT;
  /** Every namespace's view of the same backend, by name (shared by all views). */
  #views = new Map<string, InMemoryBackend>();
  /** Whether an admin change registered this view's namespace (as the table's registry). */
  #registered = false;

  /**
   * The same backend seen from a namespace: its own buckets, entities, limits and audit log
   * (`writes` and `auditLog` count that namespace's only).
   */
  forNamespace(space: KeySpace): InMemoryBackend {
    if (space.namespace === this.#space.namespace) return this;
    if (this.#views.size === 0) this.#views.set(this.#space.name, this);
    let view = this.#views.get(space.name);
    if (view === undefined) {
      view = new InMemoryBackend(space);
      view.#views = this.#views;
      this.#views.set(space.name, view);
    }
    return view;
  }

  /** The namespaces registered by an admin change, sorted (as `listNamespaces` on a table). */
  namespaces(): string[] {
    const views = this.#views.size === 0 ? [this as InMemoryBackend] : [...this.#views.values()];
    return views.filter((v) => v.#space.namespace !== undefined && v.#registered)
      .map((v) => v.#space.name).sort();
  }

  /** `RateLimiter.ping()` on this backend: healthy, latency 0 (nothing to reach). */
  ping(tableName: string): Promise<PingResult> {
    return Promise.resolve(memoryPing(tableName));
  }
  /** Top-ups' idempotency records: `{entityId}#{resource}#{key}` → expiry (epoch s). */
  readonly #markers = new Map<string, number>();
  /** Resource controls by resource (loaded with the defaults). */
  readonly #resourceControls = new Map<string, ResourceControls>();
  /** Bypassed and refused requests counted (DynamoDB keeps them in the usage snapshots). */
  readonly #usage = new UsageCounts();

  /**
   * A fresh, empty backend.
   * @param space The namespace this view serves. @default the default namespace
   */
  constructor(space: KeySpace = KeySpace.DEFAULT) {
    this.#space = space;
    this.catalog = {
      readVersion: () => Promise.resolve(SCHEMA_VERSION),
      listEntities: (query) => {
        // What GSI3 holds: each entity by id, with whether it has stored limits.
        const withLimits = new Set([...this.#limits.keys()].map((k) => splitKey(k)[0]));
        const ids = [...this.#entities.keys()].sort().filter((id) =>
          (query.after === undefined || id > query.after) &&
          (!query.withCustomLimits || withLimits.has(id))
        );
        const page = ids.slice(0, query.limit);
        return Promise.resolve({
          entities: page.map((id) => structuredClone(this.#entities.get(id)!)),
          more: ids.length > page.length,
        });
      },
    };
    this.buckets = {
      writeBucket: (w) =>
        Promise.resolve(this.#write([w])).then((r) =>
          r.ok ? { ok: true, item: r.items[0] } : r.olds[0]
        ),
      transactBuckets: (ws) =>
        Promise.resolve(this.#write(ws)).then((r) => r.ok ? { ok: true as const } : r),
      getBucket: (entityId, resource) => {
        const b = this.#buckets.get(bucketKey(entityId, resource));
        return Promise.resolve(b ? viewBucket(b) : undefined);
      },
      adminWrite: (change, _signal, audit) => Promise.resolve(this.#admin(change, audit)),
      raiseTtl: (entityId, resource, ttlSec) => {
        const b = this.#buckets.get(bucketKey(entityId, resource));
        if (b && (b.ttl === undefined || b.ttl < ttlSec)) b.ttl = ttlSec;
        return Promise.resolve();
      },
      resourceBuckets: (resource, _signal, limit = Infinity) => {
        const out: { entityId: string; bucket: StoredBucket }[] = [];
        for (const [key, b] of this.#buckets) {
          const [entityId, r] = splitKey(key);
          if (r === resource) out.push({ entityId, bucket: viewBucket(b) });
        }
        out.sort((a, b) => (a.entityId < b.entityId ? -1 : 1));
        return Promise.resolve(out.slice(0, limit));
      },
      createTable: () => Promise.resolve(),
    };
    this.entities = {
      create: async (entity, _signal, audit) => {
        await Promise.resolve();
        if (this.#entities.has(entity.entityId)) throw new EntityExistsError(entity.entityId);
        if (entity.parentId !== undefined) {
          const parent = this.#entities.get(entity.parentId);
          if (!parent) throw new EntityNotFoundError(entity.parentId);
          if (parent.parentId !== undefined) {
            throw new ValidationError(
              "parentId",
              entity.parentId,
              `must be a top-level entity, but it has parent ${parent.parentId}`,
            );
          }
        }
        this.#entities.set(entity.entityId, structuredClone(entity));
        this.#audit(audit);
        return Promise.resolve();
      },
      get: (id) => Promise.resolve(clone(this.#entities.get(id))),
      children: (parentId) =>
        Promise.resolve(
          [...this.#entities.values()].filter((e) => e.parentId === parentId)
            .map((e) => structuredClone(e))
            .sort((a, b) => (a.entityId < b.entityId ? -1 : 1)),
        ),
      deleteAll: (id, _signal, audit) => {
        this.#audit(audit);
        let n = this.#entities.delete(id) ? 1 : 0;
        for (
          const map of [this.#buckets, this.#limits, this.#markers] as Map<string, unknown>[]
        ) {
          for (const key of [...map.keys()]) {
            if (splitKey(key)[0] === id) {
              map.delete(key);
              n++;
            }
          }
        }
        return Promise.resolve(n);
      },
      putLimits: (id, resource, limits, _signal, shards, expectShards, audit) => {
        const key = bucketKey(id, resource ?? "*");
        const stored = this.#limits.get(key)?.shards?.count ?? 1;
        if (
          (expectShards !== undefined && stored !== expectShards) ||
          !replacesHeld(this.#limits.get(key), audit)
        ) {
          return Promise.reject(new ShardsChanged());
        }
        this.#limits.set(key, {
          limits: [...limits],
          shards: clone(shards),
          ...(audit ? { auditSk: auditSk(audit.atMs, audit.eventId) } : {}),
        });
        this.#audit(audit);
        return Promise.resolve();
      },
      getLimits: (id, resource) => {
        const l = this.#limits.get(bucketKey(id, resource ?? "*"));
        return Promise.resolve(
          l
            ? {
              limits: [...l.limits],
              shards: clone(l.shards),
              ...(l.auditSk ? { auditSk: l.auditSk } : {}),
            }
            : undefined,
        );
      },
      reshard: (id, resource, from, to, nowMs, _signal, audit) => {
        const l = this.#limits.get(bucketKey(id, resource ?? "*"));
        if (!l || (l.shards?.count ?? 1) !== from) return Promise.resolve(false);
        if (l.shards?.prev && (l.shards.sinceMs ?? 0) > nowMs) return Promise.resolve(false);
        l.shards = { ...to };
        this.#audit(audit);
        return Promise.resolve(true);
      },
      deleteLimits: (id, resource, _signal, audit) => {
        const key = bucketKey(id, resource ?? "*");
        if (!replacesHeld(this.#limits.get(key), audit)) {
          return Promise.reject(new ShardsChanged());
        }
        this.#limits.delete(key);
        this.#audit(audit);
        return Promise.resolve();
      },
      updateEntity: async (id, patch, _signal, audit) => {
        await Promise.resolve();
        this.#entities.set(id, patchEntity(this.#entities, id, patch));
        this.#audit(audit);
      },
      getResourceControls: (resource) =>
        Promise.resolve(clone(this.#resourceControls.get(resource))),
      putResourceControls: (resource, controls, _signal, audit) => {
        if (controls.disabled) this.#resourceControls.set(resource, { disabled: true });
        else this.#resourceControls.delete(resource);
        this.#audit(audit);
        return Promise.resolve();
      },
      countBypassed: (id, resource) => Promise.resolve(this.#usage.addBypassed(id, resource)),
      countRefused: (id, resource, atMs, n) =>
        Promise.resolve(this.#usage.addRefused(id, resource, atMs, n)),
      loadConfig: (ids, resource, want) => {
        const out = new Map<string, EntityConfig>();
        for (const id of ids) {
          const cfg: EntityConfig = {};
          if (want.defaults) {
            cfg.resourceDefaults = copy(this.#defaults.get(resource));
            cfg.systemDefaults = copy(this.#defaults.get("*"));
            const controls = this.#resourceControls.get(resource);
            if (controls?.disabled) cfg.resourceControls = { disabled: true };
          }
          if (want.meta) cfg.entity = clone(this.#entities.get(id));
          if (want.limits) {
            const own = this.#limits.get(bucketKey(id, resource));
            const all = this.#limits.get(bucketKey(id, "*"));
            cfg.resourceLimits = own?.limits;
            cfg.defaultLimits = all?.limits;
            if (own?.shards) cfg.resourceShards = { ...own.shards };
            if (all?.shards) cfg.defaultShards = { ...all.shards };
          }
          out.set(id, cfg);
        }
        return Promise.resolve(out);
      },
      putDefaults: (resource, limits, _signal, audit) => {
        const key = resource ?? "*";
        if (!replacesHeld(this.#defaultsAudit.get(key), audit)) {
          return Promise.reject(new ShardsChanged());
        }
        this.#defaults.set(key, [...limits]);
        if (audit) this.#defaultsAudit.set(key, auditSk(audit.atMs, audit.eventId));
        else this.#defaultsAudit.delete(key);
        this.#audit(audit);
        return Promise.resolve();
      },
      getDefaults: (resource) => {
        const key = resource ?? "*";
        const limits = copy(this.#defaults.get(key));
        const sk = this.#defaultsAudit.get(key);
        return Promise.resolve(
          limits && { limits, ...(sk === undefined ? {} : { auditSk: sk }) },
        );
      },
      deleteDefaults: (resource, _signal, audit) => {
        const key = resource ?? "*";
        if (!replacesHeld(this.#defaultsAudit.get(key), audit)) {
          return Promise.reject(new ShardsChanged());
        }
        this.#defaults.delete(key);
        this.#defaultsAudit.delete(key);
        this.#audit(audit);
        return Promise.resolve();
      },
      listDefaultResources: () =>
        Promise.resolve([...this.#defaults.keys()].filter((r) => r !== "*").sort()),
      listStoredLimits: (id) => {
        const out: StoredLimitsEntry[] = [];
        for (const [key, stored] of this.#limits) {
          const [entityId, resource] = splitKey(key);
          if (entityId !== id) continue;
          const limits = [...stored.limits];
          out.push(resource === "*" ? { limits } : { resource, limits });
        }
        return Promise.resolve(
          out.sort((a, b) =>
            (a.resource ?? "") < (b.resource ?? "")
              ? -1
              : (a.resource ?? "") > (b.resource ?? "")
              ? 1
              : 0
          ),
        );
      },
      auditEvents: (query) => Promise.resolve(auditPageOf(this.auditLog, query)),
      auditSettings: () => Promise.resolve({}),
    };
  }

  /**
   * Bypassed requests of an entity on a resource counted so far (DynamoDB keeps them in the hourly
   * usage snapshots).
   *
   * @example
   * ```ts
   * import { InMemoryBackend } from "./mod.ts";
   * const backend = new InMemoryBackend();
   * console.assert(backend.bypassed("key-1", "api") === 0);
   * ```
   */
  bypassed(entityId: string, resource: string): number {
    return this.#usage.bypassed(entityId, resource);
  }

  /**
   * Refused requests of an entity on a resource written so far by limiters' refusal counts
   * (`RateLimiterOptions.refusalCounts`; DynamoDB keeps them in the hourly usage snapshots), in
   * the hour that holds `atMs` or in all hours.
   *
   * @example
   * ```ts
   * import { InMemoryBackend } from "./mod.ts";
   * const backend = new InMemoryBackend();
   * await backend.entities.countRefused("key-1", "api", 0, 2); // what a limiter's flush sends
   * console.assert(backend.refused("key-1", "api") === 2);
   * console.assert(backend.refused("key-1", "api", 3_600_000) === 0); // the next hour
   * ```
   */
  refused(entityId: string, resource: string, atMs?: number): number {
    return this.#usage.refused(entityId, resource, atMs);
  }

  /** Stores an audit event (with the change it records: same synchronous step). */
  #audit(audit: AuditRecord | undefined): void {
    this.#registered = true; // every entity write comes here: it registers the namespace
    if (!audit) return;
    const { replaces: _replaces, ...event } = audit;
    this.auditLog.push(structuredClone(event));
  }

  /** An admin change: every condition, then all of it and its event, or nothing. */
  #admin(change: AdminBucketChange, audit: AuditRecord | undefined): AdminOutcome {
    const marker = change.marker &&
      bucketKey(change.entityId, `${change.marker.resource}#${change.marker.key}`);
    if (marker !== undefined && this.#markers.has(marker)) return { ok: false, reason: "repeated" };
    const keys = change.items.map((i) => bucketKey(change.entityId, i.resource));
    if (!change.items.every((item, i) => adminItemHolds(this.#buckets.get(keys[i]), item))) {
      return { ok: false, reason: "changed" };
    }
    change.items.forEach((item, i) => {
      const b = applyAdminItem(this.#buckets.get(keys[i]), item);
      if (b) this.#buckets.set(keys[i], b);
    });
    if (marker !== undefined) this.#markers.set(marker, change.marker!.expiresAtSec);
    this.#audit(audit);
    return { ok: true };
  }

  /** Checks every write's condition, then applies all or none (as TransactWriteItems does). */
  #write(
    ws: BucketWrite[],
  ): { ok: true; items: StoredBucket[] } | { ok: false; olds: WriteOutcome[] } {
    const results = ws.map((w) =>
      writeHolds(this.#buckets.get(bucketKey(w.entityId, w.resource)), w)
    );
    if (results.some((ok) => !ok)) {
      return {
        ok: false,
        olds: ws.map((w, i): WriteOutcome => {
          if (results[i]) return { ok: true };
          const b = this.#buckets.get(bucketKey(w.entityId, w.resource));
          return { ok: false, old: b ? viewBucket(b) : undefined, known: true };
        }),
      };
    }
    this.writes += ws.length;
    return { ok: true, items: ws.map((w) => viewBucket(this.#apply(w))) };
  }

  #apply(w: BucketWrite): MemBucket {
    const key = bucketKey(w.entityId, w.resource);
    const b = applyWrite(this.#buckets.get(key), w);
    this.#buckets.set(key, b);
    return b;
  }
}

function bucketKey(entityId: string, resource: string): string {
  return `${entityId}#${resource}`;
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf("#");
  return [key.slice(0, i), key.slice(i + 1)];
}

/** A copy of a list of limits (a `Limit` is immutable; `structuredClone` would drop its class). */
function copy<T>(v: T[] | undefined): T[] | undefined {
  return v === undefined ? undefined : [...v];
}

function clone<T>(v: T): T {
  return v === undefined ? v : structuredClone(v);
}

/** Whether the stored limits still carry the event an audit record replaces (when it says). */
function replacesHeld(
  stored: StoredLimits | string | undefined,
  audit: AuditRecord | undefined,
): boolean {
  if (audit?.replaces === undefined) return true;
  const sk = typeof stored === "string" ? stored : stored?.auditSk;
  return (sk ?? null) === audit.replaces;
}
