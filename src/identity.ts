/**
 * Who an admin change is recorded as made by: the `principal` option; else, for a table on AWS,
 * the caller's ARN from STS `GetCallerIdentity` (one signed `fetch`, asked once per limiter, on its
 * first audited change: never on the hot path, and no STS client in the bundle); else `local`.
 * A failed STS call refuses the change (nothing is written) and is asked again on the next one.
 *
 * @module
 */

import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { ConfigurationError, RateLimiterUnavailable } from "./errors.ts";
import { type SigningCredentials, SigV4Signer } from "./transport/sigv4.ts";

/** The parts of a `DynamoDBClient`'s resolved config read here. */
interface ClientConfig {
  region: () => Promise<string>;
  credentials: () => Promise<SigningCredentials>;
  isCustomEndpoint?: boolean;
  endpoint?: () => Promise<{ hostname: string }>;
  serviceConfiguredEndpoint?: () => Promise<string | undefined>;
}

/** The host names of AWS service endpoints. */
const AWS_HOST = /(^|\.)(amazonaws\.com(\.cn)?|api\.aws)$/;

/**
 * Whether the client talks to DynamoDB on AWS (no endpoint, or an AWS one) rather than to a local
 * endpoint such as DynamoDB Local.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { onAws } from "./identity.ts";
 * const local = new DynamoDBClient({ region: "us-east-1", endpoint: "http://localhost:8000" });
 * console.assert(!(await onAws(local)));
 * ```
 */
export async function onAws(client: DynamoDBClient): Promise<boolean> {
  const config = client.config as unknown as ClientConfig;
  let host: string | undefined;
  if (config.isCustomEndpoint && config.endpoint) host = (await config.endpoint()).hostname;
  else {
    const configured = await config.serviceConfiguredEndpoint?.();
    if (configured) host = new URL(configured).hostname;
  }
  return host === undefined || AWS_HOST.test(host);
}

/**
 * The caller's ARN, from STS `GetCallerIdentity` signed with the client's credentials and region,
 * at `endpoint` (default: the region's STS endpoint). Refused credentials or access throw
 * {@link ConfigurationError}; no answer throws {@link RateLimiterUnavailable}.
 *
 * @example
 * ```ts ignore
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { callerArn } from "./identity.ts";
 * console.log(await callerArn(new DynamoDBClient({ region: "eu-west-1" })));
 * ```
 */
export async function callerArn(
  client: DynamoDBClient,
  endpoint?: string,
  signal?: AbortSignal,
): Promise<string> {
  const config = client.config as unknown as ClientConfig;
  const region = await config.region();
  const url = new URL(
    endpoint ?? `https://sts.${region}.amazonaws.com${region.startsWith("cn-") ? ".cn" : ""}/`,
  );
  const body = "Action=GetCallerIdentity&Version=2011-06-15";
  let response: Response;
  let text: string;
  try {
    const credentials = await config.credentials();
    const headers = new SigV4Signer().sign({
      method: "POST",
      host: url.host,
      path: url.pathname,
      headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
      body,
      timeMs: Date.now(),
      region,
      service: "sts",
      credentials,
    });
    delete headers.host; // fetch sets it, from the URL
    response = await fetch(url, {
      method: "POST",
      headers,
      body,
      signal: signal ?? AbortSignal.timeout(10_000),
    });
    text = await response.text();
  } catch (err) {
    if (err instanceof Error && err.name === "CredentialsProviderError") {
      throw stsRefused("bad-credentials", url, err.name, err.message, err);
    }
    throw new RateLimiterUnavailable(`GetCallerIdentity at ${url.host}`, err);
  }
  const arn = /<Arn>([^<]+)<\/Arn>/.exec(text)?.[1];
  if (response.ok && arn) return unescapeXml(arn);
  const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `HTTP${response.status}`;
  const message = unescapeXml(/<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? "");
  if (response.status >= 500 || code === "Throttling") {
    const cause = Object.assign(new Error(`${code}: ${message}`), { name: code });
    throw new RateLimiterUnavailable(`GetCallerIdentity at ${url.host}`, cause);
  }
  const kind = /AccessDenied|NotAuthorized/.test(code) ? "access-denied" : "bad-credentials";
  throw stsRefused(kind, url, code, message);
}

function stsRefused(
  kind: "access-denied" | "bad-credentials",
  url: URL,
  code: string,
  message: string,
  cause?: unknown,
): ConfigurationError {
  return new ConfigurationError(
    kind,
    `The caller's identity for the audit trail could not be read (STS GetCallerIdentity at ` +
      `${url.host}: ${code}${message ? `: ${message}` : ""}); the change was not made: fix the ` +
      "credentials, or set the principal option (--principal) to name the caller",
    cause,
  );
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

/**
 * Who a limiter's changes are made by: `principal` when given; else the caller's ARN when
 * `stsEndpoint` is given or the client talks to AWS; else `local`. Asked when first called.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { principalOf } from "./identity.ts";
 * const local = new DynamoDBClient({ region: "us-east-1", endpoint: "http://localhost:8000" });
 * console.assert(await principalOf({ client: local })() === "local");
 * console.assert(await principalOf({ client: local, principal: "ops" })() === "ops");
 * ```
 */
export function principalOf(
  options: { client?: DynamoDBClient; principal?: string; stsEndpoint?: string },
): () => Promise<string> {
  const { client, principal, stsEndpoint } = options;
  return async () => {
    if (principal !== undefined) return principal;
    if (client === undefined) return "local";
    if (stsEndpoint === undefined && !(await onAws(client))) return "local";
    return await callerArn(client, stsEndpoint);
  };
}
