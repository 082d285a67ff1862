/**
 * The health check behind `RateLimiter.ping()` and `zae-limiter check`: one `DescribeTable`,
 * timed with the real clock, and what its answer says about the table (status, keys, the indexes
 * the library queries, the stream). It never throws for an outage or a misconfiguration: it
 * reports them, classified as `limiterError` classifies any call (`failure.ts`).
 *
 * @module
 */

import { DescribeTableCommand, type TableDescription } from "@aws-sdk/client-dynamodb";
import type * as aws from "./aws_types.ts";
import { send } from "./calls.ts";
import { ConfigurationError, type ConfigurationErrorKind } from "./errors.ts";
import { limiterError, misconfigurationMessage, type Whereabouts } from "./failure.ts";
import * as keys from "./keys.ts";

/**
 * Why a table is not healthy: a {@link ConfigurationError} kind (`table-not-found`,
 * `table-schema`, `access-denied`, `bad-credentials`, `region-missing`, `invalid-request`),
 * `table-not-active` (the table or a needed index is being created or deleted), or `unavailable`
 * (DynamoDB did not answer in time, or answered that it is overloaded or broken: an outage).
 *
 * @example
 * ```ts
 * import type { PingProblemKind } from "./ping.ts";
 * const retryLater = (kind: PingProblemKind) => kind === "unavailable"; // an outage
 * console.assert(retryLater("unavailable") && !retryLater("table-not-found"));
 * ```
 */
export type PingProblemKind = ConfigurationErrorKind | "table-not-active" | "unavailable";

/**
 * One thing {@link RateLimiter.ping} checked.
 *
 * @example
 * ```ts
 * import type { PingCheck } from "./ping.ts";
 * const check: PingCheck = { name: "GSI3", status: "warning", detail: "missing" };
 * console.assert(check.status === "warning");
 * ```
 */
export interface PingCheck {
  /** What: `reachable`, `table`, `keys`, `GSI1`, `GSI2`, `GSI3`, `stream` (`backend` in memory). */
  name: string;
  /** `ok`; `warning` (works, but see `detail`); `failed` (the limiter cannot work so). */
  status: "ok" | "warning" | "failed";
  /** What was found, on one line. */
  detail: string;
}

/**
 * What {@link RateLimiter.ping} found.
 *
 * @example
 * ```ts
 * import { createTestLimiter } from "./testing/mod.ts";
 * const result = await createTestLimiter().ping();
 * console.assert(result.ok && result.latencyMs === 0 && result.problem === undefined);
 * ```
 */
export interface PingResult {
  /** The table answered, is active, and has the keys and indexes the library needs. */
  ok: boolean;
  /** Why not, when `ok` is false (and only then). */
  problem?: { kind: PingProblemKind; message: string };
  /** The table. */
  tableName: string;
  /** The region, when known. */
  region?: string;
  /** The endpoint, when one is set. */
  endpoint?: string;
  /** Where the limiter stores its state. */
  backend: "dynamodb" | "memory";
  /** How long the `DescribeTable` call took (or took to fail), whole ms of the real clock. */
  latencyMs: number;
  /** DynamoDB's status of the table (`ACTIVE`, `UPDATING`, …), when it answered. */
  tableStatus?: string;
  /** The table lacks index GSI3 (schema version 1): `zae-limiter upgrade` adds it. */
  upgradeNeeded: boolean;
  /** What was checked, in order; the checks after a failed call are not made. */
  checks: PingCheck[];
  /** Things that work but should be looked at (each also a `warning` check). */
  warnings: string[];
}

/** What {@link pingTable} needs. */
export interface PingTableOptions {
  /** The limiter's client. */
  client: aws.DynamoDBClient;
  /** The table, and where it is (for the result and the messages). */
  where: Whereabouts;
  /** The call's deadline, ms. */
  timeoutMs: number;
}

/** Index GSI3 (`ENTITIES` → entity ids), added by schema version 2. */
const GSI3 = "GSI3";

