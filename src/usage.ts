/**
 * Reading usage: the hourly and daily snapshots the usage aggregator keeps per entity and
 * resource, and summaries of them. Amounts are in tokens.
 *
 * @module
 */

import type { AttributeValue, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type * as aws from "./aws_types.ts";
import {
  CONSUMED_PREFIX,
  isoSeconds,
  isUsageWindow,
  usagePrefix,
  type UsageWindow,
  windowAt,
} from "./aggregator/snapshot.ts";
import { queryPages } from "./calls.ts";
import { ValidationError } from "./errors.ts";
import { KeySpace } from "./keyspace.ts";
import { checkObject, validateEntityId, validateLimitName, validateResource } from "./validate.ts";

export type { UsageWindow } from "./aggregator/snapshot.ts";

/**
 * Which snapshots to read.
 *
 * @example
 * ```ts
 * import type { UsageQuery } from "./usage.ts";
 * // The last day of one key's usage of one model, hour by hour:
 * const query: UsageQuery = { entityId: "key-1", resource: "gpt-4", window: "hourly",
 *   start: Date.now() - 86_400_000 };
 * // await getUsageSnapshots(client, "rate_limits", query)
 * console.assert(query.window === "hourly");
 * ```
 */
export interface UsageQuery {
  /** The entity (an API key, or a project: cascaded consumption is counted on the parent too). */
  entityId: string;
  /** One resource; every resource of the entity when absent. */
  resource?: string;
  /** `"hourly"` or `"daily"`. */
  window: UsageWindow;
  /** Only windows ending after this time (a Date, an ISO 8601 string or epoch ms). */
  start?: Date | string | number;
  /** Only windows starting before this time (a Date, an ISO 8601 string or epoch ms). */
  end?: Date | string | number;
  /** Items read per Query call (the reader still reads every page). @default DynamoDB's 1 MB pages */
  pageSize?: number;
}

/**
 * One window of one entity's usage of one resource.
 *
 * @example
 * ```ts
 * import { formatUsageChart, type UsageSnapshot } from "./usage.ts";
 * const hour: UsageSnapshot = { entityId: "key-1", resource: "gpt-4", window: "hourly",
 *   windowStart: "2026-11-28T13:00:00Z", windowEnd: "2026-11-28T14:00:00Z",
 *   consumed: { rpm: 12, tpm: 5_320 }, requests: 12 };
 * console.assert(formatUsageChart([hour], { width: 1 }) === "2026-11-28T13:00:00Z  █  12");
 * ```
 */
export interface UsageSnapshot {
  /** The entity. */
  entityId: string;
  /** The resource. */
  resource: string;
  /** The window type. */
  window: UsageWindow;
  /** Start of the window, e.g. `2026-11-28T13:00:00Z`. */
  windowStart: string;
  /** End of the window (exclusive). */
  windowEnd: string;
  /** Tokens consumed per limit name (adjustments included, rollbacks subtracted). */
  consumed: Record<string, number>;
  /** Requests admitted (rollbacks subtracted). */
  requests: number;
  /**
   * Requests admitted without consuming because the entity had bypass on (hourly windows only;
   * absent when none).
   */
  bypassed?: number;
  /**
   * Acquires refused (`RateLimitExceeded`), counted under the entity that asked and the call's
   * resource by the limiters that refused them (`RateLimiterOptions.refusalCounts`; hourly windows
   * only; absent when none).
   */
  refused?: number;
}

/**
 * The busiest window of a {@link UsageSummary}.
 *
 * @example
 * ```ts ignore
 * import { getUsageSummary } from "./usage.ts";
 * const s = await getUsageSummary(client, "rate_limits", { entityId: "proj-1", window: "hourly",
 *   peakBy: "tpm" });
 * if (s.peak) console.log(`busiest hour: ${s.peak.windowStart}, ${s.peak.consumed.tpm} tokens`);
 * ```
 */
export interface UsagePeak {
  /** Start of the window. */
  windowStart: string;
  /** Tokens consumed per limit in that window (all resources asked for). */
  consumed: Record<string, number>;
  /** Requests in that window. */
  requests: number;
}

/**
 * Totals over the snapshots of a {@link UsageQuery}.
 *
 * @example
 * ```ts ignore
 * import { getUsageSummary } from "./usage.ts";
 * const s = await getUsageSummary(client, "rate_limits", { entityId: "proj-1", window: "daily" });
 * console.log(`${s.windows} days, ${s.total.tpm} tokens, ${s.average.tpm} a day`);
 * ```
 */
export interface UsageSummary {
  /** The entity. */
  entityId: string;
  /** The resource, when the query named one. */
  resource?: string;
  /** The window type. */
  window: UsageWindow;
  /** Windows with usage (a window of several resources counts once). */
  windows: number;
  /** Tokens consumed per limit over all windows. */
  total: Record<string, number>;
  /** Requests over all windows. */
  requests: number;
  /** Bypassed requests over all windows (hourly windows only: see `UsageSnapshot.bypassed`). */
  bypassed: number;
  /** Refused acquires over all windows (hourly windows only: see `UsageSnapshot.refused`). */
  refused: number;
  /** Tokens per window with usage, per limit. */
  average: Record<string, number>;
  /** Requests per window with usage. */
  averageRequests: number;
  /** The window with the most requests (or the most of `peakBy`); the earliest on a tie. */
  peak: UsagePeak | undefined;
}

/**
 * Every snapshot matching the query (all pages), ordered by resource, then time.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { getUsageSnapshots } from "./usage.ts";
 * const client = new DynamoDBClient({ endpoint: "http://localhost:8000" });
 * const hours = await getUsageSnapshots(client, "rate_limits", {
 *   entityId: "key-abc", resource: "gpt-4", window: "hourly", start: "2026-11-28T00:00:00Z",
 * });
 * for (const h of hours) console.log(h.windowStart, h.consumed.tpm, h.requests);
 * ```
 */
export async function getUsageSnapshots(
  client: aws.DynamoDBClient,
  tableName: string,
  query: UsageQuery,
  space: KeySpace = KeySpace.DEFAULT,
): Promise<UsageSnapshot[]> {
  const out: UsageSnapshot[] = [];
  for await (const snapshot of iterUsageSnapshots(client, tableName, query, space)) {
    out.push(snapshot);
  }
  return out;
}

/**
 * The snapshots matching the query, one page at a time, ordered by resource, then time. The
 * query is checked before the first read.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { iterUsageSnapshots } from "./usage.ts";
 * const client = new DynamoDBClient({ endpoint: "http://localhost:8000" });
 * for await (const day of iterUsageSnapshots(client, "rate_limits", { entityId: "proj-1", window: "daily" })) {
 *   console.log(day.resource, day.windowStart, day.requests);
 * }
 * ```
 */
export function iterUsageSnapshots(
  client: aws.DynamoDBClient,
  tableName: string,
  query: UsageQuery,
  space: KeySpace = KeySpace.DEFAULT,
): AsyncGenerator<UsageSnapshot> {
  const q = validateQuery(tableName, query, space);
  return readSnapshots(client, tableName, q);
}

/**
 * Totals, averages per window and the peak window of the snapshots matching the query.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { getUsageSummary } from "./usage.ts";
 * const client = new DynamoDBClient({ endpoint: "http://localhost:8000" });
 * const s = await getUsageSummary(client, "rate_limits", { entityId: "proj-1", window: "daily" });
 * console.log(s.total.tpm, s.average.tpm, s.peak?.windowStart);
 * ```
 */
export async function getUsageSummary(
  client: aws.DynamoDBClient,
  tableName: string,
  query: UsageQuery & {
    /** Pick the peak window by this limit's consumption. @default by requests */
    peakBy?: string;
  },
  space: KeySpace = KeySpace.DEFAULT,
): Promise<UsageSummary> {
  const q = validateQuery(tableName, query, space);
  const peakBy = query.peakBy === undefined ? undefined : validateLimitName(query.peakBy, "peakBy");
  // Sums in thousandths (exact), per window start.
  const byWindow = new Map<string, { consumed: Map<string, bigint>; requests: bigint }>();
  const total = new Map<string, bigint>();
  let requests = 0n;
  let bypassed = 0n;
  let refused = 0n;
  for await (const raw of readRaw(client, tableName, q)) {
    bypassed += raw.bypassed;
    refused += raw.refused;
    const w = byWindow.get(raw.windowStart) ?? { consumed: new Map(), requests: 0n };
    for (const [limit, m] of raw.consumed) {
      w.consumed.set(limit, (w.consumed.get(limit) ?? 0n) + m);
      total.set(limit, (total.get(limit) ?? 0n) + m);
    }
    w.requests += raw.requests;
    requests += raw.requests;
    byWindow.set(raw.windowStart, w);
  }
  const windows = byWindow.size;
  let peak: UsagePeak | undefined;
  let peakScore = 0n;
  for (const [windowStart, w] of [...byWindow].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const score = peakBy === undefined ? w.requests : w.consumed.get(peakBy) ?? 0n;
    if (peak === undefined || score > peakScore) {
      peak = { windowStart, consumed: tokens(w.consumed), requests: Number(w.requests) };
      peakScore = score;
    }
  }
  const average: Record<string, number> = {};
  for (const [limit, m] of total) average[limit] = windows ? Number(m) / 1000 / windows : 0;
  const summary: UsageSummary = {
    entityId: q.entityId,
    window: q.window,
    windows,
    total: tokens(total),
    requests: Number(requests),
    bypassed: Number(bypassed),
    refused: Number(refused),
    average,
    averageRequests: windows ? Number(requests) / windows : 0,
    peak,
  };
  if (q.resource !== undefined) summary.resource = q.resource;
  return summary;
}

interface ValidQuery {
  entityId: string;
  /** The entity's partition key, in the namespace read. */
  pk: string;
  resource?: string;
  window: UsageWindow;
  /** Lowest window start wanted (ISO), inclusive. */
  from?: string;
  /** Highest window start wanted (ISO), inclusive. */
  to?: string;
  pageSize?: number;
}

function validateQuery(tableName: string, query: UsageQuery, space: KeySpace): ValidQuery {
  if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new ValidationError(
      "tableName",
      tableName,
      "must be 3-255 characters of letters, digits, _ . -",
    );
  }
  checkObject("options", query);
  const entityId = validateEntityId(query.entityId);
  const resource = query.resource === undefined ? undefined : validateResource(query.resource);
  if (!isUsageWindow(query.window)) {
    throw new ValidationError("window", query.window, 'must be "hourly" or "daily"');
  }
  const window = query.window;
  const startMs = query.start === undefined ? undefined : timeOf("start", query.start);
  const endMs = query.end === undefined ? undefined : timeOf("end", query.end);
  if (startMs !== undefined && endMs !== undefined && endMs <= startMs) {
    throw new ValidationError(
      "end",
      query.end,
      `must be after start (${new Date(startMs).toISOString()})`,
    );
  }
  // Windows overlapping [start, end): start ≤ windowStart's window, windowStart < end.
  const from = startMs === undefined ? undefined : isoSeconds(windowAt(window, startMs).startMs);
  const to = endMs === undefined ? undefined : isoSeconds(windowAt(window, endMs - 1).startMs);
  const pageSize = query.pageSize;
  if (pageSize !== undefined && !(Number.isInteger(pageSize) && pageSize >= 1)) {
    throw new ValidationError("pageSize", pageSize, "must be a whole number >= 1");
  }
  return { entityId, pk: space.entityPk(entityId), resource, window, from, to, pageSize };
}

