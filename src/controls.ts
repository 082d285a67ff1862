/**
 * Entity and resource controls, the admin side: disable and enable an entity or a resource, turn
 * bypass on and off, and change an existing entity's parent or cascade flag. Each change is one
 * transaction with its audit event, and clears this process's caches at once; other processes see
 * it within their `limitsCacheTtlMs` (docs/design.md, "Controls").
 *
 * @module
 */

import { type AdminCall, adminCaller } from "./admin_call.ts";
import type { AuditChange, Auditor } from "./audit.ts";
import type { Backend } from "./backend.ts";
import type { ConfigResolver } from "./config.ts";
import { ControlsChanged, type EntityPatch } from "./control_store.ts";
import type { Entity, ResourceControls } from "./entities.ts";
import type { BucketWriter } from "./engine/writer.ts";
import { EntityNotFoundError, ValidationError } from "./errors.ts";
import { checkBoolean, checkObject, validateEntityId, validateResource } from "./validate.ts";

/** Tries of a change overtaken by others before giving up (as `setLimits`). */
const MAX_ATTEMPTS = 50;

/** Options of {@link ControlAdmin}. */
export interface ControlAdminOptions {
  backend: Backend;
  writer: BucketWriter;
  config: ConfigResolver;
  ready: (deadline: number) => Promise<number>;
  timeoutMs: number;
  auditor: Auditor;
}

/** Changes the controls of entities and resources. */
export class ControlAdmin {
  readonly #backend: Backend;
  readonly #writer: BucketWriter;
  readonly #config: ConfigResolver;
  /** Runs one admin call: its deadline, retries and failure (src/admin_call.ts). */
  readonly #run: AdminCall;
  readonly #auditor: Auditor;

  constructor(options: ControlAdminOptions) {
    this.#backend = options.backend;
    this.#writer = options.writer;
    this.#config = options.config;
    this.#run = adminCaller(options.writer, options.ready, options.timeoutMs);
    this.#auditor = options.auditor;
  }

  /** Switches an entity off (`disabled`) or on again. */
  async setDisabled(entityId: string, disabled: boolean): Promise<Entity> {
    const id = validateEntityId(entityId);
    return await this.#change(id, { disabled }, disabled ? "entity.disable" : "entity.enable");
  }

  /** Turns an entity's bypass on or off. */
  async setBypass(options: { entityId: string; bypass: boolean }): Promise<Entity> {
    checkObject("options", options);
    const id = validateEntityId(options.entityId);
    checkBoolean("bypass", options.bypass);
    return await this.#change(id, { bypass: options.bypass }, "entity.bypass");
  }

  /** Sets whether an entity's acquires cascade to its parent by default. */
  async setCascade(options: { entityId: string; cascade: boolean }): Promise<Entity> {
    checkObject("options", options);
    const id = validateEntityId(options.entityId);
    checkBoolean("cascade", options.cascade);
    return await this.#change(id, { cascade: options.cascade }, "entity.set-cascade");
  }