/**
 * One `DescribeTable` through the limiter's client, timed, and the table it describes assessed
 * ({@link assessTable}). Outages and misconfigurations are returned, never thrown.
 */
export async function pingTable(options: PingTableOptions): Promise<PingResult> {
  const { client, where, timeoutMs } = options;
  const base = {
    tableName: where.tableName,
    ...(where.region ? { region: where.region } : {}),
    ...(where.endpoint ? { endpoint: where.endpoint } : {}),
    backend: "dynamodb" as const,
  };
  const started = performance.now();
  const elapsed = () => Math.max(0, Math.round(performance.now() - started));
  let table: TableDescription | undefined;
  try {
    const out = await send(
      client,
      DescribeTableCommand,
      { TableName: where.tableName },
      AbortSignal.timeout(timeoutMs),
    );
    table = out.Table;
  } catch (err) {
    const latencyMs = elapsed();
    const error = limiterError(err, "ping (DescribeTable)", where);
    const kind: PingProblemKind = error instanceof ConfigurationError ? error.kind : "unavailable";
    return {
      ok: false,
      problem: { kind, message: error.message },
      ...base,
      latencyMs,
      upgradeNeeded: false,
      checks: [{ name: "reachable", status: "failed", detail: error.message }],
      warnings: [],
    };
  }
  const latencyMs = elapsed();
  const assessed = assessTable(table ?? {}, where);
  return {
    ok: assessed.problem === undefined,
    ...(assessed.problem ? { problem: assessed.problem } : {}),
    ...base,
    latencyMs,
    ...(table?.TableStatus ? { tableStatus: table.TableStatus } : {}),
    upgradeNeeded: assessed.upgradeNeeded,
    checks: [
      { name: "reachable", status: "ok", detail: `DescribeTable answered in ${latencyMs} ms` },
      ...assessed.checks,
    ],
    warnings: assessed.checks.filter((c) => c.status === "warning").map((c) =>
      `${c.name}: ${c.detail}`
    ),
  };
}

/** The answer of an in-memory backend: nothing to reach, always healthy. */
export function memoryPing(tableName: string): PingResult {
  return {
    ok: true,
    tableName,
    backend: "memory",
    latencyMs: 0,
    upgradeNeeded: false,
    checks: [{ name: "backend", status: "ok", detail: "in memory: no table to reach" }],
    warnings: [],
  };
}

/** An index the library needs: its keys, and whether it must project every attribute. */
interface IndexNeed {
  name: string;
  hash: string;
  range: string;
  all: boolean;
  /** What it serves, for the messages. */
  serves: string;
}

const NEEDED_INDEXES: IndexNeed[] = [
  { name: keys.GSI1, hash: "GSI1PK", range: "GSI1SK", all: true, serves: "children of a parent" },
  { name: keys.GSI2, hash: "GSI2PK", range: "GSI2SK", all: false, serves: "buckets of a resource" },
];

const ENTITIES_INDEX: IndexNeed = {
  name: GSI3,
  hash: "GSI3PK",
  range: "GSI3SK",
  all: true,
  serves: "the entity list",
};

/**
 * What a `DescribeTable` answer says: one check for the table's status, its keys, each index and
 * the stream; the first failure as the problem; whether GSI3 is missing (an upgrade).
 */