function timeOf(field: string, value: unknown): number {
  const ms = value instanceof Date
    ? value.getTime()
    : typeof value === "number"
    ? value
    : typeof value === "string" && /^\d{4}-\d{2}-\d{2}/.test(value)
    ? Date.parse(value)
    : NaN;
  if (!Number.isFinite(ms) || ms < 0 || ms >= 253_402_300_800_000) {
    throw new ValidationError(
      field,
      value,
      "must be a Date, an ISO 8601 time (e.g. 2026-11-28T13:00:00Z) or epoch ms, in years 1970-9999",
    );
  }
  return ms;
}

interface RawSnapshot {
  entityId: string;
  resource: string;
  window: UsageWindow;
  windowStart: string;
  windowEnd: string;
  consumed: Map<string, bigint>;
  requests: bigint;
  bypassed: bigint;
  refused: bigint;
}

async function* readSnapshots(
  client: DynamoDBClient,
  tableName: string,
  q: ValidQuery,
): AsyncGenerator<UsageSnapshot> {
  for await (const raw of readRaw(client, tableName, q)) {
    yield {
      entityId: raw.entityId,
      resource: raw.resource,
      window: raw.window,
      windowStart: raw.windowStart,
      windowEnd: raw.windowEnd,
      consumed: tokens(raw.consumed),
      requests: Number(raw.requests),
      ...(raw.bypassed > 0n ? { bypassed: Number(raw.bypassed) } : {}),
      ...(raw.refused > 0n ? { refused: Number(raw.refused) } : {}),
    };
  }
}

