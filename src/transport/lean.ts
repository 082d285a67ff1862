/**
 * The lean transport: the hot-path calls (UpdateItem, TransactWriteItems, GetItem, BatchGetItem)
 * of a client the limiter made itself, sent as one signed `fetch` of DynamoDB's JSON 1.0 protocol
 * instead of through the SDK's middleware stack (about 200 µs of CPU a call under Deno). The
 * SDK's client still provides the credentials (its provider chain, cached), the region, the
 * endpoint and the clock offset, and sends every other call. Answers feed the client's
 * {@link ServerClock}; errors take the SDK's shape (`name`, `$metadata`, the SDK's exception
 * classes, network errors with `code`), so retries and failure classification see no difference.
 * See "Client CPU" in docs/design.md.
 *
 * @module
 */

import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  DynamoDBServiceException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import { sampleAnswer } from "../clock.ts";
import { type SigningCredentials, SigV4Signer } from "./sigv4.ts";

/** The operations the lean transport sends. */
export type LeanOperation = "UpdateItem" | "TransactWriteItems" | "GetItem" | "BatchGetItem";

/** What every answer carries, as the SDK's `$metadata`. */
export interface LeanMetadata {
  httpStatusCode?: number;
  requestId?: string;
  attempts: number;
  totalRetryDelay: number;
  clockSkewCorrected?: boolean;
}

/** The parts of a `DynamoDBClient`'s resolved config the transport reads. */
interface ClientConfig {
  region: () => Promise<string>;
  credentials: () => Promise<SigningCredentials>;
  isCustomEndpoint?: boolean;
  endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }>;
  serviceConfiguredEndpoint?: () => Promise<string | undefined>;
  useFipsEndpoint: () => Promise<boolean>;
  useDualstackEndpoint: () => Promise<boolean>;
  endpointProvider: (params: Record<string, unknown>) => { url: URL };
  systemClockOffset?: number;
}

/** Options of {@link LeanTransport}. */
export interface LeanTransportOptions {
  /** The `fetch` to use (a stub in benchmarks). @default globalThis.fetch */
  fetch?: typeof fetch;
}

const TARGET = "DynamoDB_20120810.";
/** A clock offset the SDK corrects, and so does this (ms). */
const SKEW_MS = 5 * 60_000;

/** Sends the hot-path calls of one client with `fetch`. */
export class LeanTransport {
  readonly #client: DynamoDBClient;
  readonly #config: ClientConfig;
  readonly #fetch: typeof fetch;
  readonly #signer = new SigV4Signer();
  #target?: Promise<{ url: string; host: string; region: string }>;

  constructor(client: DynamoDBClient, options: LeanTransportOptions = {}) {
    this.#client = client;
    this.#config = client.config as unknown as ClientConfig;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * One call: the input is the operation's JSON (AttributeValues are already in wire shape); the
   * output is the answer's JSON with `$metadata`. A refusal throws the SDK's error for it.
   */
  async send<T = Record<string, unknown>>(
    operation: LeanOperation,
    input: object,
    signal?: AbortSignal,
  ): Promise<T & { $metadata: LeanMetadata }> {
    const target = await (this.#target ??= this.#resolve().catch((err) => {
      this.#target = undefined;
      throw err;
    }));
    const credentials = await this.#config.credentials();
    const body = JSON.stringify(input);
    const sent = Date.now();
    const headers = this.#signer.sign({
      method: "POST",
      host: target.host,
      headers: {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": TARGET + operation,
      },
      body,
      timeMs: sent + (this.#config.systemClockOffset ?? 0),
      region: target.region,
      service: "dynamodb",
      credentials,
    });
    delete headers.host; // fetch sets it, from the URL
    let response: Response;
    try {
      response = await this.#fetch(target.url, { method: "POST", headers, body, signal });
    } catch (err) {
      throw networkError(err, target.host);
    }
    const text = await response.text();
    const date = response.headers.get("date");
    const age = response.headers.get("age");
    if (age === null) sampleAnswer(this.#client, sent, date);
    const $metadata: LeanMetadata = {
      httpStatusCode: response.status,
      requestId: response.headers.get("x-amzn-requestid") ?? undefined,
      attempts: 1,
      totalRetryDelay: 0,
    };
    if (response.ok) return Object.assign(text ? JSON.parse(text) : {}, { $metadata });
    if (age === null && this.#correctSkew(sent, date)) $metadata.clockSkewCorrected = true;
    throw serviceError(response, text, $metadata);
  }

  /** Like the SDK's signer: a server clock off by 5 minutes or more sets the signing offset. */
  #correctSkew(sent: number, date: string | null): boolean {
    const server = date === null ? NaN : Date.parse(date);
    if (server !== server) return false;
    const offset = this.#config.systemClockOffset ?? 0;
    if (Math.abs(server - (sent + offset)) < SKEW_MS) return false;
    this.#config.systemClockOffset = server - Date.now();
    return true;
  }

  /** The URL, host and signing region: from the client's endpoint, or its endpoint rules. */
  async #resolve(): Promise<{ url: string; host: string; region: string }> {
    const config = this.#config;
    const region = await config.region();
    let url: URL;
    const configured = config.isCustomEndpoint
      ? undefined
      : await config.serviceConfiguredEndpoint?.();
    if (config.isCustomEndpoint && config.endpoint) {
      const e = await config.endpoint();
      url = new URL(`${e.protocol}//${e.hostname}${e.port ? `:${e.port}` : ""}${e.path}`);
    } else if (configured) {
      url = new URL(configured);
    } else {
      url = new URL(
        config.endpointProvider({
          Region: region,
          UseFIPS: await config.useFipsEndpoint(),
          UseDualStack: await config.useDualstackEndpoint(),
          AccountIdEndpointMode: "disabled",
        }).url,
      );
    }
    return { url: url.href, host: url.host, region };
  }
}