export function assessTable(
  table: TableDescription,
  where: Whereabouts,
): { checks: PingCheck[]; problem?: PingResult["problem"]; upgradeNeeded: boolean } {
  const checks: PingCheck[] = [];
  let problem: PingResult["problem"];
  const fail = (name: string, kind: PingProblemKind, detail: string, message: string) => {
    checks.push({ name, status: "failed", detail });
    problem ??= { kind, message };
  };
  const schemaFail = (name: string, detail: string) =>
    fail(
      name,
      "table-schema",
      detail,
      misconfigurationMessage("table-schema", new Error(detail), where, "ping"),
    );
  const notActive = (name: string, detail: string) =>
    fail(
      name,
      "table-not-active",
      detail,
      `${name === "table" ? "" : `Index ${name} of `}Table "${where.tableName}" is ${detail}: ` +
        "wait until it is ACTIVE (zae-limiter status shows it)",
    );
  const types = new Map(
    (table.AttributeDefinitions ?? []).map((a) => [a.AttributeName, a.AttributeType]),
  );
  const keyProblem = (
    schema: TableDescription["KeySchema"],
    hash: string,
    range: string,
  ): string | undefined => {
    const shown =
      (schema ?? []).map((k) =>
        `${k.AttributeName} (${k.KeyType}, ${types.get(k.AttributeName) ?? "?"})`
      ).join(", ") || "none";
    const h = schema?.find((k) => k.KeyType === "HASH")?.AttributeName;
    const r = schema?.find((k) => k.KeyType === "RANGE")?.AttributeName;
    if (h !== hash || r !== range || types.get(hash) !== "S" || types.get(range) !== "S") {
      return `keys are ${shown}; expected ${hash} (HASH, S), ${range} (RANGE, S)`;
    }
    return undefined;
  };

  const status = table.TableStatus ?? "UNKNOWN";
  if (status === "ACTIVE") checks.push({ name: "table", status: "ok", detail: "ACTIVE" });
  else if (status === "UPDATING") {
    checks.push({
      name: "table",
      status: "warning",
      detail: "UPDATING: a setting or an index is changing; reads and writes still work",
    });
  } else notActive("table", status);

  const tableKeys = keyProblem(table.KeySchema, keys.PK, keys.SK);
  if (tableKeys) schemaFail("keys", `the table's ${tableKeys}`);
  else checks.push({ name: "keys", status: "ok", detail: "PK (HASH, S), SK (RANGE, S)" });

  const indexes = new Map((table.GlobalSecondaryIndexes ?? []).map((i) => [i.IndexName, i]));
  let upgradeNeeded = false;
  for (const need of [...NEEDED_INDEXES, ENTITIES_INDEX]) {
    const index = indexes.get(need.name);
    const optional = need === ENTITIES_INDEX;
    if (!index) {
      if (optional) {
        upgradeNeeded = true;
        checks.push({
          name: need.name,
          status: "warning",
          detail: `missing (schema version 1): ${need.serves} needs it; ` +
            "`zae-limiter upgrade` adds it",
        });
      } else schemaFail(need.name, `index ${need.name} (${need.serves}) is missing`);
      continue;
    }
    const wrongKeys = keyProblem(index.KeySchema, need.hash, need.range);
    const projection = index.Projection?.ProjectionType ?? "?";
    const indexStatus = index.IndexStatus ?? "ACTIVE";
    if (wrongKeys) schemaFail(need.name, `index ${need.name}'s ${wrongKeys}`);
    else if (need.all && projection !== "ALL") {
      schemaFail(need.name, `index ${need.name} projects ${projection}; expected ALL`);
    } else if (indexStatus === "ACTIVE" || indexStatus === "UPDATING") {
      checks.push({
        name: need.name,
        status: "ok",
        detail: `${need.hash}/${need.range}, ${projection}, ${indexStatus}`,
      });
    } else if (optional) {
      checks.push({
        name: need.name,
        status: "warning",
        detail: `${indexStatus}: ${need.serves} works once it is ACTIVE`,
      });
    } else notActive(need.name, indexStatus);
  }

  const stream = table.StreamSpecification;
  if (stream?.StreamEnabled && stream.StreamViewType === "NEW_AND_OLD_IMAGES") {
    checks.push({ name: "stream", status: "ok", detail: "NEW_AND_OLD_IMAGES" });
  } else {
    checks.push({
      name: "stream",
      status: "warning",
      detail: `${
        stream?.StreamEnabled ? `${stream.StreamViewType}, not NEW_AND_OLD_IMAGES` : "off"
      }: the usage aggregator cannot run (no usage snapshots, no resource index); limits still apply`,
    });
  }
  return { checks, ...(problem ? { problem } : {}), upgradeNeeded };
}