  /**
   * Gives an entity a parent (which must exist and be top-level), or none (`parentId` left out or
   * `undefined`). An entity with children cannot get a parent: the hierarchy has two levels.
   */
  async setParent(options: { entityId: string; parentId?: string }): Promise<Entity> {
    checkObject("options", options);
    const id = validateEntityId(options.entityId);
    const parentId = options.parentId === undefined
      ? undefined
      : validateEntityId(options.parentId, "parentId");
    if (parentId === id) {
      throw new ValidationError("parentId", parentId, "must differ from entityId");
    }
    if (parentId !== undefined) {
      const children = await this.#run(
        "setParent",
        (signal) => this.#backend.entities.children(id, signal),
      );
      if (children.length > 0) {
        throw new ValidationError(
          "entityId",
          id,
          `has ${children.length} children (${
            children.slice(0, 3).map((c) => c.entityId).join(", ")
          }${children.length > 3 ? ", ..." : ""}); an entity with children cannot get a parent`,
        );
      }
    }
    return await this.#change(id, { parentId }, "entity.set-parent");
  }

  /**
   * Switches a resource off (`disabled`: every acquire on it is refused) or on again. The write
   * names the event of the state it replaces, so a change overtaken by another one is decided
   * again on what is stored now: the stored value is always the newest event's `after`.
   */
  async setResourceDisabled(resource: string, disabled: boolean): Promise<ResourceControls> {
    const r = validateResource(resource);
    const after: ResourceControls = disabled ? { disabled: true } : {};
    const entities = this.#backend.entities;
    for (let attempt = 0;; attempt++) {
      const stored = entities.getResourceControlsState
        ? await this.#run("getResourceControls", (s) => entities.getResourceControlsState!(r, s))
        : { controls: await this.getResourceControls(r) };
      const audit = await this.#auditor.record({
        action: disabled ? "resource.disable" : "resource.enable",
        scope: { kind: "resource", resource: r },
        resource: r,
        before: { disabled: stored?.controls.disabled === true },
        after: { disabled },
        // A backend that cannot tell the stored event does not guard (undefined).
        ...(entities.getResourceControlsState ? { replaces: stored?.auditSk ?? null } : {}),
      });
      const done = await this.#run(
        "setResourceControls",
        (signal) =>
          entities.putResourceControls(r, after, signal, audit).then(() => true, (err) => {
            if (err instanceof ControlsChanged && attempt < MAX_ATTEMPTS) return false;
            throw err;
          }),
      );
      if (done) break;
    }
    this.#config.forgetResource(r);
    return after;
  }

  /** A resource's controls (`{}` when none are set). */
  async getResourceControls(resource: string): Promise<ResourceControls> {
    const r = validateResource(resource);
    return await this.#run(
      "getResourceControls",
      (signal) => this.#backend.entities.getResourceControls(r, signal),
    ) ?? {};
  }

  /**
   * Applies `patch` to an existing entity with its audit event; returns the entity after. The
   * write names the event of the state it replaces: a change overtaken by another one is decided
   * again, so the stored entity is always what the newest event says.
   */
  async #change(entityId: string, patch: EntityPatch, action: string): Promise<Entity> {
    const entities = this.#backend.entities;
    for (let attempt = 0;; attempt++) {
      // The event's sort key first: a change landing between the two reads fails the write.
      const replaces = entities.entityAuditSk
        ? await this.#run(action, (signal) => entities.entityAuditSk!(entityId, signal))
        : undefined;
      const before = await this.#run(action, (signal) => entities.get(entityId, signal));
      if (!before) throw new EntityNotFoundError(entityId);
      const change: AuditChange = {
        action,
        scope: { kind: "entity", entityId },
        before: pick(before, patch),
        after: pick({ ...before, ...patch }, patch),
        ...(replaces === undefined ? {} : { replaces }),
      };
      const audit = await this.#auditor.record(change);
      const done = await this.#run(
        action,
        (signal) =>
          entities.updateEntity(entityId, patch, signal, audit).then(() => true, (err) => {
            if (err instanceof ControlsChanged && attempt < MAX_ATTEMPTS) return false;
            throw err;
          }),
      );
      if (done) break;
    }
    this.#config.forget(entityId);
    this.#writer.knowledge.forget(entityId);
    const after = await this.#run(action, (signal) => entities.get(entityId, signal));
    if (!after) throw new EntityNotFoundError(entityId); // deleted meanwhile
    return after;
  }
}

/** The fields of `patch` as they are on `entity`, for an audit value (absent flags: false). */
function pick(entity: Partial<Entity>, patch: EntityPatch): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(patch) as (keyof EntityPatch)[]) {
    out[key] = key === "parentId" ? entity.parentId ?? null : entity[key] ?? false;
  }
  return out;
}
