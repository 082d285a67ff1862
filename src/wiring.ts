/**
 * Assembles a {@link RateLimiter}'s parts from its options: checks the options, then makes the
 * client, the backend, the table set-up, the server-checked clock, and the write engine, config
 * resolver, reads and admin that the facade delegates to.
 *
 * @module
 */

import { type AdminCall, adminCaller } from "./admin_call.ts";
import type * as aws from "./aws_types.ts";
import { type Backend, dynamoBackend } from "./backend.ts";
import { EntityAdmin } from "./admin.ts";
import { Auditor, DEFAULT_AUDIT_RETENTION_DAYS } from "./audit.ts";
import { BucketAdmin } from "./bucket_admin.ts";
import { ControlAdmin } from "./controls.ts";
import { DefaultsAdmin } from "./defaults.ts";
import { principalOf } from "./identity.ts";
import { misconfiguration } from "./failure.ts";
import { probeTable, serverClockOf } from "./clock.ts";
import { ConfigResolver } from "./config.ts";
import { LeaseEngine } from "./engine/leases.ts";
import { Outbox } from "./engine/outbox.ts";
import { BucketWriter } from "./engine/writer.ts";
import { AutoSharder } from "./engine/autoshard.ts";
import { switchDelayMs } from "./engine/shards.ts";
import { batchSettings } from "./engine/batches.ts";
import { RateLimiterUnavailable, ValidationError } from "./errors.ts";
import { FailureMode, type RateLimiterOptions } from "./options.ts";
import { SCHEMA_VERSION } from "./keys.ts";
import { BucketReader } from "./reads.ts";
import { checkFailureMode } from "./request.ts";
import { makeClient, TableSetup, whereabouts } from "./setup.ts";
import { type PingResult, pingTable } from "./ping.ts";
import { checkBoolean, checkObject } from "./validate.ts";
import { SchemaGate } from "./schema.ts";
import { type EntityListPage, listEntities, type ListEntitiesOptions } from "./entity_list.ts";
import { KeySpace } from "./keyspace.ts";
import { Telemetry } from "./telemetry.ts";
import { causeName, checkLogger, errorName, type Logger, LogThrottle, logTo } from "./logger.ts";
import { RefusalCounter, type RefusalSettings, refusalSettings } from "./refusals.ts";

/** What a {@link RateLimiter} is made of. */
export interface LimiterParts {
  tableName: string;
  /** The namespace's keys. */
  keys: KeySpace;
  client: aws.DynamoDBClient;
  /** The limiter made the client (and closes it). */
  ownsClient: boolean;
  outbox: Outbox;
  leases: LeaseEngine;
  reader: BucketReader;
  admin: EntityAdmin;
  /** `RateLimiter.listEntities`. */
  listEntities: (options?: ListEntitiesOptions) => Promise<EntityListPage>;
  /** `RateLimiter`'s resource and system defaults. */
  defaults: DefaultsAdmin;
  /** `RateLimiter`'s reset and top-up. */
  buckets: BucketAdmin;
  /** `RateLimiter`'s entity and resource controls. */
  controls: ControlAdmin;
  createTable: () => Promise<void>;
  /** The health check (`ping.ts`), or the backend's own. */
  ping: () => Promise<PingResult>;
  closeTimeoutMs: number;
  /** Where the library's warnings go (the `logger` option, else the console). */
  logger: Logger;
  /** OpenTelemetry metrics and spans (no-op without a registered SDK); closed with the limiter. */
  telemetry: Telemetry;
  /** The limiter's clock, epoch ms: the server-corrected one, or the injected `clock`. */
  clock: () => number;
  /** Runs an admin call (deadline, retries, failure as the limiter's error): `admin_call.ts`. */
  run: AdminCall;
  /** The limiter talks to DynamoDB through `client` (no custom `backend` option). */
  dynamo: boolean;
  /** Refusal counts (`refusalCounts`), or `undefined` when off. */
  refusals?: RefusalCounter;
}

