/**
 * Default limits, the admin side: a resource's defaults (for every entity on it) and the system
 * defaults (every entity, every resource), below an entity's own stored limits in resolution
 * (docs/design.md, "Entities and stored limits"). Each change is audited in its own transaction
 * and clears this process's cached defaults at once; other processes see it within their cache
 * time.
 *
 * @module
 */

import { type AdminCall, adminCaller } from "./admin_call.ts";
import type { AuditChange, Auditor } from "./audit.ts";
import type { AuditRecord, AuditScope } from "./audit_record.ts";
import type { Backend } from "./backend.ts";
import type { ConfigResolver } from "./config.ts";
import type { StoredDefaults, StoredLimitsEntry } from "./defaults_store.ts";
import { ShardsChanged } from "./entities.ts";
import type { BucketWriter } from "./engine/writer.ts";
import type { Limit } from "./limit.ts";
import { validateLimits } from "./request.ts";
import { checkObject, validateEntityId, validateResource } from "./validate.ts";

/** How many times a write is tried again when another one came between its read and its write. */
const MAX_ATTEMPTS = 50;

/** Options of {@link DefaultsAdmin}. */
export interface DefaultsAdminOptions {
  backend: Backend;
  writer: BucketWriter;
  config: ConfigResolver;
  ready: (deadline: number) => Promise<number>;
  timeoutMs: number;
  /** Makes the audit event of each change (written in the change's transaction). */
  auditor: Auditor;
}

/** Resource and system default limits, and the listing of an entity's stored limits. */
export class DefaultsAdmin {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: ConfigResolver;
  /** Runs one admin call: its deadline, retries and failure (src/admin_call.ts). */
  readonly #run: AdminCall;
  readonly #auditor: Auditor;

  constructor(options: DefaultsAdminOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = options.config;
    this.#run = adminCaller(options.writer, options.ready, options.timeoutMs);
    this.#auditor = options.auditor;
  }

  /** Stores the default limits of a resource. */
  async setResourceDefaults(options: { resource: string; limits: Limit[] }): Promise<void> {
    await this.#set(resourceOption(options), options.limits);
  }

  /** The default limits of a resource; `[]` when none. */
  async getResourceDefaults(options: { resource: string }): Promise<Limit[]> {
    return (await this.#get(resourceOption(options)))?.limits ?? [];
  }

  /** Deletes the default limits of a resource. */
  async deleteResourceDefaults(options: { resource: string }): Promise<void> {
    await this.#delete(resourceOption(options));
  }

  /** Stores the system default limits. */
  async setSystemDefaults(options: { limits: Limit[] }): Promise<void> {
    checkObject("options", options);
    await this.#set(undefined, options.limits);
  }

  /** The system default limits; `[]` when none. */
  async getSystemDefaults(): Promise<Limit[]> {
    return (await this.#get(undefined))?.limits ?? [];
  }

  /** Deletes the system default limits. */
  async deleteSystemDefaults(): Promise<void> {
    await this.#delete(undefined);
  }

  /**
   * Stores the default limits of `resource` (`undefined`: the system defaults). The write holds
   * only if the stored defaults still carry the event read before it (its audit record's
   * `replaces`), else it reads and tries again: of two writers at once, the one written last has
   * the newest event.
   */
  async #set(resource: string | undefined, limits: unknown): Promise<void> {
    const valid = validateLimits(limits, false);
    await this.#chained("setDefaults", resource, (before) => ({
      action: `defaults.${resource === undefined ? "system" : "resource"}.set`,
      scope: scopeOf(resource),
      before: before && before.limits.map((l) => l.toJSON()),
      after: valid.map((l) => l.toJSON()),
      replaces: before?.auditSk ?? null,
    }), (signal, audit) => this.#backend.entities.putDefaults(resource, valid, signal, audit));
  }

  /** The default limits of `resource` (`undefined`: the system's) and their event, or `undefined`. */
  async #get(resource: string | undefined): Promise<StoredDefaults | undefined> {
    return await this.#run(
      "getDefaults",
      (signal) => this.#backend.entities.getDefaults(resource, signal),
    );
  }

  /** Deletes the default limits of `resource` (`undefined`: the system's), as `#set` writes. */
  async #delete(resource: string | undefined): Promise<void> {
    await this.#chained("deleteDefaults", resource, (before) => ({
      action: `defaults.${resource === undefined ? "system" : "resource"}.delete`,
      scope: scopeOf(resource),
      before: before && before.limits.map((l) => l.toJSON()),
      replaces: before?.auditSk ?? null,
    }), (signal, audit) => this.#backend.entities.deleteDefaults(resource, signal, audit));
  }

  /** Reads, records the change, writes it on condition; again while another write came between. */
  async #chained(
    operation: string,
    resource: string | undefined,
    change: (before: StoredDefaults | undefined) => AuditChange,
    write: (signal: AbortSignal, audit: AuditRecord | undefined) => Promise<void>,
  ): Promise<void> {
    for (let attempt = 0;; attempt++) {
      const audit = await this.#auditor.record(change(await this.#get(resource)));
      const done = await this.#run(
        operation,
        (signal) =>
          write(signal, audit).then(() => true, (err) => {
            if (err instanceof ShardsChanged && attempt < MAX_ATTEMPTS) return false;
            throw err;
          }),
      );
      if (done) break;
    }
    this.#config.forgetResource(resource);
  }

  /** The resources with default limits, sorted. */
  async listResources(): Promise<string[]> {
    return await this.#run(
      "listResources",
      (signal) => this.#backend.entities.listDefaultResources(signal),
      30_000,
    );
  }

  /** Every stored-limits item of an entity. */
  async listStoredLimits(options: { entityId: string }): Promise<StoredLimitsEntry[]> {
    checkObject("options", options);
    const entityId = validateEntityId(options.entityId);
    return await this.#run(
      "listStoredLimits",
      (signal) => this.#backend.entities.listStoredLimits(entityId, signal),
      30_000,
    );
  }
}

/** The resource of `{ resource }` options, checked. */
function resourceOption(options: { resource: string }): string {
  checkObject("options", options);
  return validateResource(options.resource);
}

function scopeOf(resource: string | undefined): AuditScope {
  return resource === undefined ? { kind: "system" } : { kind: "resource", resource };
}