async function* readRaw(
  client: DynamoDBClient,
  tableName: string,
  q: ValidQuery,
): AsyncGenerator<RawSnapshot> {
  const names: Record<string, string> = { "#pk": "PK", "#sk": "SK" };
  const values: Record<string, AttributeValue> = { ":pk": { S: q.pk } };
  let keyCondition: string;
  let filter: string | undefined;
  if (q.resource !== undefined) {
    // One resource and window type: the sort key orders by time, so the range is a key range.
    const prefix = usagePrefix(q.resource, q.window);
    values[":lo"] = { S: prefix + (q.from ?? "") };
    values[":hi"] = { S: prefix + (q.to ?? "~") };
    keyCondition = "#pk = :pk AND #sk BETWEEN :lo AND :hi";
  } else {
    values[":prefix"] = { S: usagePrefix() };
    keyCondition = "#pk = :pk AND begins_with(#sk, :prefix)";
    names["#w"] = "window";
    values[":w"] = { S: q.window };
    const parts = ["#w = :w"];
    if (q.from !== undefined || q.to !== undefined) names["#ws"] = "windowStart";
    if (q.from !== undefined) {
      values[":from"] = { S: q.from };
      parts.push("#ws >= :from");
    }
    if (q.to !== undefined) {
      values[":to"] = { S: q.to };
      parts.push("#ws <= :to");
    }
    filter = parts.join(" AND ");
  }
  for await (
    const items of queryPages(client, {
      TableName: tableName,
      KeyConditionExpression: keyCondition,
      FilterExpression: filter,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
      Limit: q.pageSize,
    })
  ) {
    for (const item of items) {
      const raw = parseSnapshot(item);
      if (raw !== undefined) yield raw;
    }
  }
}

