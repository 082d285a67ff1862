/**
 * Two kinds of failure: an outage (DynamoDB did not answer in time, or answered that it is
 * overloaded or broken) and a misconfiguration (the table, the credentials, the region or the
 * request is wrong). An outage follows the failure mode; a misconfiguration is a
 * {@link ConfigurationError}, raised at once in both modes and never turned into a pass.
 * The table of error names is in docs/design.md, "Failure modes and deadlines".
 *
 * @module
 */

import {
  ConfigurationError,
  type ConfigurationErrorKind,
  RateLimiterUnavailable,
  ZaeLimiterError,
} from "./errors.ts";
import { unwrap } from "./retry.ts";

/** Where a limiter points, for messages that say what to do. */
export interface Whereabouts {
  /** The table. */
  tableName: string;
  /** The region, when known. */
  region?: string;
  /** The endpoint, when one is set. */
  endpoint?: string;
}

const CREDENTIAL_ERRORS = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "MissingAuthenticationToken",
  "MissingAuthenticationTokenException",
  "InvalidClientTokenId",
  "ExpiredTokenException",
  "ExpiredToken",
  "IncompleteSignature",
  "IncompleteSignatureException",
  "SignatureDoesNotMatch",
  "CredentialsProviderError",
]);

const ACCESS_ERRORS = new Set([
  "AccessDeniedException",
  "AccessDenied",
  "NotAuthorized",
  "UnauthorizedOperation",
]);

/** The kind of misconfiguration an SDK error shows, or `undefined` for anything else. */
export function misconfiguration(err: unknown): ConfigurationErrorKind | undefined {
  if (!(err instanceof Error)) return undefined;
  const name = err.name;
  const message = err.message ?? "";
  if (name === "ResourceNotFoundException") {
    return /index/i.test(message) ? "table-schema" : "table-not-found";
  }
  if (ACCESS_ERRORS.has(name)) return "access-denied";
  if (CREDENTIAL_ERRORS.has(name)) return "bad-credentials";
  if (/^Region is missing/i.test(message)) return "region-missing";
  if (name === "ValidationException") {
    return /provided key element|missing the key|key schema|does not match the schema|conditions on the keys/i
        .test(
          message,
        )
      ? "table-schema"
      : "invalid-request";
  }
  return undefined;
}

/** What is wrong and what to do, on one line. */
export function misconfigurationMessage(
  kind: ConfigurationErrorKind,
  err: Error,
  where: Whereabouts,
  operation: string,
): string {
  const table = `Table "${where.tableName}"`;
  const at = `${where.region ? ` in ${where.region}` : ""}${
    where.endpoint ? ` at ${where.endpoint}` : ""
  }`;
  const said = oneLine(err.message);
  switch (kind) {
    case "table-not-found":
      return `${table} does not exist${at}: create it (createTable: true, ` +
        "zae-limiter entity create --create-table) or deploy the stack (zae-limiter deploy)";
    case "table-schema":
      return `${table}${at} is not a zae-limiter table (expected string keys PK and SK, and ` +
        `indexes GSI1 and GSI2): ${said}; point tableName at a zae-limiter table or deploy one ` +
        "(zae-limiter deploy)";
    case "access-denied":
      return `Access denied to ${table}${at} during ${operation}: ${said}; grant the ` +
        "zae-limiter policy of the stack (zae-limiter cfn-template) to this role";
    case "bad-credentials":
      return `The AWS credentials were refused${at} during ${operation} (${err.name}: ${said}): ` +
        "check AWS_PROFILE / AWS_ACCESS_KEY_ID, or the role this code runs under";
    case "region-missing":
      return `No AWS region is set for ${table} during ${operation}: pass region, or set ` +
        "AWS_REGION, or an endpoint (AWS_ENDPOINT_URL_DYNAMODB) for DynamoDB Local";
    case "invalid-request":
      return `DynamoDB refused ${operation} on ${table}${at} as invalid: ${said}`;
    case "schema-outdated":
      return `${table}${at} is an older schema than ${operation} needs: run \`zae-limiter ` +
        `upgrade --table-name ${where.tableName}\``;
    case "schema-newer":
      return `${table}${at} is a newer schema than this library knows: upgrade @zae/limiter`;
  }
}

/**
 * The library error for a failure of `operation`: a {@link ConfigurationError} for a
 * misconfiguration, an error of this library as it is, else {@link RateLimiterUnavailable}.
 */
export function limiterError(
  err: unknown,
  operation: string,
  where: Whereabouts,
): ZaeLimiterError {
  if (err instanceof ZaeLimiterError) return err;
  const cause = unwrap(err);
  const kind = misconfiguration(cause);
  if (kind) {
    return new ConfigurationError(
      kind,
      misconfigurationMessage(kind, cause as Error, where, operation),
      cause,
    );
  }
  return new RateLimiterUnavailable(
    where.endpoint ? `${operation} at ${where.endpoint}` : operation,
    cause,
  );
}

function oneLine(s: string): string {
  // deno-lint-ignore no-control-regex
  const flat = s.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat;
}