/** Checks the options and makes the parts; throws `ValidationError` before anything is sent. */
export function assemble(options: RateLimiterOptions): LimiterParts {
  checkObject("options", options);
  const {
    tableName,
    region,
    endpoint,
    client,
    createTable = false,
    failureMode = FailureMode.FAIL_CLOSED,
    clock,
    clockToleranceMs = 1000,
    timeoutMs = 2000,
    limitsCacheTtlMs = 60_000,
    denyCache = true,
    maxCachedBuckets = 10_000,
    backend,
    recordFailedOpen = true,
    batches,
    autoShard = true,
    closeTimeoutMs = 5_000,
    createStack = false,
    principal: auditPrincipal,
    auditRetentionDays,
    stsEndpoint,
    namespace,
    shadow = false,
    onShadowRefusal,
    logger: loggerOption,
    refusalCounts,
  } = options;
  const logger = checkLogger(loggerOption);
  checkBoolean("shadow", shadow);
  if (onShadowRefusal !== undefined && typeof onShadowRefusal !== "function") {
    throw new ValidationError("onShadowRefusal", onShadowRefusal, "must be a function");
  }
  const space = KeySpace.of(namespace);
  if (
    auditPrincipal !== undefined &&
    (typeof auditPrincipal !== "string" || auditPrincipal.length === 0 ||
      auditPrincipal.length > 256)
  ) {
    throw new ValidationError(
      "principal",
      auditPrincipal,
      "must be a string of 1 to 256 characters",
    );
  }
  if (
    auditRetentionDays !== undefined &&
    !(Number.isInteger(auditRetentionDays) && auditRetentionDays >= 1 &&
      auditRetentionDays <= 3650)
  ) {
    throw new ValidationError(
      "auditRetentionDays",
      auditRetentionDays,
      "must be a whole number of days from 1 to 3650",
    );
  }
  if (stsEndpoint !== undefined && !isHttpUrl(stsEndpoint)) {
    throw new ValidationError("stsEndpoint", stsEndpoint, "must be an http(s) URL");
  }
  if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new ValidationError(
      "tableName",
      tableName,
      "must be 3-255 characters of letters, digits, _ . -",
    );
  }
  checkFailureMode("failureMode", failureMode);
  const refusalOptions = refusalSettings(refusalCounts);
  const batchOptions = batchSettings(batches, "batches", (field, value, rule) => {
    throw new ValidationError(field, value, rule);
  });
  if (clock !== undefined && typeof clock !== "function") {
    throw new ValidationError("clock", clock, "must be a function");
  }
  if (!(clockToleranceMs >= 0)) {
    throw new ValidationError("clockToleranceMs", clockToleranceMs, "must be a number >= 0");
  }
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new ValidationError("timeoutMs", timeoutMs, "must be a finite number > 0");
  }
  checkBoolean("autoShard", autoShard);
  if (!(limitsCacheTtlMs >= 0)) {
    throw new ValidationError("limitsCacheTtlMs", limitsCacheTtlMs, "must be a number >= 0");
  }
  const dynamo = client ?? makeClient({ region, endpoint });
  const telemetry = new Telemetry({ tableName });
  const store: Backend = backend === undefined
    ? dynamoBackend(dynamo, tableName, space, telemetry)
    : namespaced(backend, space, namespace);
  const setup = new TableSetup({
    backend: store,
    tableName,
    createTable,
    createStack: createStack === false
      ? undefined
      : { ...(createStack === true ? {} : createStack), region, endpoint },
  });
  // The default clock is checked against DynamoDB's answers, and the first write waits for one
  // (docs/design.md, "Clocks"); an injected clock is left alone.
  const server = clock === undefined && backend === undefined
    ? serverClockOf(dynamo, {
      toleranceMs: clockToleranceMs,
      warn: (message, fields) => logTo(logger, "warn", message, fields),
    })
    : undefined;
  const now = server?.now ?? clock ?? Date.now;
  // The schema version: told by the clock probe's answer, else read once by the first call that
  // checks it (docs/design.md, "Schema versions and upgrade").
  const catalog = store.catalog;
  const gate = new SchemaGate({
    tableName,
    read: (signal) => catalog ? catalog.readVersion(signal) : Promise.resolve(SCHEMA_VERSION),
    transient: (err) => misconfiguration(err) === undefined,
    warn: (message, fields) => logTo(logger, "warn", message, fields),
  });
  const probe = probeTable(dynamo, tableName, (v) => gate.observe(v));
  // Waits for the set-up, the first clock sample and the schema version; returns how long the
  // set-up took, which a call's deadline does not count (creating a table or stack takes longer
  // than a request). With an injected clock or backend (no probe), the hot path leaves the version
  // to the first admin call.
  const readyFor = (admin: boolean) => async (deadline = Date.now() + timeoutMs) => {
    const started = Date.now();
    await setup.ready();
    const setupMs = Date.now() - started;
    await server?.ready(probe, deadline + setupMs, (err) => misconfiguration(err) !== undefined);
    if (admin || server) await gate.ready(deadline + setupMs);
    else gate.check(); // known from an earlier admin call: no call here
    return setupMs;
  };
  const ready = readyFor(false);
  const adminReady = readyFor(true);
  const outbox = new Outbox({
    attemptMs: timeoutMs,
    isTransient: (err) => err instanceof RateLimiterUnavailable,
    // Never the label: it names the entity (docs/usage.md, "Logs").
    onGiveUp: ({ operation: named = "write", resource }, err) => {
      const operation = named.replaceAll(" ", "_"); // "batch return" → batch_return
      logTo(
        logger,
        "error",
        `zae-limiter: gave up on a ${operation} write${
          resource === undefined ? "" : ` to resource ${resource}`
        } (${errorName(err)}); it is lost, see unresolvedWrites`,
        {
          event: "outbox.gave_up",
          table: tableName,
          namespace: space.name,
          operation,
          resource,
          error: errorName(err),
          cause: causeName(err),
        },
      );
    },
  });
  const where = whereabouts(tableName, dynamo, region, endpoint);
  const writer = new BucketWriter({
    backend: store,
    outbox: outbox,
    clock: now,
    denyCache,
    maxCachedBuckets,
    where,
    telemetry,
  });
  telemetry.observeOutbox(() => outbox.size);
  // A refresh runs at each use of a stale entry: in an outage, one line a minute says how many.
  const refreshFailures = new LogThrottle(60_000);
  const config = new ConfigResolver({
    backend: store,
    writer,
    ttlMs: limitsCacheTtlMs,
    maxEntries: maxCachedBuckets,
    onRefreshFailed: (resource, parts, err) => {
      const failures = refreshFailures.next();
      if (failures === 0) return;
      logTo(
        logger,
        "warn",
        `zae-limiter: ${failures} config refresh(es) failed (${errorName(err)}); ` +
          "the cached limits keep serving until twice limitsCacheTtlMs",
        {
          event: "config.refresh_failed",
          table: tableName,
          namespace: space.name,
          resource,
          parts,
          failures,
          error: errorName(err),
          cause: causeName(err),
        },
      );
    },
  });
  // A change of N takes over once every process's cached N can have caught up (the admin's and
  // auto-doubling's writes are abandoned after at most this long: see src/admin.ts).
  const switchDelay = switchDelayMs(
    limitsCacheTtlMs,
    clockToleranceMs,
    Math.max(timeoutMs, 10_000),
  );
  if (autoShard) {
    writer.onThrottle = new AutoSharder({
      backend: store,
      writer,
      forget: (id) => config.forget(id),
      timeoutMs,
      switchDelayMs: switchDelay,
    }).observe;
  }
  // A custom backend written before refusal counts may lack the call: counting is off, said once.
  const canCount = typeof store.entities.countRefused === "function";
  if (refusalOptions && !canCount) {
    logTo(
      logger,
      "warn",
      "zae-limiter: the backend has no entities.countRefused; refusals are not counted",
      { event: "refusals.unsupported", table: tableName, namespace: space.name },
    );
  }
  const refusals = refusalOptions && canCount
    ? refusalCounter(refusalOptions, store, writer, now, timeoutMs, logger, {
      table: tableName,
      namespace: space.name,
    })
    : undefined;
  const shared = { backend: store, writer, config, ready, timeoutMs };
  const leases = new LeaseEngine({
    ...shared,
    outbox: outbox,
    failureMode,
    recordFailedOpen,
    batches: batchOptions,
    shadow,
    onShadowRefusal,
    telemetry,
    onRefused: refusals && ((entityId, resource, atMs) => refusals.count(entityId, resource, atMs)),
  });
  const reader = new BucketReader(shared);
  // Who and how long: asked once, on the first audited change (never on the hot path).
  const auditor = new Auditor({
    principal: principalOf({
      client: backend === undefined ? dynamo : undefined,
      principal: auditPrincipal,
      stsEndpoint,
    }),
    retentionDays: auditRetentionDays ??
      (async () =>
        (await admin.auditCall("auditSettings", (signal) => store.entities.auditSettings(signal)))
          .retentionDays ?? DEFAULT_AUDIT_RETENTION_DAYS),
  });
  const admin: EntityAdmin = new EntityAdmin({
    ...shared,
    ready: adminReady,
    clock: now,
    switchDelayMs: switchDelay,
    auditor,
  });
  const buckets = new BucketAdmin({
    ...shared,
    ready: adminReady,
    auditor,
    keyRetentionDays: DEFAULT_AUDIT_RETENTION_DAYS,
  });
  const defaults = new DefaultsAdmin({ ...shared, ready: adminReady, auditor });
  const controls = new ControlAdmin({ ...shared, ready: adminReady, auditor });
  const run = adminCaller(writer, adminReady, timeoutMs);
  return {
    tableName,
    keys: space,
    client: dynamo,
    ownsClient: client === undefined,
    outbox,
    leases,
    reader,
    admin,
    listEntities: (options) =>
      listEntities({ catalog, run, requireCurrent: (op) => gate.require(op) }, options),
    defaults,
    buckets,
    controls,
    createTable: () => store.buckets.createTable(),
    ping: () =>
      store.ping ? store.ping(tableName) : pingTable({ client: dynamo, where, timeoutMs }),
    closeTimeoutMs,
    logger,
    telemetry,
    clock: now,
    run,
    dynamo: backend === undefined,
    refusals,
  };
}

