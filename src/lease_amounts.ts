/**
 * Amount bookkeeping of a `Lease`: what its acquire took per limit, the clamp of its
 * adjustments, and the per-limit sums of its consume and release.
 *
 * @module
 */

import type { LeaseTarget } from "./engine/types.ts";

/** What the acquire took per limit name: the same amount from every bucket that has the limit. */
export function takenPerLimit(targets: LeaseTarget[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const t of targets) {
    for (const [name, m] of t.consumed) if (!out.has(name)) out.set(name, m);
  }
  return out;
}

/**
 * The non-zero adjustments, each raised to at least minus what the acquire took of its limit
 * (nothing when the acquire took none), optionally only for the limits of `only`.
 */
export function atLeastMinusTaken(
  deltas: Map<string, bigint>,
  taken: Map<string, bigint>,
  only?: Map<string, unknown>,
): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const [name, d] of deltas) {
    if (only && !only.has(name)) continue;
    const floor = -(taken.get(name) ?? 0n);
    const clamped = d < floor ? floor : d;
    if (clamped !== 0n) out.set(name, clamped);
  }
  return out;
}

/** A target as written by a lease's writes that do not close it: its slots stay held. */
export function withoutSlot(t: LeaseTarget): LeaseTarget {
  const { slot: _slot, ...rest } = t;
  return rest;
}

/** The amounts that are not zero. */
export function nonZero(amounts: Map<string, bigint>): Map<string, bigint> {
  return new Map([...amounts].filter(([, m]) => m !== 0n));
}

/** `a` plus `b`, per limit name (a new map). */
export function plus(a: Map<string, bigint>, b: Map<string, bigint>): Map<string, bigint> {
  const out = new Map(a);
  for (const [name, m] of b) out.set(name, (out.get(name) ?? 0n) + m);
  return out;
}
