/**
 * Rate-limit response headers computed from limit statuses: the IETF `RateLimit-Policy` and
 * `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-09/10) and, optionally, the
 * OpenAI-style `x-ratelimit-*` headers.
 *
 * ## What the numbers mean for a token bucket
 *
 * A token bucket has no fixed windows, so the draft's terms are mapped as follows, for each limit:
 *
 * - `q` (quota) is the bucket's capacity: the most a client can spend at once.
 * - `w` (window) is the seconds an empty bucket takes to fill up again, rounded up:
 *   `capacity × refillPeriodSeconds / refillAmount`. For a limit without extra burst
 *   (`Limit.perMinute("tpm", 10_000)`) that is the refill period itself (`w=60`), so the policy
 *   reads as the familiar "10 000 per 60 s"; with a burst it stays true that a drained quota
 *   comes back in full within `w`.
 * - `r` (remaining) is the whole tokens left now (never negative; a bucket in debt shows 0).
 * - `t` (reset) is the seconds until the bucket is full again, rounded up: after `t` seconds
 *   without use, `r` is back to `q`, which is the draft's meaning of a reset. It is the same on
 *   admitted and refused responses. It is deliberately *not* the wait for the next request: a
 *   token bucket refills continuously, so some quota returns long before `t`; a refused request
 *   gets that exact wait in `Retry-After` instead.
 *
 * ## What the numbers mean for a quota
 *
 * A quota (`Limit.quota`) has windows, so the draft's terms apply as written: `q` is the amount
 * per window, `w` the current window's length in seconds (a calendar month's days, so `w=2678400`
 * in a 31-day month, 23 or 25 hours on a DST day, a `resetAfter` duration), `r` the whole tokens
 * left in it, and `t` the seconds to the window's end, when the quota is whole again, rounded up.
 * They come from the status's `window`; a quota status built without it (by hand) gets the token
 * bucket numbers of its nominal period.
 *
 * Every number is an RFC 8941 integer, which has at most 15 digits: a value above
 * {@link MAX_SF_INTEGER} (a `t` of a key deep in debt, a `w` of a very slow refill) is written as
 * `999999999999999`, about 31.7 million years.
 *
 * ## Policy names
 *
 * The requesting entity's limits are named after the limit (`"tpm"`), another entity's (the
 * parent's, when cascading) `"<entityId>/<limit name>"`; the limits of a further resource of the
 * call (`also`) put `"<resource>:"` before the limit name. Names are at most
 * {@link MAX_POLICY_NAME} characters: when `"<entityId>/<limit name>"` would be longer (with `tpm`, a
 * parent id of 253 characters or more), the id is cut and a hash of the whole id is appended, see
 * {@link defaultPolicyName}.
 *
 * The OpenAI-style headers use the same numbers: `x-ratelimit-limit-*` is `q`,
 * `x-ratelimit-remaining-*` is `r`, `x-ratelimit-reset-*` is `t` written as a duration (`"6m0s"`).
 *
 * ## Soft limits and shadow mode
 *
 * Soft limits never refuse, so they stay out of the headers above (a client would wait on them);
 * they go in {@link SOFT_LIMIT_HEADER} (`X-RateLimit-Soft: "tpm";q=1000;r=-250;t=75;u=125`, `r`
 * negative in debt, `u` the percent in use). A shadow-mode request that would have been refused
 * gets {@link SHADOW_REFUSED_HEADER} (`X-RateLimit-Shadow-Refused: "rpm"`), written by
 * `withRateLimit` and the Hono middleware.
 *
 * @module
 */

import { type LimitStatus, ValidationError } from "../errors.ts";

