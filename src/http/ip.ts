/**
 * {@link ipKey}: a client IP address as an entity id, for rate limiting by address.
 *
 * @module
 */

import { ValidationError } from "../errors.ts";
import { validateEntityId } from "../validate.ts";

/** Options of {@link ipKey}. */
export interface IpKeyOptions {
  /**
   * Put before the address; the result must be a valid entity id, so the prefix starts with a
   * letter or digit. It also keeps address keys apart from other keys (an API key `1.2.3.4`).
   * @default "ip:"
   */
  prefix?: string;
  /**
   * IPv6 addresses are counted per network of this prefix length (0-128): a host can take any
   * address of its /64 (privacy addresses change daily), so counting single addresses lets one
   * client multiply its quota. `128` counts each address apart. IPv4 addresses are always
   * counted one by one. @default 64
   */
  ipv6Subnet?: number;
}

/**
 * Turns a client IP address into an entity id: `prefix` followed by
 *
 * - an IPv4 address as is (`"203.0.113.7"`), also when written IPv4-mapped
 *   (`"::ffff:203.0.113.7"`, what Node and Express give for IPv4 clients on a dual-stack
 *   socket), so one client has one key whatever the socket;
 * - an IPv6 address cut to its `/ipv6Subnet` network, in the RFC 5952 form (lower case, longest
 *   zero run as `::`): `"2001:DB8:0:0:1::1"` → `"ip:2001:db8::"`, `"::1"` → `"ip:::"`.
 *
 * Brackets (`"[::1]"`) and a zone (`"fe80::1%eth0"`) are dropped. Where the address comes from:
 * `Deno.serve`'s `info.remoteAddr.hostname`, Bun's `server.requestIP(req)?.address`, Express's
 * `req.ip`, Hono's `getConnInfo(c).remote.address`. Behind a proxy, take the address the proxy
 * reports, and only from a proxy you trust.
 *
 * @throws {ValidationError} When `address` is not an IPv4 or IPv6 address, or the options are bad.
 *
 * @example
 * ```ts
 * import { ipKey } from "./ip.ts";
 * console.assert(ipKey("::ffff:127.0.0.1") === "ip:127.0.0.1");
 * console.assert(ipKey("127.0.0.1") === "ip:127.0.0.1");
 * console.assert(ipKey("2001:db8::1:2:3:4") === "ip:2001:db8::");
 * console.assert(ipKey("::1", { ipv6Subnet: 128 }) === "ip:::1");
 * ```
 */
export function ipKey(address: string, options: IpKeyOptions = {}): string {
  const { prefix = "ip:", ipv6Subnet = 64 } = options;
  if (typeof prefix !== "string") {
    throw new ValidationError("prefix", prefix, "must be a string");
  }
  if (!Number.isInteger(ipv6Subnet) || ipv6Subnet < 0 || ipv6Subnet > 128) {
    throw new ValidationError("ipv6Subnet", ipv6Subnet, "must be an integer from 0 to 128");
  }
  const ip = parseIp(address);
  if (ip === undefined) {
    throw new ValidationError("ip", address, "must be an IPv4 or IPv6 address");
  }
  const text = ip.length === 4 ? ip.join(".") : formatIpv6(maskIpv6(ip, ipv6Subnet));
  return validateEntityId(`${prefix}${text}`, "ipKey()");
}

/**
 * Parses an address: 4 bytes for IPv4 (IPv4-mapped IPv6 included), 8 groups of 16 bits for
 * IPv6; `undefined` when it is neither.
 */
export function parseIp(address: unknown): number[] | undefined {
  if (typeof address !== "string" || address.length > 100) return undefined;
  let s = address;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const v4 = parseIpv4(s);
  if (v4) return v4;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  const v6 = parseIpv6(s);
  if (!v6) return undefined;
  const mapped = v6.slice(0, 5).every((g) => g === 0) && v6[5] === 0xffff;
  return mapped ? [v6[6] >> 8, v6[6] & 0xff, v6[7] >> 8, v6[7] & 0xff] : v6;
}

function parseIpv4(s: string): number[] | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const p of parts) {
    // No leading zeros: "010" reads as octal to some parsers.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    bytes.push(n);
  }
  return bytes;
}

function parseIpv6(s: string): number[] | undefined {
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (const [i, p] of parts.entries()) {
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  if (halves.length === 1) return head?.length === 8 ? head : undefined;
  const tail = groups(halves[1]);
  // A dotted IPv4 part may only end the address.
  if (!head || !tail || halves[0].includes(".")) return undefined;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return undefined;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}

function maskIpv6(groups: number[], bits: number): number[] {
  return groups.map((g, i) => {
    const keep = Math.max(0, Math.min(16, bits - 16 * i));
    return keep === 0 ? 0 : g & ((0xffff << (16 - keep)) & 0xffff);
  });
}

/** RFC 5952: lower-case hex without leading zeros, the longest run of 2+ zero groups as `::`. */
function formatIpv6(groups: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}
