/**
 * The dashboard's JSON API: what each route answers. The pages use exactly this API; it is
 * documented for other clients in docs/dashboard.md. Every route is under `/api/`, answers JSON,
 * and, when the dashboard has a token, needs `Authorization: Bearer <token>`.
 *
 * | route                                      | answers                |
 * | ------------------------------------------ | ---------------------- |
 * | `GET /api/info`                            | {@link InfoView}       |
 * | `GET /api/overview`                        | {@link OverviewView}   |
 * | `GET /api/tree?search=`                    | {@link TreeView}       |
 * | `GET /api/entities/:id`                    | {@link EntityPageView} |
 * | `GET /api/entities/:id/buckets`            | {@link BucketsView}    |
 * | `GET /api/entities/:id/limits?resource=`   | {@link LimitLevelsView} |
 * | `PUT /api/entities/:id/limits`             | {@link LimitsWriteResult} (body {@link LimitsWrite}) |
 * | `DELETE /api/entities/:id/limits?resource=` | {@link LimitsWriteResult} |
 * | `GET /api/entities/:id/usage?window=&resource=` | {@link UsageView} |
 * | `GET /api/entities/:id/audit?cursor=`      | {@link AuditView}      |
 *
 * An error answers `{ error: ErrorView }` with status 400 (bad input: nothing written), 401 (no or
 * wrong token), 403 (read-only, or a cross-origin write), 404 (no such entity or route), 503
 * (DynamoDB unreachable) or 500 (a misconfiguration, e.g. a missing table).
 *
 * A change (`PUT`, `DELETE`) must also carry an `Origin` equal to the dashboard's own (or, with no
 * `Origin`, `Sec-Fetch-Site: same-origin`), which a browser's `fetch` from the page sends, and a
 * `PUT` its body as `Content-Type: application/json` (a `DELETE` has no body: none, or JSON);
 * anything else is refused with 403. `PUT .../limits` and `DELETE .../limits` need
 * `resource` (`*` for the entity-wide limits). `GET /api/entities/:id` answers 404 for an entity
 * never created (its buckets, limits and usage can still be read by id).
 *
 * @module
 */

/** `GET /api/info`: what the pages need to know of the dashboard itself. */
export interface InfoView {
  /** The library's version. */
  version: string;
  /** The table's name. */
  table: string;
  /** The namespace, when the limiter has one. */
  namespace?: string;
  /** Edits refused: the pages show no edit controls. */
  readOnly: boolean;
  /** The API needs a bearer token. */
  tokenRequired: boolean;
}

/** One limit as the pages show and edit it: `Limit.toJSON()` and its text form. */
export interface LimitView {
  /** The limit's name, e.g. `rpm`. */
  name: string;
  /** `rate`, `quota` or `concurrent`. */
  kind: "rate" | "quota" | "concurrent";
  /** Bucket capacity (a concurrent limit's `max`, a quota's amount). */
  capacity: number;
  /** Tokens added per refill period (rate limits). */
  refillAmount?: number;
  /** The refill period in seconds (rate limits). */
  refillPeriodSeconds?: number;
  /** Soft: metered, never refusing. */
  soft: boolean;
  /** One line, e.g. `rpm: 100 per 60 s, burst 150`. */
  text: string;
  /** `Limit.toJSON()`, which `PUT .../limits` accepts back. */
  json: unknown;
}

/** A point of a usage chart: one hourly or daily window, summed over what it covers. */
export interface SeriesPoint {
  /** Window start, ISO 8601. */
  windowStart: string;
  /** Requests admitted. */
  requests: number;
  /** Requests refused (hourly windows: daily snapshots carry no refusals, so 0 there). */
  refused: number;
  /** Tokens consumed per limit name. */
  consumed: Record<string, number>;
}

/** `GET /api/overview`. */
export interface OverviewView {
  /** When the answer was computed, ISO 8601. */
  generatedAt: string;
  /** The last 48 hours, every entity and resource summed, oldest first. */
  hourly: SeriesPoint[];
  /** The last 30 days, the same. */
  daily: SeriesPoint[];
  /** Entities with the most refusals in the hourly windows that began in the last 24 hours (the current one included), most first (at most 10). */
  mostRefused: { entityId: string; refused: number; requests: number }[];
  /** Buckets with the smallest share of their capacity available now, least first (at most 10). */
  closeToLimit: {
    entityId: string;
    resource: string;
    limit: string;
    available: number;
    capacity: number;
  }[];
  /** Entities read to build this answer. */
  entitiesScanned: number;
  /**
   * More entities (over 500), or more buckets of a resource (over 1,000), exist than one overview
   * reads (see docs/dashboard.md).
   */
  truncated: boolean;
}

