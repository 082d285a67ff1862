/**
 * Reading the audit trail: `getAuditEvents` validates a query, turns its cursor back into the
 * place to resume, runs it on the backend, and hands back the events, newest first, with the
 * cursor of the next page. A cursor is bound to its query's entity and resource, and holds only a
 * position inside the audit partition, so no cursor can read anything but audit events.
 *
 * @module
 */

import type { AuditPage, AuditQuery } from "./audit_query.ts";
import { type AuditRecord, type AuditScope, auditSk } from "./audit_record.ts";
import { ValidationError } from "./errors.ts";
import { checkObject, validateEntityId, validateResource } from "./validate.ts";

export type { AuditScope } from "./audit_record.ts";

/**
 * What {@link getAuditEvents} reads.
 *
 * @example
 * ```ts
 * import type { GetAuditEventsOptions } from "./audit_read.ts";
 * const query: GetAuditEventsOptions = { entityId: "key-1", since: "2026-01-01T00:00:00Z", limit: 50 };
 * console.assert(query.limit === 50);
 * ```
 */
export interface GetAuditEventsOptions {
  /** One entity's events only. @default every event */
  entityId?: string;
  /** Events about one resource only (an entity's limits for it, its defaults or controls). */
  resource?: string;
  /** Events at or after this time: a `Date`, an ISO 8601 string, or epoch ms. */
  since?: Date | string | number;
  /** At most this many events, 1 to 1000. @default 100 */
  limit?: number;
  /** Where to resume: the `cursor` of the previous page of the same query. */
  cursor?: string;
}

/**
 * One admin change as the audit trail tells it.
 *
 * @example
 * ```ts
 * import type { AuditEvent } from "./audit_read.ts";
 * const e: AuditEvent = {
 *   eventId: "e1", at: "2026-01-01T00:00:00.000Z", principal: "ops", action: "limits.set",
 *   scope: { kind: "entity", entityId: "key-1" }, entityId: "key-1", resource: "api",
 *   after: { limits: [] }, expiresAt: "2026-04-01T00:00:00.000Z",
 * };
 * console.assert(e.before === undefined);
 * ```
 */
export interface AuditEvent {
  /** Unique id of the event. */
  eventId: string;
  /** When, ISO 8601. */
  at: string;
  /** Who: an ARN on AWS, the configured principal, or `local`. */
  principal: string;
  /** What was done, e.g. `entity.create`, `limits.set`. */
  action: string;
  /** What it was done to. */
  scope: AuditScope;
  /** The entity, for an entity's event. */
  entityId?: string;
  /** The resource, when the change was about one (`*` for an entity's limits on every one). */
  resource?: string;
  /** The value before, absent when there was none. */
  before?: unknown;
  /** The value after, absent when there is none. */
  after?: unknown;
  /** When the table's TTL removes the event, ISO 8601. */
  expiresAt: string;
}

/**
 * A page of audit events, newest first; `cursor` is set when there may be more.
 *
 * @example
 * ```ts
 * import type { AuditEventsPage } from "./audit_read.ts";
 * const page: AuditEventsPage = { events: [] };
 * console.assert(page.cursor === undefined);
 * ```
 */
export interface AuditEventsPage {
  /** The events, newest first. */
  events: AuditEvent[];
  /** Pass as `cursor` to read the next page; absent on the last page. */
  cursor?: string;
}

/** The largest `limit`. */
export const MAX_AUDIT_LIMIT = 1000;
const SK_SHAPE = /^\d{13}#[A-Za-z0-9_.:@-]{1,256}$/;

/**
 * Validates `options`, runs the query through `run`, and makes the page.
 *
 * @example
 * ```ts
 * import { getAuditEvents } from "./audit_read.ts";
 * import { auditPageOf } from "./audit_query.ts";
 * const page = await getAuditEvents({ limit: 10 }, (q) => Promise.resolve(auditPageOf([], q)));
 * console.assert(page.events.length === 0 && page.cursor === undefined);
 * ```
 */
