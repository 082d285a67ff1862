/**
 * The controls' check on a call, before any bucket write: a disabled entity, parent or resource
 * refuses it ({@link EntityDisabledError}); a bypassed entity or parent lets it through without
 * consuming. Disabled wins over bypass. The controls come from the config cache (no call when
 * warm): see docs/design.md, "Controls".
 *
 * @module
 */

import type { CallControls } from "../config.ts";
import { EntityDisabledError, RateLimiterUnavailable, type ZaeLimiterError } from "../errors.ts";
import { Lease } from "../lease.ts";

/**
 * Throws {@link EntityDisabledError} when the call's entity, its parent or one of its resources
 * (the primary, or one of `also`) is disabled; returns whether the call bypasses the limits (the entity or its parent has `bypass`).
 *
 * @example
 * ```ts
 * import { gate } from "./gate.ts";
 * const entity = { entityId: "k", cascade: false, metadata: {}, createdAt: "", bypass: true };
 * console.assert(gate({ entityId: "k", resource: "api" }, { entity }) === true);
 * let refused = false;
 * try {
 *   gate({ entityId: "k", resource: "api" }, { entity, resource: { disabled: true } });
 * } catch { refused = true; }
 * console.assert(refused);
 * ```
 */
export function gate(
  req: { entityId: string; resource: string },
  controls: CallControls,
): boolean {
  const { entity, parent, resource } = controls;
  if (resource?.disabled) {
    throw new EntityDisabledError(req.entityId, req.resource, "resource", req.resource);
  }
  for (const other of controls.also ?? []) {
    if (other.controls?.disabled) {
      throw new EntityDisabledError(req.entityId, req.resource, "resource", other.resource);
    }
  }
  if (entity?.disabled) {
    throw new EntityDisabledError(req.entityId, req.resource, "entity", req.entityId);
  }
  if (parent?.disabled) {
    throw new EntityDisabledError(req.entityId, req.resource, "parent", parent.entityId);
  }
  return entity?.bypass === true || parent?.bypass === true;
}

/**
 * The lease of a bypassed request: counted once by `count` (one write; an outage leaves it
 * uncounted but still admitted, a misconfiguration is thrown), and writing nothing after.
 *
 * @example
 * ```ts
 * import { bypassLease } from "./gate.ts";
 * import { ZaeLimiterError } from "../errors.ts";
 * let counted = 0;
 * const lease = await bypassLease(new Map([["rpm", 1000n]]), async () => { counted++; },
 *   (err) => new ZaeLimiterError(String(err)));
 * await lease.commit();
 * console.assert(lease.bypassed && counted === 1 && lease.statuses.length === 0);
 * ```
 */
export async function bypassLease(
  requested: Map<string, bigint>,
  count: () => Promise<void>,
  fail: (err: unknown) => ZaeLimiterError,
): Promise<Lease> {
  try {
    await count();
  } catch (err) {
    const error = fail(err);
    if (!(error instanceof RateLimiterUnavailable)) throw error;
  }
  return new Lease({
    limiter: { write: () => Promise.resolve() },
    targets: [],
    failedOpen: false,
    bypassed: true,
    requested,
  });
}
