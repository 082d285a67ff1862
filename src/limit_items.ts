/**
 * The `limits` attribute of a stored-limits item (an entity's, or a resource's or the system's
 * defaults): a list of `{name, capacity, refillAmount, refillPeriodSeconds}`, with `soft: true` on a
 * soft limit, `schedule` (its windows as JSON text) on a scheduled one and, on a quota, `reset` (its
 * reset in the text form, e.g. `"month@UTC"` or `"after:30d"`), and `concurrent: true` on a concurrent
 * limit (its `capacity` the leases in flight at most).
 *
 * @module
 */

import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { Limit } from "./limit.ts";

/** The `limits` attribute of `limits`. */
export function limitsAttr(limits: Limit[]): AttributeValue {
  return {
    L: limits.map((l) => ({
      M: {
        name: { S: l.name },
        capacity: { N: String(l.capacity) },
        refillAmount: { N: String(l.refillAmount) },
        refillPeriodSeconds: { N: String(l.refillPeriodSeconds) },
        // Only on a soft limit: hard limits are stored as they always were.
        ...(l.soft ? { soft: { BOOL: true } } : {}),
        // Only on a scheduled limit: its windows as JSON, checked again when read.
        ...(l.schedule ? { schedule: { S: JSON.stringify(l.schedule) } } : {}),
        ...(l.resetText ? { reset: { S: l.resetText } } : {}),
        ...(l.concurrent ? { concurrent: { BOOL: true } } : {}),
      },
    })),
  };
}

/** The limits of a stored-limits item. */
export function parseLimits(item: Record<string, AttributeValue>): Limit[] {
  return (item.limits?.L ?? []).map((v) => {
    const m = v.M ?? {};
    const reset = m.reset?.S;
    if (m.concurrent?.BOOL === true) {
      return Limit.concurrent(m.name?.S ?? "", Number(m.capacity?.N));
    }
    if (reset !== undefined) {
      const soft = m.soft?.BOOL === true ? true : undefined;
      return Limit.quota(
        m.name?.S ?? "",
        Number(m.capacity?.N),
        reset.startsWith("after:") ? { resetAfter: reset.slice(6), soft } : { reset, soft },
      );
    }
    return Limit.custom({
      name: m.name?.S ?? "",
      capacity: Number(m.capacity?.N),
      refillAmount: Number(m.refillAmount?.N),
      refillPeriodSeconds: Number(m.refillPeriodSeconds?.N),
      soft: m.soft?.BOOL === true ? true : undefined,
      schedule: m.schedule?.S === undefined ? undefined : JSON.parse(m.schedule.S),
    });
  });
}