export async function getAuditEvents(
  options: GetAuditEventsOptions | undefined,
  run: (query: AuditQuery) => Promise<AuditPage>,
): Promise<AuditEventsPage> {
  const query = validateAuditQuery(options ?? {});
  const page = await run(query);
  const events = page.records.map(auditEvent);
  const last = page.records.at(-1);
  if (!page.more || last === undefined) return { events };
  return {
    events,
    cursor: encodeCursor({
      sk: auditSk(last.atMs, last.eventId),
      entityId: query.entityId,
      resource: query.resource,
    }),
  };
}

/** The backend query of `options`; bad input throws `ValidationError` naming the field. */
export function validateAuditQuery(options: GetAuditEventsOptions): AuditQuery {
  checkObject("options", options);
  const q: AuditQuery = { limit: 100 };
  if (options.entityId !== undefined) q.entityId = validateEntityId(options.entityId);
  if (options.resource !== undefined) q.resource = validateResource(options.resource);
  if (options.limit !== undefined) {
    const l = options.limit;
    if (typeof l !== "number" || !Number.isInteger(l) || l < 1 || l > MAX_AUDIT_LIMIT) {
      throw new ValidationError("limit", l, `must be a whole number from 1 to ${MAX_AUDIT_LIMIT}`);
    }
    q.limit = l;
  }
  if (options.since !== undefined) q.sinceMs = sinceMs(options.since);
  if (options.cursor !== undefined) {
    q.afterSk = decodeCursor(options.cursor, q.entityId, q.resource);
  }
  return q;
}

function sinceMs(since: unknown): number {
  let ms = NaN;
  if (since instanceof Date) ms = since.getTime();
  else if (typeof since === "number") ms = since;
  else if (
    typeof since === "string" &&
    /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(since)
  ) {
    ms = Date.parse(since);
  }
  if (!Number.isInteger(ms) || ms < 0 || ms > 9_999_999_999_999) {
    throw new ValidationError(
      "since",
      since,
      "must be a Date, an ISO 8601 date or time (2026-01-31T12:00:00Z), or epoch ms",
    );
  }
  return ms;
}

interface Cursor {
  sk: string;
  entityId?: string;
  resource?: string;
}

function encodeCursor(c: Cursor): string {
  const json = JSON.stringify({ v: 1, sk: c.sk, e: c.entityId, r: c.resource });
  return btoa(json).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The sort key a cursor resumes after; refuses one that is not from this query. */
function decodeCursor(cursor: unknown, entityId?: string, resource?: string): string {
  const bad = (rule: string) => new ValidationError("cursor", cursor, rule);
  if (typeof cursor !== "string" || cursor.length === 0 || cursor.length > 1024) {
    throw bad("must be the cursor a previous call returned");
  }
  let c: { v?: unknown; sk?: unknown; e?: unknown; r?: unknown };
  try {
    c = JSON.parse(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    throw bad("must be the cursor a previous call returned");
  }
  if (
    typeof c !== "object" || c === null || c.v !== 1 || typeof c.sk !== "string" ||
    !SK_SHAPE.test(c.sk)
  ) {
    throw bad("must be the cursor a previous call returned");
  }
  if (c.e !== entityId || c.r !== resource) {
    throw bad(
      "belongs to another query: pass the same entityId and resource as the call that returned it",
    );
  }
  return c.sk;
}

function auditEvent(r: AuditRecord): AuditEvent {
  const e: AuditEvent = {
    eventId: r.eventId,
    at: new Date(r.atMs).toISOString(),
    principal: r.principal,
    action: r.action,
    scope: r.scope,
    expiresAt: new Date(r.expiresAtSec * 1000).toISOString(),
  };
  if (r.scope.kind === "entity") e.entityId = r.scope.entityId;
  if (r.resource !== undefined) e.resource = r.resource;
  else if (r.scope.kind === "resource") e.resource = r.scope.resource;
  if (r.before !== undefined) e.before = r.before;
  if (r.after !== undefined) e.after = r.after;
  return e;
}