/** A node of the entity tree. */
export interface TreeNode {
  /** The entity's id. */
  entityId: string;
  /** Its display name, when it has one. */
  name?: string;
  /** Set (true) when the entity is switched off. */
  disabled?: boolean;
  /** A project's keys (entities whose parent it is), by id; `[]` for a key. */
  children: TreeNode[];
}

/** `GET /api/tree?search=`: projects (entities with no parent) and their keys. */
export interface TreeView {
  /** The projects, by id (with a search: those that match or hold a key that does). */
  roots: TreeNode[];
  /** More entities exist than one tree reads. */
  truncated: boolean;
}

/** `GET /api/entities/:id`. */
export interface EntityPageView {
  /** The entity as stored. */
  entity: {
    entityId: string;
    name?: string;
    parentId?: string;
    cascade: boolean;
    disabled: boolean;
    bypass: boolean;
    createdAt: string;
    metadata: Record<string, string>;
  };
  /** Children (API keys of a project). */
  children: string[];
  /** Resources with a bucket or stored limits for this entity, sorted. */
  resources: string[];
}

/** `GET /api/entities/:id/buckets`: the live buckets, one entry per resource and limit. */
export interface BucketsView {
  /** Server time of the read, epoch ms. */
  now: number;
  /** One entry per resource and limit, sorted (a sharded bucket's shards added up). */
  buckets: {
    /** The resource. */
    resource: string;
    /** The limit's name. */
    limit: string;
    /** Tokens available now (rounded down). */
    available: number;
    /** The bucket's capacity (a concurrent limit's slots). */
    capacity: number;
    /** Milliseconds until the bucket is full again (0 when full). */
    msUntilFull: number;
    /**
     * `true` when no limits are stored for the resource at any level: read from the bucket item
     * under the limits of its last write (those the app passed in code then). Otherwise the
     * entry is what `limiter.available({ useStoredLimits: true })` says, under the limits in force.
     */
    fromLastWrite?: true;
  }[];
}

/** The levels of stored limits, most specific first. */
export type LimitLevel = "entity-resource" | "entity" | "resource" | "system";

/** `GET /api/entities/:id/limits?resource=`: every level for one resource. */
export interface LimitLevelsView {
  /** The resource asked for. */
  resource: string;
  /** The four levels, most specific first. */
  levels: {
    /** Which level. */
    level: LimitLevel;
    /** The stored limits; `null` when the level stores none. */
    limits: LimitView[] | null;
    /** This level is the one acquires use (the most specific level that stores limits). */
    effective: boolean;
  }[];
}

/** `PUT /api/entities/:id/limits` body: stores limits at the entity level. */
export interface LimitsWrite {
  /** A resource, or `*` for the entity-wide limits (required: absent is a 400). */
  resource: string;
  /** `Limit.toJSON()` shapes, as `LimitView.json`. */
  limits: unknown[];
}

/** What a write stored, read back from the table. */
export interface LimitsWriteResult {
  /** The resource written, `*` for the entity-wide limits. */
  resource: string;
  /** The stored limits after the write (`null` after a delete). */
  limits: LimitView[] | null;
}

/** `GET /api/entities/:id/usage?window=hourly|daily&resource=`. */
export interface UsageView {
  /** The windows: 48 hours, or 30 days. */
  window: "hourly" | "daily";
  /** Per resource, oldest first. */
  series: { resource: string; points: SeriesPoint[] }[];
}

/** `GET /api/entities/:id/audit?cursor=`. */
export interface AuditView {
  /** The table keeps an audit trail (false: the pages hide the section). */
  available: boolean;
  /** The events of this page, newest first (at most 50). */
  events: {
    /** When, ISO 8601. */
    at: string;
    /** Who (an ARN on AWS, the configured principal, or `local`). */
    principal: string;
    /** What, e.g. `limits.set`. */
    action: string;
    /** What to, e.g. `entity key-1`. */
    scope: string;
    /** One line describing the change. */
    summary: string;
  }[];
  /** Pass as `?cursor=` for the next page; absent on the last. */
  cursor?: string;
}

/** The body of every error answer. */
export interface ErrorView {
  /** A `ValidationError`'s field, value and rule, when the input was at fault. */
  field?: string;
  /** The value seen (as the library shows it, cut to 80 characters). */
  value?: string;
  /** The rule it broke. */
  rule?: string;
  /**
   * With a bad limit in `PUT .../limits`: its position in `limits` (`field` then names the limit
   * and its property, e.g. `limit rpm: capacity`). Added after the first contract; optional.
   */
  limitIndex?: number;
  /** One line for a person. */
  message: string;
}
