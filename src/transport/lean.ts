/**
 * The lean transport: the hot-path calls (UpdateItem, TransactWriteItems, GetItem, BatchGetItem)
 * of a client the limiter made itself, sent as one signed POST of DynamoDB's JSON 1.0 protocol
 * instead of through the SDK's middleware stack (about 200 µs of CPU a call under Deno), over
 * keep-alive HTTP/1.1 sockets (`http1.ts`) or `fetch` (a proxy, or as asked; `sender.ts`). The
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
import { NETWORK_CODES } from "../retry.ts";
import { Http1Client } from "./http1.ts";
import {
  fetchSender,
  type LeanAnswer,
  type LeanSender,
  proxyConfigured,
  socketSender,
} from "./sender.ts";
import { type SigningCredentials, SigV4Signer } from "./sigv4.ts";

export type { LeanAnswer, LeanRequest, LeanSender } from "./sender.ts";

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
  /**
   * Send with this `fetch` instead of the socket client. Without it, `fetch` is used only when
   * the environment names a proxy (`HTTPS_PROXY` and the like) or `globalThis.fetch` was replaced.
   */
  fetch?: typeof fetch;
  /**
   * Wraps (or replaces) the sender chosen above: a meter counting calls, added latency, canned
   * answers in a benchmark.
   */
  sender?: (sender: LeanSender) => LeanSender;
}

const TARGET = "DynamoDB_20120810.";
/** A clock offset the SDK corrects, and so does this (ms). */
const SKEW_MS = 5 * 60_000;

/** Sends the hot-path calls of one client. */
export class LeanTransport {
  readonly #client: DynamoDBClient;
  readonly #config: ClientConfig;
  readonly #send: LeanSender;
  readonly #http?: Http1Client;
  readonly #signer = new SigV4Signer();
  #target?: Promise<{ url: string; host: string; region: string }>;

  constructor(client: DynamoDBClient, options: LeanTransportOptions = {}) {
    this.#client = client;
    this.#config = client.config as unknown as ClientConfig;
    let send: LeanSender;
    if (options.fetch) send = fetchSender(options.fetch);
    else if (proxyConfigured()) send = fetchSender(globalThis.fetch);
    else send = socketSender(this.#http = new Http1Client());
    this.#send = options.sender ? options.sender(send) : send;
  }

  /** Whether calls go over the socket client (not `fetch`) unless `globalThis.fetch` is replaced. */
  get usesSockets(): boolean {
    return this.#http !== undefined;
  }

  /** Sockets the socket client opened so far (tests count them to see reuse). */
  get connections(): number {
    return this.#http?.connections ?? 0;
  }

  /** Closes the socket client's connections (calls in flight fail; a later call opens one). */
  close(): void {
    this.#http?.close();
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
    delete headers.host; // the sender sets it, from the URL
    let response: LeanAnswer;
    try {
      response = await this.#send({ url: target.url, headers, body, signal });
    } catch (err) {
      throw networkError(err, target.host);
    }
    const { text, status } = response;
    const date = response.header("date");
    const age = response.header("age");
    if (age === null) sampleAnswer(this.#client, sent, date);
    const $metadata: LeanMetadata = {
      httpStatusCode: status,
      requestId: response.header("x-amzn-requestid") ?? undefined,
      attempts: 1,
      totalRetryDelay: 0,
    };
    if (status >= 200 && status < 300) {
      return Object.assign(text ? JSON.parse(text) : {}, { $metadata });
    }
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
function serviceError(response: LeanAnswer, text: string, $metadata: LeanMetadata): Error {
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    // not JSON (a proxy's page): the status tells
  }
  const type = String(parsed.__type ?? response.header("x-amzn-errortype") ?? "");
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
 * A failed send as the SDK's Node handler reports it: an error with the socket's `code`
 * (`ECONNREFUSED`: nothing was sent; `ENOTFOUND`; `ECONNRESET`, `EPIPE`, `ETIMEDOUT`), the
 * sender's error as `cause`. An abort passes through as it is. Anything else is marked
 * retryable, with no code, so it counts as a request that may have been applied, unless the
 * socket client says no byte of it was written (`$sent: false`).
 */
function networkError(err: unknown, host: string): unknown {
  if (!(err instanceof Error) || err.name === "AbortError" || err.name === "TimeoutError") {
    return err;
  }
  const c = err.cause as { code?: unknown; message?: unknown } | undefined;
  const own = (err as { code?: unknown; sent?: unknown }).code;
  const said = `${err.message} ${String(c?.message ?? "")} ${String(c?.code ?? "")} ${
    String(own ?? "")
  }`;
  let code: string | undefined;
  if (typeof own === "string" && NETWORK_CODES.has(own)) code = own;
  else if (/ECONNREFUSED|Connection refused/i.test(said)) code = "ECONNREFUSED";
  else if (/ENOTFOUND|EAI_AGAIN|dns error|lookup address|getaddrinfo/i.test(said)) {
    code = /EAI_AGAIN|Temporary failure/i.test(said) ? "EAI_AGAIN" : "ENOTFOUND";
  } else if (/ECONNRESET|Connection reset/i.test(said)) code = "ECONNRESET";
  const out = new Error(`${code ? `${code} ` : ""}${host}: ${err.message}`, { cause: err });
  const unsent = (err as { sent?: unknown }).sent === false;
  return Object.assign(out, code ? { code } : { $retryable: {} }, unsent ? { $sent: false } : {}, {
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

/**
 * Closes the sockets of `client`'s lean transport, if it has one (the limiter does it when it
 * destroys the client it made).
 */
export function closeLeanTransport(client: DynamoDBClient): void {
  transports.get(client)?.close();
}

/** The lean transport of `client`, when {@link useLeanTransport} set one. */
export function leanTransportOf(client: DynamoDBClient): LeanTransport | undefined {
  return transports.get(client);
}
