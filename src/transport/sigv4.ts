/**
 * AWS Signature Version 4 for one JSON `POST`, the only request the lean transport sends: a
 * handful of signed headers, a body in memory. The signing key is derived once per day, region
 * and secret; a request then costs three SHA-256 digests (body, canonical request, and the
 * HMAC's two), where the SDK's generic signer costs about 40 µs under Deno.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

/** The credentials a request is signed with. */
export interface SigningCredentials {
  /** Access key id. */
  accessKeyId: string;
  /** Secret access key. */
  secretAccessKey: string;
  /** Session token of temporary credentials (sent as `x-amz-security-token`, signed). */
  sessionToken?: string;
}

/** A request to sign. */
export interface SignInput {
  /** HTTP method. */
  method: string;
  /** Host (with `:port` when not the scheme's default). */
  host: string;
  /** Path, already URI-encoded. @default "/" */
  path?: string;
  /** Headers besides `host`, `x-amz-date` and `x-amz-security-token`; names in lower case. */
  headers: Record<string, string>;
  /** Body. */
  body: string;
  /** Signing time, epoch ms. */
  timeMs: number;
  /** Region. */
  region: string;
  /** Service name, e.g. `dynamodb`. */
  service: string;
  /** Credentials. */
  credentials: SigningCredentials;
}

const BLOCK = 64;

/** HMAC-SHA256 with a key no longer than a block, as two precomputed hash states. */
class HmacKey {
  readonly #inner: Hash;
  readonly #outer: Hash;

  constructor(key: Uint8Array) {
    const ipad = new Uint8Array(BLOCK).fill(0x36);
    const opad = new Uint8Array(BLOCK).fill(0x5c);
    for (let i = 0; i < key.length; i++) {
      ipad[i] ^= key[i];
      opad[i] ^= key[i];
    }
    this.#inner = createHash("sha256").update(ipad);
    this.#outer = createHash("sha256").update(opad);
  }

  hex(message: string): string {
    const inner = this.#inner.copy().update(message).digest();
    return this.#outer.copy().update(inner).digest("hex");
  }
}

function hmac(key: Uint8Array | string, message: string): Uint8Array {
  const k = typeof key === "string" ? new TextEncoder().encode(key) : key;
  if (k.length > BLOCK) throw new RangeError("HMAC key longer than a block");
  const ipad = new Uint8Array(BLOCK).fill(0x36);
  const opad = new Uint8Array(BLOCK).fill(0x5c);
  for (let i = 0; i < k.length; i++) {
    ipad[i] ^= k[i];
    opad[i] ^= k[i];
  }
  const inner = createHash("sha256").update(ipad).update(message).digest();
  return createHash("sha256").update(opad).update(inner).digest();
}

let lastSecond = Number.NaN;
let lastDate = "";

/**
 * `yyyymmddThhmmssZ`. The last second's text is kept: every call in the same second (most of
 * them, under load) skips the formatting.
 *
 * @example
 * ```ts
 * import { amzDate } from "./sigv4.ts";
 * console.assert(amzDate(Date.UTC(2026, 10, 30, 1, 2, 3, 999)) === "20261130T010203Z");
 * ```
 */
export function amzDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== lastSecond) {
    const iso = new Date(second * 1000).toISOString(); // 2026-11-30T01:02:03.000Z
    lastDate = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 13) + iso.slice(14, 16) +
      iso.slice(17, 19) + "Z";
    lastSecond = second;
  }
  return lastDate;
}

/** Signs requests; keeps the last signing key (one per day, region, service and secret). */
export class SigV4Signer {
  #scopeKey = "";
  #key?: HmacKey;

  /**
   * The headers to send: the input's, plus `host`, `x-amz-date`, `x-amz-security-token` (with a
   * session token) and `authorization`.
   *
   * @example
   * ```ts
   * import { SigV4Signer } from "./sigv4.ts";
   * const headers = new SigV4Signer().sign({
   *   method: "POST", host: "dynamodb.us-east-1.amazonaws.com", headers: {}, body: "{}",
   *   timeMs: 0, region: "us-east-1", service: "dynamodb",
   *   credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
   * });
   * console.assert(headers.authorization.startsWith("AWS4-HMAC-SHA256 Credential=AKID/19700101/"));
   * ```
   */
  sign(input: SignInput): Record<string, string> {
    const { credentials: creds, region, service } = input;
    const date = amzDate(input.timeMs);
    const day = date.slice(0, 8);
    const scope = `${day}/${region}/${service}/aws4_request`;
    const headers: Record<string, string> = { ...input.headers, host: input.host };
    headers["x-amz-date"] = date;
    if (creds.sessionToken) headers["x-amz-security-token"] = creds.sessionToken;
    const names = Object.keys(headers).sort();
    let canonicalHeaders = "";
    for (const name of names) canonicalHeaders += `${name}:${headers[name].trim()}\n`;
    const signedHeaders = names.join(";");
    const bodyHash = createHash("sha256").update(input.body).digest("hex");
    const canonical = `${input.method}\n${input.path ?? "/"}\n\n${canonicalHeaders}\n` +
      `${signedHeaders}\n${bodyHash}`;
    const toSign = `AWS4-HMAC-SHA256\n${date}\n${scope}\n` +
      createHash("sha256").update(canonical).digest("hex");
    const scopeKey = `${scope}\n${creds.secretAccessKey}`;
    if (scopeKey !== this.#scopeKey || this.#key === undefined) {
      const k = hmac(
        hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), region), service),
        "aws4_request",
      );
      this.#key = new HmacKey(k);
      this.#scopeKey = scopeKey;
    }
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, ` +
      `SignedHeaders=${signedHeaders}, Signature=${this.#key.hex(toSign)}`;
    return headers;
  }
}