/** Which rate-limit headers to write. */
export interface RateLimitHeaderOptions {
  /** Write the IETF `RateLimit-Policy` and `RateLimit` fields. @default true */
  ietf?: boolean;
  /**
   * Write OpenAI-style `x-ratelimit-limit-<suffix>`, `x-ratelimit-remaining-<suffix>` and
   * `x-ratelimit-reset-<suffix>` headers. `true` names the suffix after the limit, except `rpm`
   * → `requests` and `tpm` → `tokens` (what OpenAI clients read); an object maps limit names to
   * suffixes (limits it leaves out keep their name). When several entities share a limit name
   * (a cascaded call), the one with the fewest tokens left is reported. @default false
   */
  openai?: boolean | Record<string, string>;
  /**
   * The policy name of a status in the IETF fields. @default the limit name for the requesting
   * entity's limits, `"<entityId>/<limit name>"` for another entity's (the parent, when cascading),
   * with `"<resource>:<limit name>"` for the limit of another resource of the call (`also`)
   */
  policyName?: (status: LimitStatus, primaryEntityId: string, primaryResource: string) => string;
  /**
   * Write soft limits in {@link SOFT_LIMIT_HEADER} (they never appear in the IETF or OpenAI-style
   * headers, whose clients would wait on them). @default true
   */
  soft?: boolean;
}

/** The numbers reported for one limit, in whole units, each at most {@link MAX_SF_INTEGER}. */
export interface LimitQuota {
  /** The policy name. */
  policy: string;
  /** `q`: the bucket capacity, in tokens (rounded down). */
  quota: number;
  /** `w`: seconds an empty bucket takes to fill, or a quota's window length; rounded up, ≥ 1. */
  windowSeconds: number;
  /** `r`: whole tokens left, never negative. */
  remaining: number;
  /** `t`: seconds until the bucket is full again (a quota: its window ends), rounded up. */
  resetSeconds: number;
  /**
   * `qu`: the quota unit, `"concurrent-requests"` for a concurrent limit (`q` leases in flight,
   * `r` slots free; it has no `w` nor `t`: a slot frees when a lease ends). Absent otherwise.
   */
  unit?: "concurrent-requests";
}

/** The largest integer of an RFC 8941 structured field: 15 digits. Larger values are clamped. */
export const MAX_SF_INTEGER = 999_999_999_999_999;

/** The longest policy name written. */
export const MAX_POLICY_NAME = 256;

const OPENAI_SUFFIXES: Record<string, string> = { rpm: "requests", tpm: "tokens" };

/**
 * The header that reports soft limits, an RFC 8941 list with one item per soft limit:
 * `"tpm";q=1000;r=-250;t=75;u=125`. `q` and `t` mean what they mean in `RateLimit-Policy` and
 * `RateLimit`; `r` is the whole tokens left and goes negative in debt; `u` is the whole percent of
 * the capacity in use (`(q − r) × 100 / q`, rounded down; above 100 in debt), for a gateway that
 * warns at 80.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { rateLimitHeaders, SOFT_LIMIT_HEADER } from "./headers.ts";
 * const headers = rateLimitHeaders([{ entityId: "key-1", resource: "gpt-4", limitName: "tpm",
 *   limit: Limit.perMinute("tpm", 1000, { soft: true }), available: -250, requested: 500,
 *   exceeded: false, retryAfterSeconds: 0, soft: true }]);
 * console.assert(headers.get(SOFT_LIMIT_HEADER) === '"tpm";q=1000;r=-250;t=75;u=125');
 * console.assert(headers.get("RateLimit") === null); // soft limits only here
 * ```
 */
export const SOFT_LIMIT_HEADER = "X-RateLimit-Soft";

/**
 * The header of a shadow-mode response whose request would have been refused: an RFC 8941 list of
 * the policy names of the limits that would have refused it, e.g. `"rpm", "org-1/tpm"`.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { SHADOW_REFUSED_HEADER, setShadowRefusedHeader } from "./headers.ts";
 * const headers = new Headers();
 * setShadowRefusedHeader(headers, [{ entityId: "key-1", resource: "api", limitName: "rpm",
 *   limit: Limit.perMinute("rpm", 10), available: 0, requested: 1, exceeded: true,
 *   retryAfterSeconds: 6 }], "key-1");
 * console.assert(headers.get(SHADOW_REFUSED_HEADER) === '"rpm"');
 * ```
 */
export const SHADOW_REFUSED_HEADER = "X-RateLimit-Shadow-Refused";

