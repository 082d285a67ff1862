/**
 * Validation of a call's request, before any I/O: every failure is a {@link ValidationError}
 * naming the field, the value seen and the rule.
 *
 * @module
 */

import { MAX_LEASE_TIMEOUT_MS } from "./engine/concurrency.ts";
import type { ValidRequest } from "./engine/types.ts";
import { ValidationError } from "./errors.ts";
import { Limit } from "./limit.ts";
import { type AcquireOptions, FailureMode } from "./options.ts";
import {
  amountsToMilli,
  checkBoolean,
  checkObject,
  validateEntityId,
  validateResource,
} from "./validate.ts";

/** Checks an acquire's options. */
export function validateAcquire(
  options: AcquireOptions,
): ValidRequest & { consume: Map<string, bigint> } {
  checkObject("options", options);
  const entityId = validateEntityId(options.entityId);
  const resource = validateResource(options.resource);
  const also = validateAlso(options.also, resource);
  const { limits, useStoredLimits } = callLimits(options);
  const names = new Set(limits.map((l) => l.name));
  const consume = amountsToMilli("consume", options.consume, useStoredLimits ? "any" : names, {
    allowNegative: false,
  });
  checkBoolean("cascade", options.cascade, true);
  if (options.failureMode !== undefined) checkFailureMode("failureMode", options.failureMode);
  checkBoolean("batch", options.batch, true);
  checkTransactionItems(also, options.cascade);
  checkBoolean("shadow", options.shadow, true);
  const leaseTimeoutMs = options.leaseTimeoutMs;
  if (
    leaseTimeoutMs !== undefined &&
    (typeof leaseTimeoutMs !== "number" || !Number.isInteger(leaseTimeoutMs) ||
      leaseTimeoutMs < 1 || leaseTimeoutMs > MAX_LEASE_TIMEOUT_MS)
  ) {
    throw new ValidationError(
      "leaseTimeoutMs",
      leaseTimeoutMs,
      `must be a whole number of milliseconds from 1 to ${MAX_LEASE_TIMEOUT_MS}`,
    );
  }
  return {
    entityId,
    resource,
    ...(also.length > 0 ? { also } : {}),
    limits,
    consume,
    cascade: options.cascade,
    useStoredLimits,
    failureMode: options.failureMode,
    batch: options.batch,
    shadow: options.shadow,
    ...(leaseTimeoutMs !== undefined ? { leaseTimeoutMs } : {}),
  };
}

/** Items one DynamoDB transaction may hold. */
const MAX_TRANSACTION_ITEMS = 100;

/**
 * Checks `also`: an array of resource names, none of them the call's `resource`, none twice.
 *
 * @example
 * ```ts
 * import { validateAlso } from "./request.ts";
 * console.assert(validateAlso(["all-models"], "gpt-4").length === 1);
 * let refused = false;
 * try { validateAlso(["gpt-4"], "gpt-4"); } catch { refused = true; }
 * console.assert(refused);
 * ```
 */
export function validateAlso(also: unknown, resource: string): string[] {
  if (also === undefined) return [];
  if (!Array.isArray(also)) {
    throw new ValidationError("also", also, "must be an array of resource names");
  }
  const seen = new Set<string>([resource]);
  return also.map((r, i) => {
    const name = validateResource(r, `also[${i}]`);
    if (name === resource) {
      throw new ValidationError(`also[${i}]`, name, "must not name the call's own resource");
    }
    if (seen.has(name)) throw new ValidationError(`also[${i}]`, name, "must not repeat a resource");
    seen.add(name);
    return name;
  });
}

/**
 * Refuses a call whose one transaction could hold more than `MAX_TRANSACTION_ITEMS` items:
 * one bucket item per resource (one shard of it), and the parent's too unless `cascade` is
 * `false` (the entity's stored flag is not known before the config read, so it is counted).
 */
function checkTransactionItems(also: string[], cascade: unknown): void {
  const perResource = cascade === false ? 1 : 2;
  const items = (1 + also.length) * perResource;
  if (items > MAX_TRANSACTION_ITEMS) {
    throw new ValidationError(
      "also",
      also.length,
      `must hold at most ${Math.floor(MAX_TRANSACTION_ITEMS / perResource) - 1} resources: ` +
        `${1 + also.length} resources × ${perResource} bucket items ` +
        `(${cascade === false ? "cascade: false" : "the entity's and its parent's"}) make ` +
        `${items} items, past the ${MAX_TRANSACTION_ITEMS} one DynamoDB transaction holds`,
    );
  }
}

/**
 * The limits of a call and whether stored limits win: without `limits`, stored limits are used
 * (`useStoredLimits` defaults to true then), and the call's limits are the last fallback.
 */
export function callLimits(
  options: { limits?: unknown; useStoredLimits?: unknown },
): { limits: Limit[]; useStoredLimits: boolean } {
  const given = options.limits !== undefined;
  const stored = options.useStoredLimits ?? !given;
  checkBoolean("useStoredLimits", stored);
  const useStoredLimits = stored as boolean;
  if (!given) {
    if (!useStoredLimits) {
      throw new ValidationError(
        "limits",
        undefined,
        "must be given when useStoredLimits is false",
      );
    }
    return { limits: [], useStoredLimits };
  }
  return { limits: validateLimits(options.limits, useStoredLimits), useStoredLimits };
}

/** Checks a list of limits (at most 32, unique names; empty only when stored limits may apply). */
export function validateLimits(limits: unknown, allowEmpty: boolean): Limit[] {
  if (!Array.isArray(limits)) {
    throw new ValidationError("limits", limits, "must be an array of Limit");
  }
  if (limits.length === 0 && !allowEmpty) {
    throw new ValidationError("limits", limits, "must hold at least one Limit");
  }
  if (limits.length > 32) {
    throw new ValidationError("limits", limits.length, "must hold at most 32 limits");
  }
  const seen = new Set<string>();
  limits.forEach((l, i) => {
    if (!(l instanceof Limit)) {
      throw new ValidationError(
        `limits[${i}]`,
        l,
        "must be a Limit (Limit.perMinute, Limit.custom, ...)",
      );
    }
    if (seen.has(l.name)) throw new ValidationError(`limits[${i}].name`, l.name, "must be unique");
    seen.add(l.name);
  });
  return limits as Limit[];
}

/** Checks a failure mode. */
export function checkFailureMode(field: string, mode: unknown): void {
  if (mode !== FailureMode.FAIL_CLOSED && mode !== FailureMode.FAIL_OPEN) {
    throw new ValidationError(field, mode, `must be "fail_closed" or "fail_open"`);
  }
}
