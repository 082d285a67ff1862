/**
 * What the CLI says when something fails, and how it keeps stored text from steering the terminal:
 * one error line that says what to do (or a JSON object with `--json`), the exit code, a fast
 * check of a local endpoint, and the escaping of control characters in text output.
 *
 * @module
 */

import { createConnection } from "node:net";
import { CommanderError } from "commander";
import { ConfigurationError, RateLimiterUnavailable, ValidationError } from "../mod.ts";
import { StackSettingsError } from "../src/infra/mod.ts";
import { UsageError } from "./limits.ts";

/** A failure the CLI itself reports: its type (as `--json` names it), message and exit code. */
export class CliError extends Error {
  /** The `type` of the JSON error, e.g. `"EntityNotFoundError"`. */
  readonly type: string;
  /** The argument at fault, when there is one. */
  readonly field?: string;
  /** The exit code: 1 (an error) unless said otherwise, e.g. 3 for "not running". */
  readonly exitCode: number;

  /**
   * @param type The `type` of the JSON error.
   * @param message One line: what is wrong and what to do.
   * @param field The argument at fault.
   * @param exitCode The exit code (default 1).
   */
  constructor(type: string, message: string, field?: string, exitCode = 1) {
    super(message);
    this.name = type;
    this.type = type;
    this.exitCode = exitCode;
    if (field !== undefined) this.field = field;
  }
}

/** Where a failing command was talking to, and what it was doing. */
export interface FailureContext {
  /** The command, e.g. `"entity create"`. */
  operation: string;
  /** The DynamoDB endpoint, when one was given. */
  endpoint?: string;
  /** The region, when one was given. */
  region?: string;
  /** Whether the command talks to DynamoDB (else to CloudFormation, Lambda, …). */
  dynamo?: boolean;
}

/** An error as the CLI reports it. */
export interface ErrorReport {
  /** 1 for a failure, 2 for bad usage, or a `CliError`'s own code. */
  exitCode: number;
  /** The error's type, e.g. `"ValidationError"`. */
  type: string;
  /** One line, without the `error: ` prefix. */
  message: string;
  /** The argument at fault, when known. */
  field?: string;
  /** A `ConfigurationError`'s kind. */
  kind?: string;
}

/**
 * Turns any error into its report: a dead or missing DynamoDB names the endpoint, the command and
 * what to do; a `ConfigurationError` keeps its own message (which says what to do).
 */
export function explain(err: unknown, ctx: FailureContext | undefined): ErrorReport {
  if (err instanceof CommanderError) {
    const message = err.message.replace(/^error: /, "");
    const option = /option '(-[^ ',]+|--[^ ',]+)/.exec(message)?.[1];
    return { exitCode: 2, type: "UsageError", message, ...(option ? { field: option } : {}) };
  }
  if (err instanceof ValidationError) {
    return { exitCode: 2, type: err.name, message: err.message, field: err.field };
  }
  if (err instanceof UsageError || err instanceof StackSettingsError) {
    return { exitCode: 2, type: "UsageError", message: err.message };
  }
  if (err instanceof CliError) {
    return {
      exitCode: err.exitCode,
      type: err.type,
      message: err.message,
      ...(err.field ? { field: err.field } : {}),
    };
  }
  if (ctx && regionMissing(err)) {
    return {
      exitCode: 1,
      type: "ConfigurationError",
      kind: "region-missing",
      message: `No AWS region for ${ctx.operation}: give --region, set AWS_REGION, ` +
        "or set AWS_ENDPOINT_URL_DYNAMODB to use DynamoDB Local (zae-limiter local up)",
    };
  }
  if (err instanceof ConfigurationError) {
    return { exitCode: 1, type: err.name, kind: err.kind, message: err.message };
  }
  if (ctx && (err instanceof RateLimiterUnavailable || networkCode(err) !== undefined)) {
    const cause = err instanceof RateLimiterUnavailable ? err.cause : err;
    return {
      exitCode: 1,
      type: "RateLimiterUnavailable",
      message: unreachableMessage(ctx, describeCause(cause)),
    };
  }
  const type = err instanceof Error ? err.name : "Error";
  // Every line reads `error: …`: no second `Error:` from a message that starts with one.
  const message = (err instanceof Error ? err.message : String(err)).replace(/^Error:\s*/, "");
  return { exitCode: 1, type, message };
}

/** The report as the one line written to standard error. */
export function errorLine(report: ErrorReport): string {
  return `error: ${escapeControls(report.message.replace(/\s*\n\s*/g, " "))}\n`;
}