/**
 * The reported numbers of each status, see the module documentation for their meaning.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { limitQuotas } from "./headers.ts";
 * const [q] = limitQuotas([{ entityId: "key-1", resource: "gpt-4", limitName: "tpm",
 *   limit: Limit.perMinute("tpm", 10_000), available: 9_500, requested: 500, exceeded: false,
 *   retryAfterSeconds: 0 }]);
 * console.assert(q.quota === 10_000 && q.windowSeconds === 60);
 * console.assert(q.remaining === 9_500 && q.resetSeconds === 3);
 * // A quota: its window's length and the time left in it.
 * const [m] = limitQuotas([{ entityId: "key-1", resource: "gpt-4", limitName: "tokens",
 *   limit: Limit.quota("tokens", 1_000_000, { reset: "month@UTC" }), available: 400_000,
 *   requested: 500, exceeded: false, retryAfterSeconds: 0,
 *   window: { lengthSeconds: 2_592_000, endsInSeconds: 86_399.5 } }]);
 * console.assert(m.windowSeconds === 2_592_000 && m.resetSeconds === 86_400);
 * ```
 */
export function limitQuotas(
  statuses: readonly LimitStatus[],
  options: Pick<RateLimitHeaderOptions, "policyName"> = {},
): LimitQuota[] {
  if (statuses.length === 0) return [];
  const { entityId: primary, resource } = statuses[0];
  const { policyName = defaultPolicyName } = options;
  return statuses.map((s) => {
    const { capacityMilli: c, refillMilli: r, periodMs: p } = s.limit;
    const policy = policyName(s, primary, resource);
    checkPolicyName(policy);
    const available = Math.floor(s.available);
    if (s.limit.concurrent) {
      return {
        policy,
        quota: sfInteger(c / 1000n),
        windowSeconds: 1,
        remaining: Math.min(MAX_SF_INTEGER, Math.max(0, available)),
        resetSeconds: 0,
        unit: "concurrent-requests" as const,
      };
    }
    if (s.limit.quota && s.window) {
      return {
        policy,
        quota: sfInteger(c / 1000n),
        windowSeconds: Math.max(1, ceilSeconds(s.window.lengthSeconds)),
        remaining: Math.min(MAX_SF_INTEGER, Math.max(0, available)),
        resetSeconds: ceilSeconds(s.window.endsInSeconds),
      };
    }
    // Whole tokens are reported, so the missing amount is counted from the floor: `t` may be
    // a fraction of a token's refill too late, never too early.
    const missingMilli = c - BigInt(available) * 1000n;
    return {
      policy,
      quota: sfInteger(c / 1000n),
      windowSeconds: sfInteger(max(1n, ceilDiv(ceilDiv(c * p, r), 1000n))),
      remaining: Math.min(MAX_SF_INTEGER, Math.max(0, available)),
      resetSeconds: missingMilli <= 0n
        ? 0
        : sfInteger(ceilDiv(ceilDiv(missingMilli * p, r), 1000n)),
    };
  });
}

/**
 * Headers describing the statuses: `RateLimit-Policy` and `RateLimit` (unless `ietf: false`)
 * and, with `openai`, the `x-ratelimit-*` headers. No statuses give no headers.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { rateLimitHeaders } from "./headers.ts";
 * const h = rateLimitHeaders([{ entityId: "key-1", resource: "gpt-4", limitName: "tpm",
 *   limit: Limit.perMinute("tpm", 10_000), available: 0, requested: 500, exceeded: true,
 *   retryAfterSeconds: 3 }]);
 * console.assert(h.get("RateLimit-Policy") === `"tpm";q=10000;w=60`);
 * console.assert(h.get("RateLimit") === `"tpm";r=0;t=60`);
 * ```
 */
export function rateLimitHeaders(
  statuses: readonly LimitStatus[],
  options: RateLimitHeaderOptions = {},
): Headers {
  const headers = new Headers();
  setRateLimitHeaders(headers, statuses, options);
  return headers;
}

