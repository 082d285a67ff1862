import assert from "node:assert/strict";
import fc from "fast-check";
import * as math from "../src/bucket.ts";
import { Limit } from "../src/limit.ts";
import { amountsToMilli, toMilliCeil } from "../src/validate.ts";

/** Exact rational token bucket, the reference: balance in thousandths as a fraction num/den. */
class RationalBucket {
  num: bigint; // balance × den, thousandths
  den: bigint;
  at: bigint; // ms
  constructor(readonly spec: math.BucketSpec, at: bigint) {
    this.den = spec.periodMs;
    this.num = spec.capacityMilli * this.den;
    this.at = at;
  }
  advance(to: bigint) {
    // refill: R thousandths per P ms => (to - at) * R / P thousandths; scaled by den = P
    this.num += (to - this.at) * this.spec.refillMilli;
    const cap = this.spec.capacityMilli * this.den;
    if (this.num > cap) this.num = cap;
    this.at = to;
  }
  /** take m if the balance holds it */
  take(m: bigint): boolean {
    if (this.num >= m * this.den) {
      this.num -= m * this.den;
      return true;
    }
    return false;
  }
  floorAvailable(): bigint {
    return math.floorDiv(this.num, this.den);
  }
}

/** Small values hit the boundaries (a bucket one scaled unit short); large ones the overflows. */
const sizes = (max: bigint) =>
  fc.oneof(fc.bigInt({ min: 1n, max: 5n }), fc.bigInt({ min: 1n, max }));
const specArb = fc.record({
  capacityMilli: sizes(10n ** 12n),
  refillMilli: sizes(10n ** 12n),
  periodMs: sizes(10n ** 9n),
});

const T0 = 1_800_000_000_000n;

Deno.test("GCRA admits exactly what the rational reference admits", () => {
  fc.assert(
    fc.property(
      specArb,
      fc.array(
        fc.record({
          dt: fc.oneof(fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: 0n, max: 10n ** 7n })),
          frac: fc.double({ min: 0, max: 1.2, noNaN: true }),
        }),
        { minLength: 1, maxLength: 60 },
      ),
      (spec, steps) => {
        const ref = new RationalBucket(spec, T0);
        let tat: bigint | undefined;
        let now = T0;
        for (const { dt, frac } of steps) {
          now += dt;
          ref.advance(now);
          // around the balance, where an off-by-one would show, or anywhere up to 1.2 × capacity
          const m = frac < 0.2
            ? (ref.floorAvailable() > 0n ? ref.floorAvailable() : 0n) + (frac < 0.1 ? 1n : 0n)
            : BigInt(Math.floor(Number(spec.capacityMilli) * frac));
          assert.equal(math.availableMilli(spec, tat, now), ref.floorAvailable());
          const fits = math.fits(spec, tat, now, m);
          assert.equal(fits, ref.take(m), `m=${m} at ${now}`);
          if (fits) tat = math.consumeTat(spec, tat, now, m);
        }
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("the wait is exact: one ms earlier refuses, at the wait it passes", () => {
  fc.assert(
    fc.property(
      specArb,
      fc.bigInt({ min: 0n, max: 10n ** 6n }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (spec, dt, usedFrac, needFrac) => {
        const used = BigInt(Math.floor(Number(spec.capacityMilli) * usedFrac));
        const need = BigInt(Math.floor(Number(spec.capacityMilli) * needFrac));
        const tat = math.consumeTat(spec, undefined, T0, used);
        const now = T0 + dt;
        const wait = math.waitMs(spec, tat, now, need);
        assert.ok(wait !== undefined);
        assert.ok(math.fits(spec, tat, now + wait, need));
        if (wait > 0n) assert.ok(!math.fits(spec, tat, now + wait - 1n, need));
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("more than the capacity never fits and has no wait", () => {
  fc.assert(
    fc.property(specArb, fc.bigInt({ min: 1n, max: 10n ** 6n }), (spec, extra) => {
      const m = spec.capacityMilli + extra;
      assert.equal(math.fits(spec, undefined, T0, m), false);
      assert.equal(math.waitMs(spec, undefined, T0, m), undefined);
    }),
  );
});

Deno.test("debt from adjustments is repaid at the refill rate, exactly", () => {
  fc.assert(
    fc.property(specArb, fc.bigInt({ min: 0n, max: 10n ** 9n }), (spec, debt) => {
      // consume the whole capacity then add `debt` more (an adjustment)
      const tat = math.consumeTat(spec, undefined, T0, spec.capacityMilli + debt);
      assert.equal(math.availableMilli(spec, tat, T0), -debt);
      // the bucket is full again at tatToMs
      const full = math.tatToMs(spec, tat);
      assert.equal(math.availableMilli(spec, tat, full), spec.capacityMilli);
      if (full > T0) assert.ok(math.availableMilli(spec, tat, full - 1n) < spec.capacityMilli);
    }),
  );
});

Deno.test("changing a spec keeps the balance, clamped to the new capacity, never in the caller's favour", () => {
  fc.assert(
    fc.property(
      specArb,
      specArb,
      fc.double({ min: 0, max: 2, noNaN: true }),
      (from, to, usedFrac) => {
        const used = BigInt(Math.floor(Number(from.capacityMilli) * usedFrac));
        const tat = math.consumeTat(from, undefined, T0, used);
        const before = math.availableMilli(from, tat, T0);
        const converted = math.convertTat(from, tat, to, T0);
        const after = math.availableMilli(to, converted, T0);
        const expected = before < to.capacityMilli ? before : to.capacityMilli;
        assert.equal(after, expected);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("amounts become thousandths rounded up, never in the caller's favour", () => {
  assert.equal(toMilliCeil(0.1), 100n);
  assert.equal(toMilliCeil(1.0005), 1001n);
  assert.equal(toMilliCeil(1_000), 1_000_000n);
  assert.equal(toMilliCeil(-1.0005), -1000n); // returns less
  fc.assert(
    fc.property(fc.double({ min: -1e12, max: 1e12, noNaN: true }), (x) => {
      const m = toMilliCeil(x);
      // never below the true value by more than float noise
      assert.ok(Number(m) >= x * 1000 - 1e-9 * Math.max(1, Math.abs(x * 1000)));
      assert.ok(Number(m) < x * 1000 + 1 + 1e-6 * Math.max(1, Math.abs(x * 1000)));
    }),
  );
  assert.throws(
    () => amountsToMilli("consume", { a: -1 }, new Set(["a"]), { allowNegative: false }),
    /consume\.a/,
  );
});

Deno.test("Limit factories keep exact integer specs", () => {
  const l = Limit.perMinute("tpm", 10_000, { burst: 15_000 });
  assert.deepEqual([l.capacityMilli, l.refillMilli, l.periodMs], [
    15_000_000n,
    10_000_000n,
    60_000n,
  ]);
  assert.equal(Limit.perSecond("x", 0.5).refillMilli, 500n);
  assert.throws(() => Limit.perSecond("x", 0.0001), /multiple of 0.001/);
  assert.throws(
    () => Limit.custom({ name: "x", capacity: 1, refillAmount: 1, refillPeriodSeconds: 0.0005 }),
    /whole number of milliseconds/,
  );
});
