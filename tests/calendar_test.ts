/**
 * The calendar (src/calendar/): reset windows, resetAfter, the text form and schedules. Pure:
 * no DynamoDB, no clock. Expected instants are written out in UTC, with the local time beside.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ValidationError } from "../src/errors.ts";
import {
  type CalendarReset,
  MAX_RESET_AFTER_MS,
  validateReset,
  windowAfter,
  windowAt,
} from "../src/calendar/reset.ts";
import {
  formatDuration,
  formatReset,
  parseReset,
  validateQuotaReset,
} from "../src/calendar/text.ts";
import {
  nextSwitchMs,
  type Schedule,
  scheduleAt,
  validateSchedule,
} from "../src/calendar/schedule.ts";
import { instantOf, offsetMs, wallMs, WEEKDAYS } from "../src/calendar/zone.ts";

const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0) =>
  Date.UTC(y, mo - 1, d, h, mi, s);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function win(spec: CalendarReset, t: number): [string, string] {
  const w = windowAt(spec, t);
  return [new Date(w.startMs).toISOString(), new Date(w.endMs).toISOString()];
}
const iso = (ms: number) => new Date(ms).toISOString();

function throwsField(fn: () => unknown, field: string, rule?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ValidationError, `a ValidationError, got ${e}`);
    assert.equal(e.field, field);
    if (rule) assert.match(e.rule, rule);
    return true;
  });
}

Deno.test("monthly resets across a month boundary, in three time zones", async (t) => {
  await t.step("Europe/Berlin: April starts at 00:00 CEST; March lost an hour to DST", () => {
    const spec = { every: "month", timeZone: "Europe/Berlin" } as const;
    assert.deepEqual(win(spec, utc(2026, 3, 31, 22)), [
      "2026-03-31T22:00:00.000Z", // 1 April 00:00 CEST
      "2026-04-30T22:00:00.000Z", // 1 May 00:00 CEST
    ]);
    const march = windowAt(spec, utc(2026, 3, 31, 21, 59, 59) + 999);
    assert.deepEqual([iso(march.startMs), iso(march.endMs)], [
      "2026-02-28T23:00:00.000Z", // 1 March 00:00 CET
      "2026-03-31T22:00:00.000Z",
    ]);
    assert.equal(march.endMs - march.startMs, 31 * DAY - HOUR);
  });
  await t.step("America/Los_Angeles versus Berlin at the same instant", () => {
    const at = utc(2026, 2, 1, 7, 30); // 31 January 23:30 PST; 1 February 08:30 CET
    assert.deepEqual(win({ every: "month", timeZone: "America/Los_Angeles" }, at), [
      "2026-01-01T08:00:00.000Z",
      "2026-02-01T08:00:00.000Z",
    ]);
    assert.deepEqual(win({ every: "month", timeZone: "Europe/Berlin" }, at), [
      "2026-01-31T23:00:00.000Z",
      "2026-02-28T23:00:00.000Z",
    ]);
    // The last millisecond before the Pacific reset, and the reset itself.
    const lastMs = windowAt(
      { every: "month", timeZone: "America/Los_Angeles" },
      utc(2026, 2, 1, 8) - 1,
    );
    assert.equal(lastMs.endMs, utc(2026, 2, 1, 8));
    assert.equal(
      windowAt({ every: "month", timeZone: "America/Los_Angeles" }, utc(2026, 2, 1, 8)).startMs,
      utc(2026, 2, 1, 8),
    );
  });
  await t.step("Asia/Kolkata (+05:30): the 15th at 06:00", () => {
    const spec = { every: "month", day: 15, at: "06:00", timeZone: "Asia/Kolkata" } as const;
    assert.deepEqual(win(spec, utc(2026, 3, 15, 0, 29)), [
      "2026-02-15T00:30:00.000Z",
      "2026-03-15T00:30:00.000Z",
    ]);
    assert.deepEqual(win(spec, utc(2026, 3, 15, 0, 30)), [
      "2026-03-15T00:30:00.000Z",
      "2026-04-15T00:30:00.000Z",
    ]);
    assert.deepEqual(win({ every: "month", timeZone: "Asia/Kolkata" }, utc(2026, 2, 28, 18, 30)), [
      "2026-02-28T18:30:00.000Z", // 1 March 00:00 IST
      "2026-03-31T18:30:00.000Z",
    ]);
  });
});

Deno.test("day 31 clamps to the month's last day: February, leap and not", () => {
  const d31 = { every: "month", day: 31, timeZone: "UTC" } as const;
  // 2024 is a leap year: resets on 31 January, 29 February, 31 March.
  assert.deepEqual(win(d31, utc(2024, 2, 15)), [
    "2024-01-31T00:00:00.000Z",
    "2024-02-29T00:00:00.000Z",
  ]);
  assert.deepEqual(win(d31, utc(2024, 3, 1)), [
    "2024-02-29T00:00:00.000Z",
    "2024-03-31T00:00:00.000Z",
  ]);
  // 2026 is not: 28 February.
  assert.deepEqual(win(d31, utc(2026, 2, 15)), [
    "2026-01-31T00:00:00.000Z",
    "2026-02-28T00:00:00.000Z",
  ]);
  assert.deepEqual(win(d31, utc(2026, 4, 30, 12)), [
    "2026-04-30T00:00:00.000Z",
    "2026-05-31T00:00:00.000Z",
  ]);
  // "last" and 30 agree in February; 29 in 2026 too.
  for (const day of ["last", 30, 29] as const) {
    assert.deepEqual(win({ every: "month", day, timeZone: "UTC" }, utc(2026, 3, 1)), [
      "2026-02-28T00:00:00.000Z",
      day === "last" ? "2026-03-31T00:00:00.000Z" : `2026-03-${day}T00:00:00.000Z`,
    ]);
  }
});

Deno.test("daily resets at 02:30 across both DST changes", async (t) => {
  const berlin = { every: "day", at: "02:30", timeZone: "Europe/Berlin" } as const;
  await t.step("Berlin, spring: 02:30 is skipped, the reset is at 03:00 CEST", () => {
    assert.deepEqual(win(berlin, utc(2026, 3, 29, 0)), [
      "2026-03-28T01:30:00.000Z", // 28 March 02:30 CET
      "2026-03-29T01:00:00.000Z", // 29 March: 02:00 jumps to 03:00 CEST
    ]);
    assert.deepEqual(win(berlin, utc(2026, 3, 29, 1)), [
      "2026-03-29T01:00:00.000Z",
      "2026-03-30T00:30:00.000Z", // 30 March 02:30 CEST
    ]);
  });
  await t.step("Berlin, autumn: 02:30 happens twice, the reset only at the first", () => {
    assert.deepEqual(win(berlin, utc(2026, 10, 25, 0, 29)), [
      "2026-10-24T00:30:00.000Z",
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
    ]);
    // The second 02:30 (CET, 01:30Z) is inside the window that began at the first: 25 hours.
    const w = windowAt(berlin, utc(2026, 10, 25, 1, 30));
    assert.deepEqual([iso(w.startMs), iso(w.endMs)], [
      "2026-10-25T00:30:00.000Z",
      "2026-10-26T01:30:00.000Z",
    ]);
    assert.equal(w.endMs - w.startMs, 25 * HOUR);
  });
  const ny = { every: "day", at: "02:30", timeZone: "America/New_York" } as const;
  await t.step("New York, spring: 02:30 is skipped, the reset is at 03:00 EDT", () => {
    assert.deepEqual(win(ny, utc(2026, 3, 8, 7)), [
      "2026-03-08T07:00:00.000Z",
      "2026-03-09T06:30:00.000Z",
    ]);
    assert.deepEqual(win(ny, utc(2026, 3, 8, 7) - 1), [
      "2026-03-07T07:30:00.000Z",
      "2026-03-08T07:00:00.000Z",
    ]);
  });
  await t.step("New York, autumn: 02:30 EST comes 25 hours after 02:30 EDT", () => {
    assert.deepEqual(win(ny, utc(2026, 11, 1, 7)), [
      "2026-10-31T06:30:00.000Z",
      "2026-11-01T07:30:00.000Z",
    ]);
    // 01:30 is the hour New York repeats: the reset takes the first (EDT) one.
    const early = { every: "day", at: "01:30", timeZone: "America/New_York" } as const;
    assert.deepEqual(win(early, utc(2026, 11, 1, 6, 30)), [
      "2026-11-01T05:30:00.000Z",
      "2026-11-02T06:30:00.000Z",
    ]);
  });
});

Deno.test("weekly resets, including a week that crosses a DST change", () => {
  const spec = {
    every: "week",
    weekday: "mon",
    at: "09:00",
    timeZone: "America/New_York",
  } as const;
  assert.deepEqual(win(spec, utc(2026, 1, 7, 12)), [
    "2026-01-05T14:00:00.000Z",
    "2026-01-12T14:00:00.000Z",
  ]);
  assert.deepEqual(win(spec, utc(2026, 3, 5)), [
    "2026-03-02T14:00:00.000Z",
    "2026-03-09T13:00:00.000Z",
  ]);
  // At the reset itself a new week begins; a millisecond before it the old one still holds.
  assert.equal(windowAt(spec, utc(2026, 3, 9, 13)).startMs, utc(2026, 3, 9, 13));
  assert.equal(windowAt(spec, utc(2026, 3, 9, 13) - 1).startMs, utc(2026, 3, 2, 14));
  // Sunday midnight in UTC, and the default (Monday 00:00).
  assert.deepEqual(win({ every: "week", weekday: "sun", timeZone: "UTC" }, utc(2026, 1, 4)), [
    "2026-01-04T00:00:00.000Z",
    "2026-01-11T00:00:00.000Z",
  ]);
  assert.deepEqual(win({ every: "week", timeZone: "UTC" }, utc(2026, 1, 4)), [
    "2025-12-29T00:00:00.000Z",
    "2026-01-05T00:00:00.000Z",
  ]);
});

Deno.test("resetAfter: anchored to the first use, restarted by the first use after idling", () => {
  const hour = HOUR;
  const first = windowAfter(undefined, hour, 10_000);
  assert.deepEqual(first, { startMs: 10_000, endMs: 10_000 + hour });
  // Uses inside the window keep its anchor, up to its last millisecond.
  assert.deepEqual(windowAfter(first.startMs, hour, 10_000 + hour - 1), first);
  // Clock skew: a use stamped before the anchor counts in the current window.
  assert.deepEqual(windowAfter(first.startMs, hour, 9_000), first);
  // At the end and after a long idle, the use starts a new window at itself, not at end + k·hour.
  assert.deepEqual(windowAfter(first.startMs, hour, first.endMs), {
    startMs: first.endMs,
    endMs: first.endMs + hour,
  });
  const idle = windowAfter(first.startMs, hour, 10_000 + 5 * hour + 123);
  assert.deepEqual(idle, { startMs: 10_000 + 5 * hour + 123, endMs: 10_000 + 6 * hour + 123 });
  assert.deepEqual(windowAfter(idle.startMs, hour, idle.startMs + 1), idle);
  throwsField(() => windowAfter(undefined, 0, 0), "resetAfter");
  throwsField(() => windowAfter(undefined, MAX_RESET_AFTER_MS + 1, 0), "resetAfter");
  throwsField(() => windowAfter(1.5, hour, 0), "anchorMs");
});

Deno.test("validation: each fault is a ValidationError naming its field", () => {
  throwsField(() => validateReset({ every: "month", timeZone: "Mars/Olympus" }), "reset.timeZone");
  throwsField(() => validateReset({ every: "month" }), "reset.timeZone");
  throwsField(() => validateReset({ every: "year", timeZone: "UTC" }), "reset.every");
  throwsField(() => validateReset({ every: "month", day: 0, timeZone: "UTC" }), "reset.day");
  throwsField(() => validateReset({ every: "month", day: 32, timeZone: "UTC" }), "reset.day");
  throwsField(() => validateReset({ every: "month", day: 1.5, timeZone: "UTC" }), "reset.day");
  throwsField(
    () => validateReset({ every: "week", weekday: "monday", timeZone: "UTC" }),
    "reset.weekday",
  );
  throwsField(() => validateReset({ every: "day", at: "24:00", timeZone: "UTC" }), "reset.at");
  throwsField(() => validateReset({ every: "day", at: "9:00", timeZone: "UTC" }), "reset.at");
  throwsField(
    () => validateReset({ every: "day", day: 3, timeZone: "UTC" }),
    "reset.day",
    /not a field/,
  );
  throwsField(() => validateReset("month@UTC"), "reset");
  throwsField(() => windowAt({ every: "day", timeZone: "UTC" }, 1.5), "instantMs");
  // A quota's options.
  throwsField(
    () => validateQuotaReset({ reset: "day@UTC", resetAfter: 60 }),
    "quota.resetAfter",
    /not both/,
  );
  throwsField(() => validateQuotaReset({}), "quota.reset", /never resets/);
  throwsField(() => validateQuotaReset({ resetAfter: 0 }), "quota.resetAfter");
  throwsField(() => validateQuotaReset({ resetAfter: -5 }), "quota.resetAfter");
  throwsField(() => validateQuotaReset({ resetAfter: 367 * 86_400 }), "quota.resetAfter");
  throwsField(() => validateQuotaReset({ resetAfter: 0.0001 }), "quota.resetAfter");
  throwsField(() => validateQuotaReset({ resetAfter: "367d" }), "quota.resetAfter");
  throwsField(() => validateQuotaReset({ reset: "after:1d" }), "quota.reset");
  throwsField(() => validateQuotaReset({ reset: "month@Nowhere/Land" }), "quota.reset.timeZone");
  assert.deepEqual(validateQuotaReset({ resetAfter: 366 * 86_400 }), {
    kind: "after",
    durationMs: MAX_RESET_AFTER_MS,
  });
  assert.deepEqual(validateQuotaReset({ resetAfter: 1.5 }), { kind: "after", durationMs: 1500 });
  // A schedule that never fires, or never switches, or overlaps itself.
  const w = (days: string[], from: string, to: string) => ({ days, from, to });
  const sched = (...windows: ReturnType<typeof w>[]) =>
    ({ timeZone: "Europe/Berlin", windows }) as unknown as Schedule;
  throwsField(() => validateSchedule(sched()), "schedule.windows", /at least one/);
  throwsField(() => validateSchedule(sched(w([], "18:00", "08:00"))), "schedule.windows[0].days");
  throwsField(
    () => validateSchedule(sched(w(["sat"], "10:00", "10:00"))),
    "schedule.windows[0].to",
  );
  throwsField(
    () => validateSchedule(sched(w(["sat", "xyz"], "10:00", "11:00"))),
    "schedule.windows[0].days[1]",
  );
  throwsField(
    () => validateSchedule(sched(w(["sat", "sat"], "10:00", "11:00"))),
    "schedule.windows[0].days[1]",
  );
  throwsField(
    () => validateSchedule(sched(w(["sat"], "10:00", "25:00"))),
    "schedule.windows[0].to",
  );
  throwsField(
    () =>
      validateSchedule(sched(w(["sat", "sun"], "00:00", "24:00"), w(["fri"], "18:00", "08:00"))),
    "schedule.windows[1]",
    /overlaps windows\[0\] on sat at 00:00/,
  );
  // The overlap across the week's end (Sunday night into Monday).
  throwsField(
    () => validateSchedule(sched(w(["mon"], "06:00", "09:00"), w(["sun"], "22:00", "07:00"))),
    "schedule.windows[1]",
    /on mon at 06:00/,
  );
  throwsField(
    () => validateSchedule(sched(w([...WEEKDAYS], "00:00", "24:00"))),
    "schedule.windows[0]",
    /never switches/,
  );
  throwsField(
    () => validateSchedule({ timeZone: "Berlin", windows: [] } as unknown as Schedule),
    "schedule.timeZone",
  );
  // Windows that touch are fine.
  validateSchedule(
    sched(
      w(["mon", "tue", "wed", "thu"], "18:00", "08:00"),
      w(["fri"], "18:00", "24:00"),
      w(["sat", "sun"], "00:00", "24:00"),
    ),
  );
});

Deno.test("text form: parse, format, round trip", () => {
  const canonical = [
    "month@Europe/Berlin",
    "month:15@UTC",
    "month:last 18:30@Asia/Kolkata",
    "month:31 06:00@America/Los_Angeles",
    "week:mon 09:00@America/New_York",
    "week:sun@UTC",
    "day@UTC",
    "day 02:30@Europe/Berlin",
    "after:30d",
    "after:90m",
    "after:12h",
    "after:45s",
    "after:1500ms",
  ];
  for (const text of canonical) assert.equal(formatReset(parseReset(text)), text, text);
  // Longer spellings read to the same reset, and format to the short one.
  assert.equal(formatReset(parseReset("day 00:00@UTC")), "day@UTC");
  assert.equal(formatReset(parseReset("month:1 00:00@UTC")), "month@UTC");
  assert.equal(formatReset(parseReset("week@UTC")), "week:mon@UTC");
  assert.equal(formatReset(parseReset("after:120m")), "after:2h");
  assert.deepEqual(parseReset("month:15@UTC"), {
    kind: "calendar",
    reset: { every: "month", day: 15, at: "00:00", timeZone: "UTC" },
  });
  for (
    const bad of [
      "month",
      "month@",
      "day:3@UTC",
      "week:xyz@UTC",
      "month:0@UTC",
      "after:",
      "after:1y",
      "after:0d",
      "month 25:00@UTC",
    ]
  ) {
    assert.throws(() => parseReset(bad), ValidationError, bad);
  }
  assert.equal(formatDuration(MAX_RESET_AFTER_MS), "366d");
});

const ZONES = [
  "UTC",
  "Europe/Berlin",
  "America/New_York",
  "America/Los_Angeles",
  "Asia/Kolkata",
  "Australia/Lord_Howe", // a 30-minute DST change
  "America/Havana", // DST changes at midnight
  "America/Santiago", // southern hemisphere, changes at midnight
  "Pacific/Apia", // skipped 30 December 2011
  "Asia/Tehran",
];
const clock = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
  .map(([h, m]) => `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`);
// Edge-heavy times: midnight and the hours DST changes use.
const at = fc.oneof(
  clock,
  fc.constantFrom("00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "23:30"),
);
const specArb: fc.Arbitrary<CalendarReset> = fc.oneof(
  fc.record({
    every: fc.constant("month" as const),
    day: fc.oneof(
      fc.integer({ min: 1, max: 31 }),
      fc.constantFrom(28, 29, 30, 31, "last" as const),
    ),
    at,
    timeZone: fc.constantFrom(...ZONES),
  }),
  fc.record({
    every: fc.constant("week" as const),
    weekday: fc.constantFrom(...WEEKDAYS),
    at,
    timeZone: fc.constantFrom(...ZONES),
  }),
  fc.record({ every: fc.constant("day" as const), at, timeZone: fc.constantFrom(...ZONES) }),
);
const instantArb = fc.integer({ min: utc(1975, 1, 1), max: utc(2100, 1, 1) });

Deno.test("property: windows hold the instant, are contiguous and start at the reset time", () => {
  fc.assert(
    fc.property(specArb, instantArb, (spec, t) => {
      const { startMs, endMs } = windowAt(spec, t);
      assert.ok(Number.isInteger(startMs) && Number.isInteger(endMs));
      assert.ok(startMs <= t && t < endMs, `${iso(startMs)} <= ${iso(t)} < ${iso(endMs)}`);
      assert.equal(windowAt(spec, endMs).startMs, endMs); // the next window starts at the end
      assert.equal(windowAt(spec, endMs - 1).startMs, startMs);
      assert.equal(windowAt(spec, startMs).endMs, endMs);
      if (startMs > utc(1975, 1, 1)) assert.equal(windowAt(spec, startMs - 1).endMs, startMs);
      // The start is the reset's local time on a right day, or the end of a DST gap over it.
      const r = validateReset(spec);
      const wall = new Date(wallMs(r.timeZone, startMs));
      const jumped = offsetMs(r.timeZone, startMs - 1) !== offsetMs(r.timeZone, startMs);
      const hhmm = wall.toISOString().slice(11, 16);
      if (!jumped) {
        assert.equal(hhmm, r.at, `${JSON.stringify(r)} starts ${wall.toISOString()}`);
        if (r.every === "week") assert.equal(WEEKDAYS[(wall.getUTCDay() + 6) % 7], r.weekday);
        if (r.every === "month") {
          const last = new Date(Date.UTC(wall.getUTCFullYear(), wall.getUTCMonth() + 1, 0))
            .getUTCDate();
          assert.equal(wall.getUTCDate(), r.day === "last" ? last : Math.min(r.day, last));
        }
      }
      // The length is the period, give or take DST (at most 25 hours off, for a skipped day).
      const nominal = r.every === "day" ? DAY : r.every === "week" ? 7 * DAY : 30 * DAY;
      const slack = r.every === "month" ? 3 * DAY + 2 * HOUR : 25 * HOUR;
      assert.ok(Math.abs(endMs - startMs - nominal) <= slack, `${endMs - startMs}`);
    }),
    { numRuns: 400 },
  );
});

Deno.test("property: any reset formats to text and reads back to itself", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const text = formatReset(spec);
      const back = parseReset(text);
      assert.deepEqual(back, { kind: "calendar", reset: validateReset(spec) });
      assert.equal(formatReset(back), text);
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: MAX_RESET_AFTER_MS }), (ms) => {
      assert.deepEqual(parseReset(`after:${formatDuration(ms)}`), {
        kind: "after",
        durationMs: ms,
      });
    }),
  );
});

Deno.test("instantOf: gaps map to their end, repeats to the first pass", () => {
  // Lord Howe moves by 30 minutes: 02:00 -> 02:30 on 5 October 2025 (15:30Z).
  assert.equal(instantOf("Australia/Lord_Howe", utc(2025, 10, 5, 2, 15)), utc(2025, 10, 4, 15, 30));
  // Apia skipped 30 December 2011 whole: any time that day maps to 31 December 00:00 (+14).
  assert.equal(instantOf("Pacific/Apia", utc(2011, 12, 30, 12)), utc(2011, 12, 30, 10));
  assert.equal(instantOf("Asia/Kolkata", utc(2026, 1, 1, 5, 30)), utc(2026, 1, 1));
});

type W = { days: (typeof WEEKDAYS[number])[]; from: string; to: string; name: string };
const state = (s: Schedule<W>, t: number) => {
  const x = scheduleAt(s, t);
  return [x.window?.name ?? null, iso(x.startMs), iso(x.endMs)];
};
const zoneOf = (timeZone: string, ...windows: W[]): Schedule<W> =>
  validateSchedule({ timeZone, windows });

Deno.test("schedules: which window applies, and when that changes", async (t) => {
  const offPeak = zoneOf(
    "Europe/Berlin",
    { name: "nights", days: ["mon", "tue", "wed", "thu"], from: "18:00", to: "08:00" },
    { name: "friday", days: ["fri"], from: "18:00", to: "24:00" },
    { name: "weekend", days: ["sat", "sun"], from: "00:00", to: "24:00" },
  );
  await t.step("a weekday: business hours apply no window", () => {
    assert.deepEqual(state(offPeak, utc(2026, 1, 7, 12)), [
      null,
      "2026-01-07T07:00:00.000Z", // Wednesday 08:00 CET
      "2026-01-07T17:00:00.000Z", // Wednesday 18:00 CET
    ]);
    assert.equal(nextSwitchMs(offPeak, utc(2026, 1, 7, 12)), utc(2026, 1, 7, 17));
    assert.deepEqual(state(offPeak, utc(2026, 1, 7, 17)), [
      "nights",
      "2026-01-07T17:00:00.000Z",
      "2026-01-08T07:00:00.000Z", // Thursday 08:00 CET
    ]);
    assert.equal(scheduleAt(offPeak, utc(2026, 1, 7, 17) - 1).window, null);
  });
  await t.step("Friday evening, then one weekend stretch from Saturday to Monday 00:00", () => {
    assert.deepEqual(state(offPeak, utc(2026, 1, 9, 20)), [
      "friday",
      "2026-01-09T17:00:00.000Z",
      "2026-01-09T23:00:00.000Z",
    ]);
    for (const at of [utc(2026, 1, 9, 23), utc(2026, 1, 10, 23), utc(2026, 1, 11, 22, 59)]) {
      assert.deepEqual(state(offPeak, at), [
        "weekend",
        "2026-01-09T23:00:00.000Z",
        "2026-01-11T23:00:00.000Z",
      ]);
    }
    // Monday 00:00 to 08:00: nothing (Sunday night is not a night of the "nights" window).
    assert.deepEqual(state(offPeak, utc(2026, 1, 11, 23)), [
      null,
      "2026-01-11T23:00:00.000Z",
      "2026-01-12T17:00:00.000Z",
    ]);
  });
  await t.step("the window object comes back as given, with its own fields", () => {
    const s = scheduleAt(offPeak, utc(2026, 1, 10, 12));
    assert.equal(s.window, offPeak.windows[2]);
    assert.equal(s.index, 2);
  });
});

Deno.test("schedules across DST changes in Berlin and New York", async (t) => {
  await t.step("Berlin: a Saturday night is 7 hours in spring, 9 in autumn", () => {
    const s = zoneOf("Europe/Berlin", {
      name: "sat-night",
      days: ["sat"],
      from: "22:00",
      to: "06:00",
    });
    assert.deepEqual(state(s, utc(2026, 3, 29, 0)), [
      "sat-night",
      "2026-03-28T21:00:00.000Z", // 22:00 CET
      "2026-03-29T04:00:00.000Z", // 06:00 CEST
    ]);
    assert.deepEqual(state(s, utc(2026, 10, 25, 0)), [
      "sat-night",
      "2026-10-24T20:00:00.000Z", // 22:00 CEST
      "2026-10-25T05:00:00.000Z", // 06:00 CET
    ]);
  });
  await t.step("Berlin: a window from 02:30 opens after the gap, or at the first 02:30", () => {
    const s = zoneOf("Europe/Berlin", { name: "w", days: ["sun"], from: "02:30", to: "05:00" });
    assert.deepEqual(state(s, utc(2026, 3, 29, 0, 59)), [
      null,
      "2026-03-22T04:00:00.000Z",
      "2026-03-29T01:00:00.000Z", // 03:00 CEST, the end of the gap
    ]);
    assert.deepEqual(state(s, utc(2026, 3, 29, 1)), [
      "w",
      "2026-03-29T01:00:00.000Z",
      "2026-03-29T03:00:00.000Z",
    ]);
    // Autumn: opens at the first 02:30 (CEST) and holds the second pass of 02:00-03:00 too.
    assert.deepEqual(state(s, utc(2026, 10, 25, 1, 45)), [
      "w",
      "2026-10-25T00:30:00.000Z",
      "2026-10-25T04:00:00.000Z", // 05:00 CET
    ]);
  });
  await t.step("Berlin: a window wholly inside the skipped hour does not open that day", () => {
    const s = zoneOf("Europe/Berlin", { name: "gap", days: ["sun"], from: "02:10", to: "02:50" });
    assert.deepEqual(state(s, utc(2026, 3, 29, 1)), [
      null,
      "2026-03-22T01:50:00.000Z", // 22 March 02:50 CET
      "2026-04-05T00:10:00.000Z", // 5 April 02:10 CEST
    ]);
  });
  await t.step("New York: 01:30-03:00 on a Sunday holds the repeated hour in autumn", () => {
    const s = zoneOf("America/New_York", { name: "w", days: ["sun"], from: "01:30", to: "03:00" });
    assert.deepEqual(state(s, utc(2026, 11, 1, 6, 15)), [
      "w",
      "2026-11-01T05:30:00.000Z", // 01:30 EDT
      "2026-11-01T08:00:00.000Z", // 03:00 EST
    ]);
    assert.deepEqual(state(s, utc(2026, 3, 8, 6, 45)), [
      "w",
      "2026-03-08T06:30:00.000Z", // 01:30 EST
      "2026-03-08T07:00:00.000Z", // 03:00 EDT, straight after 02:00 EST
    ]);
  });
  await t.step("New York: a window ending at 01:30 closes at the first 01:30", () => {
    const s = zoneOf("America/New_York", { name: "w", days: ["sun"], from: "00:00", to: "01:30" });
    assert.equal(nextSwitchMs(s, utc(2026, 11, 1, 4)), utc(2026, 11, 1, 5, 30));
    // The second 01:10 (EST) is after the window closed.
    assert.deepEqual(state(s, utc(2026, 11, 1, 6, 10)), [
      null,
      "2026-11-01T05:30:00.000Z",
      "2026-11-08T05:00:00.000Z", // next Sunday 00:00 EST
    ]);
  });
});

const windowArb = fc.record({
  days: fc.subarray([...WEEKDAYS], { minLength: 1 }),
  from: at,
  to: fc.oneof(at, fc.constant("24:00")),
  name: fc.string({ maxLength: 3 }),
});
const scheduleArb = fc.record({
  timeZone: fc.constantFrom(...ZONES),
  windows: fc.array(windowArb, { minLength: 1, maxLength: 3 }),
}).filter((s) => {
  try {
    validateSchedule(s);
    return true;
  } catch (e) {
    if (e instanceof ValidationError) return false;
    throw e;
  }
});

/** Which window holds a local wall time, by minutes of the week: the reference away from DST. */
function byWall(s: Schedule<W>, wall: number): number {
  const minute = Math.floor(wall / 60_000);
  const day = Math.floor(minute / 1440);
  const ofWeek = (((day + 3) % 7 + 7) % 7) * 1440 + (minute - day * 1440);
  const toMin = (c: string) => Number(c.slice(0, 2)) * 60 + Number(c.slice(3));
  return s.windows.findIndex((w) =>
    w.days.some((d) => {
      const start = WEEKDAYS.indexOf(d) * 1440 + toMin(w.from);
      const len = (toMin(w.to) - toMin(w.from) + 1440) % 1440 || 1440;
      return ((ofWeek - start) % (7 * 1440) + 7 * 1440) % (7 * 1440) < len;
    })
  );
}

Deno.test("property: schedule states hold the instant, switch at their end, match the clock", () => {
  fc.assert(
    fc.property(scheduleArb, instantArb, (s, t) => {
      const x = scheduleAt(s, t);
      assert.ok(x.startMs <= t && t < x.endMs, `${iso(x.startMs)} <= ${iso(t)} < ${iso(x.endMs)}`);
      assert.ok(x.endMs - t <= 8 * DAY);
      assert.equal(scheduleAt(s, x.endMs - 1).index, x.index);
      assert.equal(scheduleAt(s, x.startMs).index, x.index);
      assert.notEqual(scheduleAt(s, x.endMs).index, x.index); // a switch really switches
      assert.equal(scheduleAt(s, x.endMs).startMs, x.endMs);
      assert.notEqual(scheduleAt(s, x.startMs - 1).index, x.index);
      // Away from a DST change, the answer is the plain wall-clock one.
      const zone = s.timeZone;
      if (offsetMs(zone, t - 2 * DAY) === offsetMs(zone, t + 2 * DAY)) {
        assert.equal(x.index, byWall(s, wallMs(zone, t)));
      }
      assert.equal(x.window, x.index < 0 ? null : s.windows[x.index]);
    }),
    { numRuns: 300 },
  );
});
