/**
 * Who made an admin change and until when its event is kept: the {@link Auditor} turns a change
 * into an {@link AuditRecord}, which the store writes in the same transaction as the change.
 *
 * @module
 */

import type { AuditRecord, AuditScope } from "./audit_record.ts";

/** How long audit events are kept by default, days. */
export const DEFAULT_AUDIT_RETENTION_DAYS = 90;

const SEQ_WRAP = 36 ** 6;

/** Options of {@link Auditor}. */
export interface AuditorOptions {
  /** Who the changes are made by. @default "local" */
  principal?: string | (() => Promise<string>);
  /** How long an event is kept, days (or where to read it, once). @default 90 */
  retentionDays?: number | (() => Promise<number>);
  /** Real time, epoch ms. @default Date.now */
  now?: () => number;
}

/** One change to record: what, to what, and the value before and after. */
export interface AuditChange {
  /** What was done, e.g. `limits.set`. */
  action: string;
  /** What it was done to. */
  scope: AuditScope;
  /** The resource, for a change to one resource of an entity. */
  resource?: string;
  /** The value before (JSON), `undefined` when none. */
  before?: unknown;
  /** The value after (JSON), `undefined` when none. */
  after?: unknown;
  /**
   * The sort key of the event of the state being replaced (`null`: none): the store writes only
   * if it is still so, and the new event is made later than it (see `AuditRecord.replaces`).
   */
  replaces?: string | null;
}

/**
 * Makes the audit records of admin changes.
 *
 * @example
 * ```ts
 * import { Auditor } from "./audit.ts";
 * const auditor = new Auditor({ principal: "ops@example.com", now: () => 1_000 });
 * const r = await auditor.record({ action: "entity.create", scope: { kind: "entity", entityId: "k" } });
 * console.assert(r.principal === "ops@example.com" && r.atMs === 1_000);
 * console.assert(r.expiresAtSec === 1 + 90 * 86_400);
 * ```
 */
export class Auditor {
  readonly #principal: string | (() => Promise<string>);
  #resolved?: Promise<string>;
  readonly #retentionDays: number | (() => Promise<number>);
  #retention?: Promise<number>;
  readonly #now: () => number;
  #seq = 0;
  #lastMs = 0;

  constructor(options: AuditorOptions = {}) {
    this.#principal = options.principal ?? "local";
    this.#retentionDays = options.retentionDays ?? DEFAULT_AUDIT_RETENTION_DAYS;
    this.#now = options.now ?? Date.now;
  }

  /** Who the changes are made by (resolved once). */
  principal(): Promise<string> {
    if (typeof this.#principal === "string") return Promise.resolve(this.#principal);
    this.#resolved ??= this.#principal().catch((err) => {
      this.#resolved = undefined; // asked again next time
      throw err;
    });
    return this.#resolved;
  }

  /** How long an event is kept, days (resolved once). */
  retentionDays(): Promise<number> {
    if (typeof this.#retentionDays === "number") return Promise.resolve(this.#retentionDays);
    this.#retention ??= this.#retentionDays().catch((err) => {
      this.#retention = undefined; // asked again next time
      throw err;
    });
    return this.#retention;
  }

  /**
   * A new event id: a sequence number of this process (fixed width, so that events of one process
   * in the same millisecond sort in the order they were made), then 26 random hex digits.
   */
  #eventId(): string {
    const seq = (this.#seq++ % SEQ_WRAP).toString(36).padStart(6, "0");
    return seq + crypto.randomUUID().replaceAll("-", "").slice(0, 26);
  }

  /** The record of one change, made now. */
  async record(change: AuditChange): Promise<AuditRecord> {
    const [principal, days] = await Promise.all([this.principal(), this.retentionDays()]);
    // Later than the event it replaces, even on a host whose clock is behind that one's; and never
    // before this process's previous event.
    const prevMs = change.replaces ? Number(change.replaces.slice(0, 13)) + 1 : 0;
    const atMs = Math.max(this.#now(), this.#lastMs, prevMs);
    this.#lastMs = atMs;
    return {
      eventId: this.#eventId(),
      atMs,
      principal,
      action: change.action,
      scope: change.scope,
      ...(change.resource === undefined ? {} : { resource: change.resource }),
      ...(change.before === undefined ? {} : { before: change.before }),
      ...(change.after === undefined ? {} : { after: change.after }),
      expiresAtSec: Math.floor(atMs / 1000) + days * 86_400,
      ...(change.replaces === undefined ? {} : { replaces: change.replaces }),
    };
  }
}
