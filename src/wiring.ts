/**
 * Assembles a {@link RateLimiter}'s parts from its options: checks the options, then makes the
 * client, the backend, the table set-up, the server-checked clock, and the write engine, config
 * resolver, reads and admin that the facade delegates to.
 *
 * @module
 */

import type * as aws from "./aws_types.ts";
import { type Backend, dynamoBackend } from "./backend.ts";
import { EntityAdmin } from "./admin.ts";
import { Auditor } from "./audit.ts";
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
import { BucketReader } from "./reads.ts";
import { checkFailureMode } from "./request.ts";
import { makeClient, TableSetup, whereabouts } from "./setup.ts";
import { type PingResult, pingTable } from "./ping.ts";
import { checkBoolean, checkObject } from "./validate.ts";
import { KeySpace } from "./keyspace.ts";

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
  createTable: () => Promise<void>;
  /** The health check (`ping.ts`), or the backend's own. */
  ping: () => Promise<PingResult>;
  closeTimeoutMs: number;
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
    principal: auditPrincipal = "local",
    namespace,
  } = options;
  const space = KeySpace.of(namespace);
  if (
    typeof auditPrincipal !== "string" || auditPrincipal.length === 0 || auditPrincipal.length > 256
  ) {
    throw new ValidationError(
      "principal",
      auditPrincipal,
      "must be a string of 1 to 256 characters",
    );
  }
  if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new ValidationError(
      "tableName",
      tableName,
      "must be 3-255 characters of letters, digits, _ . -",
    );
  }
  checkFailureMode("failureMode", failureMode);
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
  const store: Backend = backend === undefined
    ? dynamoBackend(dynamo, tableName, space)
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
    ? serverClockOf(dynamo, { toleranceMs: clockToleranceMs })
    : undefined;
  const now = server?.now ?? clock ?? Date.now;
  const probe = probeTable(dynamo, tableName);
  // Waits for the set-up and the first clock sample; returns how long the set-up took, which a
  // call's deadline does not count (creating a table or stack takes longer than a request).
  const ready = async (deadline = Date.now() + timeoutMs): Promise<number> => {
    const started = Date.now();
    await setup.ready();
    const setupMs = Date.now() - started;
    await server?.ready(probe, deadline + setupMs, (err) => misconfiguration(err) !== undefined);
    return setupMs;
  };
  const outbox = new Outbox({
    attemptMs: timeoutMs,
    isTransient: (err) => err instanceof RateLimiterUnavailable,
  });
  const where = whereabouts(tableName, dynamo, region, endpoint);
  const writer = new BucketWriter({
    backend: store,
    outbox: outbox,
    clock: now,
    denyCache,
    maxCachedBuckets,
    where,
  });
  const config = new ConfigResolver({
    backend: store,
    writer,
    ttlMs: limitsCacheTtlMs,
    maxEntries: maxCachedBuckets,
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
  const shared = { backend: store, writer, config, ready, timeoutMs };
  const leases = new LeaseEngine({
    ...shared,
    outbox: outbox,
    failureMode,
    recordFailedOpen,
    batches: batchOptions,
  });
  const reader = new BucketReader(shared);
  const admin = new EntityAdmin({
    ...shared,
    clock: now,
    switchDelayMs: switchDelay,
    auditor: new Auditor({ principal: auditPrincipal }),
  });
  return {
    tableName,
    keys: space,
    client: dynamo,
    ownsClient: client === undefined,
    outbox,
    leases,
    reader,
    admin,
    createTable: () => store.buckets.createTable(),
    ping: () =>
      store.ping ? store.ping(tableName) : pingTable({ client: dynamo, where, timeoutMs }),
    closeTimeoutMs,
  };
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