/** The report as the JSON written to standard output with `--json` (the message kept exact). */
export function errorJson(report: ErrorReport): string {
  const { type, message, field, kind } = report;
  const error = { type, message, ...(field ? { field } : {}), ...(kind ? { kind } : {}) };
  return `${JSON.stringify({ error }, null, 2)}\n`;
}

function unreachableMessage(ctx: FailureContext, cause: string): string {
  const service = ctx.dynamo === false ? "AWS" : "DynamoDB";
  const where = ctx.endpoint ?? (ctx.region ? `AWS in ${ctx.region}` : "AWS");
  const head = `${service} is not reachable at ${where} during ${ctx.operation} (${cause})`;
  if (ctx.dynamo !== false && ctx.endpoint && isLocalEndpoint(ctx.endpoint)) {
    return `${head}: start DynamoDB Local with \`zae-limiter local up\`, or point --endpoint-url ` +
      "(AWS_ENDPOINT_URL_DYNAMODB) at a running one";
  }
  return `${head}: check the network, the endpoint and the region, then try again`;
}

function regionMissing(err: unknown): boolean {
  if (err instanceof ConfigurationError) return err.kind === "region-missing";
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (/Region is missing/i.test(e.message)) return true;
  }
  return false;
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);

function networkCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_CODES.has(code)) return code;
  }
  return undefined;
}

function describeCause(cause: unknown): string {
  const code = networkCode(cause);
  if (code === "ECONNREFUSED") return "connection refused";
  if (code !== undefined) return code;
  const text = cause instanceof Error ? cause.message : String(cause ?? "no answer");
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

/**
 * Whether an endpoint is on this machine: `localhost`, `127.x.x.x`, `[::1]` or `0.0.0.0`.
 *
 * @example
 * ```ts
 * import { isLocalEndpoint } from "./report.ts";
 * console.assert(isLocalEndpoint("http://127.0.0.1:8000"));
 * console.assert(!isLocalEndpoint("https://dynamodb.eu-west-1.amazonaws.com"));
 * ```
 */
export function isLocalEndpoint(endpoint: string): boolean {
  let host: string;
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    return false;
  }
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" ||
    host === "0.0.0.0" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Opens (and closes) a TCP connection to a local endpoint, so that a DynamoDB Local that is not
 * running is reported at once rather than after the limiter's retries. Throws a `CliError` naming
 * the endpoint, the operation and `zae-limiter local up`. Does nothing for a remote endpoint.
 */
export async function checkLocalEndpoint(
  endpoint: string,
  operation: string,
  timeoutMs = 1000,
): Promise<void> {
  if (!isLocalEndpoint(endpoint)) return;
  const url = new URL(endpoint);
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, "");
  // `localhost` may resolve to either family; a server on one of them is enough.
  const hosts = host === "localhost" ? ["127.0.0.1", "::1"] : [host];
  const results = await Promise.all(hosts.map((h) => tryConnect(h, port, timeoutMs)));
  if (results.some((r) => r === undefined)) return;
  const cause = results[0] === "ECONNREFUSED" ? "connection refused" : results[0];
  throw new CliError("RateLimiterUnavailable", unreachableMessage({ operation, endpoint }, cause!));
}

/** Resolves `undefined` when the port accepts a connection, else the reason it did not. */
function tryConnect(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (why: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(`no connection within ${timeoutMs} ms`), timeoutMs);
    socket.once("connect", () => done(undefined));
    socket.once("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/**
 * Escapes control characters (C0, DEL, C1: escape sequences, `\r`, `\n`, bell…) so that stored
 * text cannot move the cursor, set the title or the clipboard, or fake a line. Printable text,
 * including non-ASCII letters, is kept.
 *
 * @example
 * ```ts
 * import { escapeControls } from "./report.ts";
 * console.assert(escapeControls("a\x1b]0;x\x07\r\nb") === "a\\x1b]0;x\\x07\\r\\nb");
 * ```
 */
export function escapeControls(text: string): string {
  // deno-lint-ignore no-control-regex -- matching control characters is the point
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => {
    if (ch === "\n") return "\\n";
    if (ch === "\r") return "\\r";
    if (ch === "\t") return "\\t";
    return `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/** Escapes the control characters of each line of `text`, keeping its line breaks. */
export function escapeLines(text: string): string {
  return text.split("\n").map(escapeControls).join("\n");
}