/**
 * The refusal counter: writes through the backend with the writer's retries, keeps counts on an
 * outage (one warning a minute), and logs what it drops (docs/usage.md, "Logs").
 */
function refusalCounter(
  settings: RefusalSettings,
  store: Backend,
  writer: BucketWriter,
  clock: () => number,
  timeoutMs: number,
  logger: Logger,
  where: { table: string; namespace: string },
): RefusalCounter {
  const kept = new LogThrottle(60_000);
  const full = new LogThrottle(60_000);
  let droppedFull = 0;
  return new RefusalCounter({
    ...settings,
    clock,
    timeoutMs,
    write: (c, deadline) =>
      writer.call(
        undefined,
        (signal) => store.entities.countRefused(c.entityId, c.resource, c.hourMs, c.count, signal),
        deadline,
        "refusal_counts",
      ),
    isOutage: (err) => err instanceof RateLimiterUnavailable,
    onKept: (keys, err) => {
      const flushes = kept.next();
      if (flushes === 0) return;
      logTo(
        logger,
        "warn",
        `zae-limiter: ${flushes} refusal count flush(es) failed (${errorName(err)}); ` +
          `${keys} count(s) are kept for the next flush`,
        {
          event: "refusals.kept",
          ...where,
          keys,
          flushes,
          error: errorName(err),
          cause: causeName(err),
        },
      );
    },
    onLoss: ({ reason, refusals, keys, error }) => {
      // A full map drops one refusal at a time: one line a minute says how many.
      if (reason === "full") {
        droppedFull += refusals;
        if (full.next() === 0) return;
        refusals = droppedFull;
        droppedFull = 0;
      }
      logTo(
        logger,
        reason === "full" ? "warn" : "error",
        reason === "full"
          ? `zae-limiter: refusal counts are full (maxKeys ${settings.maxKeys}); ` +
            `${refusals} refusal(s) dropped`
          : reason === "closed"
          ? `zae-limiter: closed with ${refusals} refusal(s) in ${keys} count(s) not written`
          : `zae-limiter: ${refusals} refusal(s) not counted (${errorName(error)})`,
        {
          event: "refusals.dropped",
          ...where,
          reason,
          refusals,
          ...(reason === "full" ? {} : { keys }),
          ...(error === undefined ? {} : { error: errorName(error), cause: causeName(error) }),
        },
      );
    },
  });
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== "string") return false;
  try {
    return /^https?:$/.test(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** The given backend seen from the namespace; refused when it has no namespaces. */
function namespaced(backend: Backend, space: KeySpace, namespace: unknown): Backend {
  if (space === KeySpace.DEFAULT) return backend;
  if (typeof backend.forNamespace !== "function") {
    throw new ValidationError(
      "namespace",
      namespace,
      "needs a backend that serves namespaces (Backend.forNamespace); the one given has none",
    );
  }
  return backend.forNamespace(space);
}