/**
 * Sets the headers of {@link rateLimitHeaders} on `headers` (replacing earlier values).
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { setRateLimitHeaders } from "./headers.ts";
 * const headers = new Headers({ "content-type": "text/plain" });
 * setRateLimitHeaders(headers, [{ entityId: "key-1", resource: "gpt-4", limitName: "rpm",
 *   limit: Limit.perMinute("rpm", 100), available: 99, requested: 1, exceeded: false,
 *   retryAfterSeconds: 0 }], { openai: true });
 * console.assert(headers.get("x-ratelimit-remaining-requests") === "99");
 * console.assert(headers.get("x-ratelimit-reset-requests") === "1s");
 * ```
 */
export function setRateLimitHeaders(
  headers: Headers,
  statuses: readonly LimitStatus[],
  options: RateLimitHeaderOptions = {},
): void {
  const { ietf = true, openai = false, soft: writeSoft = true } = options;
  if (statuses.length === 0) return;
  const all = limitQuotas(statuses, options);
  if (writeSoft && statuses.some((s) => s.soft)) {
    headers.set(
      SOFT_LIMIT_HEADER,
      statuses.flatMap((s, i) => (s.soft ? [softItem(s, all[i])] : [])).join(", "),
    );
  }
  // Soft limits never refuse: the headers clients wait on leave them out.
  const quotas = all.filter((_, i) => !statuses[i].soft);
  statuses = statuses.filter((s) => !s.soft);
  if (quotas.length === 0) return;
  if (ietf) {
    headers.set(
      "RateLimit-Policy",
      quotas.map((q) =>
        `${sfString(q.policy)};q=${q.quota};` +
        (q.unit ? `qu=${sfString(q.unit)}` : `w=${q.windowSeconds}`)
      ).join(", "),
    );
    headers.set(
      "RateLimit",
      quotas.map((q) =>
        `${sfString(q.policy)};r=${q.remaining}` + (q.unit ? "" : `;t=${q.resetSeconds}`)
      ).join(", "),
    );
  }
  if (openai !== false) {
    const names = openai === true ? OPENAI_SUFFIXES : openai;
    const tightest = new Map<string, LimitQuota>();
    statuses.forEach((s, i) => {
      const q = quotas[i];
      const seen = tightest.get(s.limitName);
      if (!seen || q.remaining < seen.remaining) tightest.set(s.limitName, q);
    });
    for (const [name, q] of tightest) {
      const suffix = (Object.hasOwn(names, name) ? names[name] : name).toLowerCase();
      if (!/^[a-z0-9_.-]+$/.test(suffix)) {
        throw new ValidationError(
          `openai.${name}`,
          suffix,
          "must be a header-safe suffix: letters, digits, _ . -",
        );
      }
      headers.set(`x-ratelimit-limit-${suffix}`, String(q.quota));
      headers.set(`x-ratelimit-remaining-${suffix}`, String(q.remaining));
      headers.set(`x-ratelimit-reset-${suffix}`, formatDuration(q.resetSeconds));
    }
  }
}

/**
 * Sets {@link SHADOW_REFUSED_HEADER} from a shadow-mode lease's `shadowRefusals`: the policy
 * names of the limits that would have refused the request. Nothing when there are none.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { SHADOW_REFUSED_HEADER, setShadowRefusedHeader } from "./headers.ts";
 * const headers = new Headers();
 * setShadowRefusedHeader(headers, [], "key-1");
 * console.assert(!headers.has(SHADOW_REFUSED_HEADER));
 * ```
 */
export function setShadowRefusedHeader(
  headers: Headers,
  refusals: readonly LimitStatus[],
  primaryEntityId: string,
  options: Pick<RateLimitHeaderOptions, "policyName"> = {},
  primaryResource?: string,
): void {
  if (refusals.length === 0) return;
  const { policyName = defaultPolicyName } = options;
  const names = refusals.map((s) => {
    const name = policyName(s, primaryEntityId, primaryResource ?? s.resource);
    checkPolicyName(name);
    return sfString(name);
  });
  headers.set(SHADOW_REFUSED_HEADER, [...new Set(names)].join(", "));
}