/** The SDK's error for a refusal: its own class where code tests `instanceof`, else by name. */
function serviceError(response: Response, text: string, $metadata: LeanMetadata): Error {
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    // not JSON (a proxy's page): the status tells
  }
  const type = String(parsed.__type ?? response.headers.get("x-amzn-errortype") ?? "");
  const name = type.split("#").pop()?.split(":")[0] ||
    (response.status >= 500 ? "InternalServerError" : `HTTP${response.status}`);
  const message = String(parsed.message ?? parsed.Message ?? `${name} (HTTP ${response.status})`);
  const $fault = response.status >= 500 ? "server" : "client";
  const { __type: _type, Message: _message, ...rest } = parsed;
  const fields = { ...rest, message, $metadata };
  let err: Error;
  if (name === "ConditionalCheckFailedException") {
    err = new ConditionalCheckFailedException(fields as never);
  } else if (name === "TransactionCanceledException") {
    err = new TransactionCanceledException(fields as never);
  } else {
    err = Object.assign(new DynamoDBServiceException({ name, $fault, ...fields } as never), fields);
  }
  return err;
}

/**
 * A failed `fetch` as the SDK's Node handler reports it: an error with the socket's `code`
 * (`ECONNREFUSED`: nothing was sent; `ENOTFOUND`; `ECONNRESET`), the fetch error as `cause`.
 * An abort passes through as it is. Anything else is marked retryable, with no code, so it
 * counts as a request that may have been applied.
 */
function networkError(err: unknown, host: string): unknown {
  if (!(err instanceof Error) || err.name === "AbortError" || err.name === "TimeoutError") {
    return err;
  }
  const c = err.cause as { code?: unknown; message?: unknown } | undefined;
  const said = `${err.message} ${String(c?.message ?? "")} ${String(c?.code ?? "")} ${
    String((err as { code?: unknown }).code ?? "")
  }`;
  let code: string | undefined;
  if (/ECONNREFUSED|Connection refused/i.test(said)) code = "ECONNREFUSED";
  else if (/ENOTFOUND|EAI_AGAIN|dns error|lookup address|getaddrinfo/i.test(said)) {
    code = /EAI_AGAIN|Temporary failure/i.test(said) ? "EAI_AGAIN" : "ENOTFOUND";
  } else if (/ECONNRESET|Connection reset/i.test(said)) code = "ECONNRESET";
  const out = new Error(`${code ? `${code} ` : ""}${host}: ${err.message}`, { cause: err });
  return Object.assign(out, code ? { code } : { $retryable: {} }, {
    $metadata: { attempts: 1, totalRetryDelay: 0 },
  });
}

const transports = new WeakMap<object, LeanTransport>();

/**
 * Sends the hot-path calls of `client` through a {@link LeanTransport} from now on, in every
 * backend made for it after this call. The limiter does it for the client it makes itself; tests
 * force it on a client of their own.
 */
export function useLeanTransport(client: DynamoDBClient, options?: LeanTransportOptions): void {
  transports.set(client, new LeanTransport(client, options));
}

/** The lean transport of `client`, when {@link useLeanTransport} set one. */
export function leanTransportOf(client: DynamoDBClient): LeanTransport | undefined {
  return transports.get(client);
}