function parseSnapshot(item: Record<string, AttributeValue>): RawSnapshot | undefined {
  const window = item.window?.S;
  if (!isUsageWindow(window)) return undefined;
  const consumed = new Map<string, bigint>();
  for (const [name, value] of Object.entries(item)) {
    if (name.startsWith(CONSUMED_PREFIX) && value.N !== undefined) {
      consumed.set(name.slice(CONSUMED_PREFIX.length), BigInt(value.N));
    }
  }
  return {
    entityId: item.entityId?.S ?? "",
    resource: item.resource?.S ?? "",
    window,
    windowStart: item.windowStart?.S ?? "",
    windowEnd: item.windowEnd?.S ?? "",
    consumed,
    requests: BigInt(item.rq?.N ?? "0"),
    bypassed: BigInt(item.bypassed?.N ?? "0"),
    refused: BigInt(item.refused?.N ?? "0"),
  };
}

function tokens(milli: Map<string, bigint>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [limit, m] of [...milli].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out[limit] = Number(m) / 1000;
  }
  return out;
}

/**
 * Options of {@link formatUsageChart}.
 *
 * @example
 * ```ts
 * import { formatUsageChart, type UsageChartOptions } from "./usage.ts";
 * const options: UsageChartOptions = { metric: "tpm", width: 2 };
 * const chart = formatUsageChart([{ entityId: "k", resource: "gpt-4", window: "daily",
 *   windowStart: "2026-11-28T00:00:00Z", windowEnd: "2026-11-29T00:00:00Z",
 *   consumed: { tpm: 900 }, requests: 3 }], options);
 * console.assert(chart === "2026-11-28T00:00:00Z  ██  900");
 * ```
 */
export interface UsageChartOptions {
  /** What to plot: `"requests"` or a limit name. @default "requests" */
  metric?: string;
  /** Width of the longest bar, in characters. @default 40 */
  width?: number;
}

/**
 * A text bar chart of snapshots over time, one line per window (several resources in one window
 * are summed), for `zae-limiter usage list --plot`. Bars scale to the largest value; a negative
 * value (a rollback in a later window) has no bar.
 *
 * @example
 * ```ts
 * import { formatUsageChart } from "./usage.ts";
 * const chart = formatUsageChart([
 *   { entityId: "k", resource: "gpt-4", window: "hourly", windowStart: "2026-11-28T08:00:00Z",
 *     windowEnd: "2026-11-28T09:00:00Z", consumed: { tpm: 100 }, requests: 1 },
 *   { entityId: "k", resource: "gpt-4", window: "hourly", windowStart: "2026-11-28T09:00:00Z",
 *     windowEnd: "2026-11-28T10:00:00Z", consumed: { tpm: 400 }, requests: 2 },
 * ], { metric: "tpm", width: 4 });
 * console.assert(chart === "2026-11-28T08:00:00Z  █     100\n2026-11-28T09:00:00Z  ████  400");
 * ```
 */
export function formatUsageChart(
  snapshots: readonly UsageSnapshot[],
  options: UsageChartOptions = {},
): string {
  const { metric = "requests", width = 40 } = options;
  if (metric !== "requests") validateLimitName(metric, "metric");
  if (!(Number.isInteger(width) && width >= 1 && width <= 1000)) {
    throw new ValidationError("width", width, "must be a whole number from 1 to 1000");
  }
  const byWindow = new Map<string, number>();
  for (const s of snapshots) {
    const value = metric === "requests" ? s.requests : s.consumed[metric] ?? 0;
    byWindow.set(s.windowStart, (byWindow.get(s.windowStart) ?? 0) + value);
  }
  const rows = [...byWindow].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const max = Math.max(0, ...rows.map(([, v]) => v));
  const shown = rows.map(([, v]) => String(Math.round(v * 1000) / 1000));
  const valueWidth = Math.max(0, ...shown.map((v) => v.length));
  return rows.map(([start, v], i) => {
    const bar = max > 0 && v > 0 ? "█".repeat(Math.max(1, Math.round((v / max) * width))) : "";
    return `${start}  ${bar.padEnd(width)}  ${shown[i].padStart(valueWidth)}`;
  }).join("\n");
}