/** One soft limit's item of {@link SOFT_LIMIT_HEADER}: like the IETF fields, `r` may be negative. */
function softItem(s: LimitStatus, q: LimitQuota): string {
  const c = s.limit.capacityMilli;
  const r = BigInt(Math.floor(s.available));
  const floorR = -BigInt(MAX_SF_INTEGER);
  const remaining = r < floorR ? floorR : r;
  // Whole percent in use, rounded down: (C − r) × 100 / C, C and r in thousandths.
  const used = ((c - r * 1000n) * 100n) / c;
  return `${sfString(q.policy)};q=${q.quota};r=${remaining};t=${q.resetSeconds};u=${
    sfInteger(used < 0n ? 0n : used)
  }`;
}

/**
 * Whole seconds as an OpenAI-style duration: `"0s"`, `"45s"`, `"6m0s"`, `"1h0m5s"`.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./headers.ts";
 * console.assert(formatDuration(360) === "6m0s");
 * ```
 */
export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/**
 * The default policy name of a status: the limit name for the requesting entity's limits,
 * `"<entityId>/<limit name>"` for another entity's; a limit of another resource than
 * `primaryResource` (one of the call's `also`) is `"<resource>:<limit name>"` in both forms. When that is longer than
 * {@link MAX_POLICY_NAME} characters, the id is cut so that the name is 256 characters long:
 * `"<first characters of the id>~<FNV-1a 64 of the whole id, 16 hex digits>/<limit name>"`. The
 * same id always gives the same name, and `~` (never part of an entity id) marks a shortened
 * one. Use it from a custom `policyName` to keep the default for some statuses.
 *
 * @example
 * ```ts
 * import { Limit } from "../limit.ts";
 * import { defaultPolicyName } from "./headers.ts";
 * const status = { entityId: "p".repeat(300), resource: "chat", limitName: "tpm",
 *   limit: Limit.perMinute("tpm", 100), available: 100, requested: 1, exceeded: false,
 *   retryAfterSeconds: 0 };
 * const name = defaultPolicyName(status, "key-1");
 * console.assert(name.length === 256 && name.endsWith("/tpm") && name.includes("~"));
 * console.assert(defaultPolicyName(status, "p".repeat(300)) === "tpm");
 * console.assert(defaultPolicyName(status, "p".repeat(300), "gpt-4") === "chat:tpm");
 * ```
 */
export function defaultPolicyName(
  status: LimitStatus,
  primaryEntityId: string,
  primaryResource?: string,
): string {
  // Another resource of the call (`also`) is named too: `:` is in no resource name.
  const limit = primaryResource === undefined || status.resource === primaryResource
    ? status.limitName
    : `${status.resource}:${status.limitName}`;
  if (status.entityId === primaryEntityId) return limit;
  const name = `${status.entityId}/${limit}`;
  if (name.length <= MAX_POLICY_NAME) return name;
  const hash = `~${fnv1a64(status.entityId)}`;
  const keep = MAX_POLICY_NAME - limit.length - 1 - hash.length;
  return `${status.entityId.slice(0, keep)}${hash}/${limit}`;
}

/** FNV-1a, 64 bits, of the UTF-8 bytes of `s`, as 16 hex digits. */
function fnv1a64(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(s)) {
    h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}

/** Seconds of whole milliseconds, rounded up to whole seconds (never below 0). */
function ceilSeconds(seconds: number): number {
  const ms = BigInt(Math.max(0, Math.round(seconds * 1000)));
  return sfInteger(ceilDiv(ms, 1000n));
}

function sfInteger(n: bigint): number {
  return Number(n > BigInt(MAX_SF_INTEGER) ? BigInt(MAX_SF_INTEGER) : n);
}

function checkPolicyName(name: unknown): void {
  if (typeof name !== "string" || !/^[\x20-\x7e]{1,256}$/.test(name)) {
    throw new ValidationError(
      "policyName()",
      name,
      "must return 1-256 printable ASCII characters",
    );
  }
}

/** An RFC 8941 sf-string. */
function sfString(s: string): string {
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return a <= 0n ? -(-a / b) : (a + b - 1n) / b;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
