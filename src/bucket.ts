/**
 * Exact token-bucket math (GCRA), pure and free of I/O.
 *
 * A bucket's state is one integer per limit, its *theoretical arrival time* (`tat`): the moment
 * the bucket would be full again. Time is kept in a per-limit scaled unit, `ms × refillMilli`,
 * so that one thousandth of a token costs exactly `periodMs` units and every quantity is an
 * integer ({@link https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm | GCRA}):
 *
 * - now, scaled: `N = nowMs × R` (R = refill in thousandths of a token per period)
 * - cost of `m` thousandths: `m × P` (P = period in ms)
 * - burst tolerance: `τ = C × P` (C = capacity in thousandths)
 * - a request of `m` passes iff `max(tat, N) + m × P ≤ N + τ`; then `tat ← max(tat, N) + m × P`
 * - available thousandths: `C − ceil((max(tat, N) − N) / P)` (rounded against the caller)
 *
 * A missing `tat` is a full bucket.
 *
 * @module
 */

/** A limit in the integer units of the math. */
export interface BucketSpec {
  /** Capacity in thousandths of a token (C). */
  capacityMilli: bigint;
  /** Refill per period in thousandths of a token (R). */
  refillMilli: bigint;
  /** Period in milliseconds (P). */
  periodMs: bigint;
}

/** The config string stored beside a tat: its scale and tolerance depend on it. */
export function specKey(spec: BucketSpec): string {
  return `${spec.capacityMilli}/${spec.refillMilli}/${spec.periodMs}`;
}

/** Parses {@link specKey}; `undefined` for a malformed value. */
export function parseSpecKey(key: string): BucketSpec | undefined {
  const m = /^(\d+)\/(\d+)\/(\d+)$/.exec(key);
  if (!m) return undefined;
  const spec = { capacityMilli: BigInt(m[1]), refillMilli: BigInt(m[2]), periodMs: BigInt(m[3]) };
  return spec.refillMilli > 0n && spec.periodMs > 0n ? spec : undefined;
}

/** `nowMs` in the spec's scaled unit. */
export function scaledNow(spec: BucketSpec, nowMs: bigint): bigint {
  return nowMs * spec.refillMilli;
}

/** Burst tolerance τ in scaled units. */
export function tolerance(spec: BucketSpec): bigint {
  return spec.capacityMilli * spec.periodMs;
}

/** Cost of `milli` thousandths of a token in scaled units. */
export function cost(spec: BucketSpec, milli: bigint): bigint {
  return milli * spec.periodMs;
}

/** Floor division for bigints (rounds toward −∞). */
export function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
}

/** Ceiling division for bigints (rounds toward +∞). */
export function ceilDiv(a: bigint, b: bigint): bigint {
  return -floorDiv(-a, b);
}

/** Thousandths of a token available at `nowMs` (may be negative), rounded down. */
export function availableMilli(spec: BucketSpec, tat: bigint | undefined, nowMs: bigint): bigint {
  if (tat === undefined) return spec.capacityMilli;
  const n = scaledNow(spec, nowMs);
  const debt = tat > n ? tat - n : 0n;
  return spec.capacityMilli - ceilDiv(debt, spec.periodMs);
}

/** Whether `milli` thousandths can be taken at `nowMs`. */
export function fits(
  spec: BucketSpec,
  tat: bigint | undefined,
  nowMs: bigint,
  milli: bigint,
): boolean {
  return consumeTat(spec, tat, nowMs, milli) <= scaledNow(spec, nowMs) + tolerance(spec);
}

/** The tat after taking `milli` at `nowMs` (no check). */
export function consumeTat(
  spec: BucketSpec,
  tat: bigint | undefined,
  nowMs: bigint,
  milli: bigint,
): bigint {
  const n = scaledNow(spec, nowMs);
  const base = tat === undefined || tat < n ? n : tat;
  return base + cost(spec, milli);
}

/**
 * Milliseconds from `nowMs` until `milli` thousandths can be taken: 0 if they can now,
 * `undefined` if never (more than the capacity). Rounded up, so a retry at that moment passes.
 */
export function waitMs(
  spec: BucketSpec,
  tat: bigint | undefined,
  nowMs: bigint,
  milli: bigint,
): bigint | undefined {
  if (milli > spec.capacityMilli) return undefined;
  if (fits(spec, tat, nowMs, milli)) return 0n;
  // Passes at t when tat + m·P ≤ t·R + C·P, i.e. t ≥ (tat + (m − C)·P) / R.
  const t = ceilDiv(tat! + (milli - spec.capacityMilli) * spec.periodMs, spec.refillMilli);
  return t > nowMs ? t - nowMs : 0n;
}

/**
 * Moves a tat written under `from` to the spec `to` at `nowMs`, keeping the balance: a lower
 * capacity clamps it, a raised one keeps it; debt (a negative balance) is kept as debt.
 * Rounded against the caller (debt rounds up).
 */
export function convertTat(
  from: BucketSpec,
  tat: bigint,
  to: BucketSpec,
  nowMs: bigint,
): bigint {
  const balance = availableMilli(from, tat, nowMs);
  const kept = balance < to.capacityMilli ? balance : to.capacityMilli;
  return scaledNow(to, nowMs) + (to.capacityMilli - kept) * to.periodMs;
}

/** The moment (epoch ms, rounded up) a tat lies at: when the bucket is full again. */
export function tatToMs(spec: BucketSpec, tat: bigint): bigint {
  return ceilDiv(tat, spec.refillMilli);
}
