/**
 * Default limits, the admin side: a resource's defaults (for every entity on it) and the system
 * defaults (every entity, every resource), below an entity's own stored limits in resolution
 * (docs/design.md, "Entities and stored limits"). Each change is audited in its own transaction
 * and clears this process's cached defaults at once; other processes see it within their cache
 * time.
 *
 * @module
 */

import type { Auditor } from "./audit.ts";
import type { AuditScope } from "./audit_record.ts";
import type { Backend } from "./backend.ts";
import type { ConfigResolver } from "./config.ts";
import { DefaultsChanged, type StoredDefaults, type StoredLimitsEntry } from "./defaults_store.ts";
import type { BucketWriter } from "./engine/writer.ts";
import type { Limit } from "./limit.ts";
import { validateLimits } from "./request.ts";
import { checkObject, validateEntityId, validateResource } from "./validate.ts";

/** Tries of a change overtaken by others before giving up (as `setLimits`). */
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
  readonly #ready: (deadline: number) => Promise<number>;
  readonly #timeoutMs: number;
  readonly #auditor: Auditor;

  constructor(options: DefaultsAdminOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = options.config;
    this.#ready = options.ready;
    this.#timeoutMs = options.timeoutMs;
    this.#auditor = options.auditor;
  }

  /** Stores the default limits of a resource. */
  async setResourceDefaults(options: { resource: string; limits: Limit[] }): Promise<void> {
    await this.#set(resourceOption(options), options.limits);
  }

  /** The default limits of a resource; `[]` when none. */
  async getResourceDefaults(options: { resource: string }): Promise<Limit[]> {
    return (await this.#get(resourceOption(options))) ?? [];
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
    return (await this.#get(undefined)) ?? [];
  }

  /** Deletes the system default limits. */
  async deleteSystemDefaults(): Promise<void> {
    await this.#delete(undefined);
  }

  /** Stores the default limits of `resource` (`undefined`: the system defaults). */
  async #set(resource: string | undefined, limits: unknown): Promise<void> {
    const valid = validateLimits(limits, false);
    await this.#change(resource, "set", valid);
  }

  /**
   * Sets (`after` given) or deletes the defaults of `resource` with their audit event. The write
   * names the event of the state it replaces, so a change overtaken by another one is decided
   * again on what is stored now: the stored value is always the newest event's `after`.
   */
  async #change(resource: string | undefined, verb: "set" | "delete", after?: Limit[]) {
    for (let attempt = 0;; attempt++) {
      const stored = await this.#state(resource);
      const audit = await this.#auditor.record({
        action: `defaults.${resource === undefined ? "system" : "resource"}.${verb}`,
        scope: scopeOf(resource),
        before: stored && stored.limits.map((l) => l.toJSON()),
        ...(after ? { after: after.map((l) => l.toJSON()) } : {}),
        // A backend that cannot tell the stored event does not guard (undefined).
        ...(this.#backend.entities.getDefaultsState ? { replaces: stored?.auditSk ?? null } : {}),
      });
      const done = await this.#run(
        verb === "set" ? "setDefaults" : "deleteDefaults",
        (signal) =>
          (after
            ? this.#backend.entities.putDefaults(resource, after, signal, audit)
            : this.#backend.entities.deleteDefaults(resource, signal, audit)).then(
              () => true,
              (err) => {
                if (err instanceof DefaultsChanged && attempt < MAX_ATTEMPTS) return false;
                throw err;
              },
            ),
      );
      if (done) break;
    }
    this.#config.forgetResource(resource);
  }

  /** The stored defaults of `resource` with the event that made them, when the backend tells. */
  async #state(resource: string | undefined): Promise<StoredDefaults | undefined> {
    const entities = this.#backend.entities;
    if (!entities.getDefaultsState) {
      const limits = await this.#get(resource);
      return limits && { limits };
    }
    return await this.#run(
      "getDefaults",
      (signal) => entities.getDefaultsState!(resource, signal),
    );
  }

  /** The default limits of `resource` (`undefined`: the system's), or `undefined`. */
  async #get(resource: string | undefined): Promise<Limit[] | undefined> {
    return await this.#run(
      "getDefaults",
      (signal) => this.#backend.entities.getDefaults(resource, signal),
    );
  }

  /** Deletes the default limits of `resource` (`undefined`: the system's). */
  async #delete(resource: string | undefined): Promise<void> {
    await this.#change(resource, "delete");
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

  async #run<T>(
    operation: string,
    fn: (signal: AbortSignal) => Promise<T>,
    timeoutMs?: number,
  ): Promise<T> {
    let deadline = Date.now() + (timeoutMs ?? Math.max(this.#timeoutMs, 10_000));
    try {
      deadline += await this.#ready(deadline); // the set-up may take longer than a call
      return await this.#writer.call(undefined, fn, deadline, operation);
    } catch (err) {
      throw this.#writer.fail(err, operation);
    }
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
