/**
 * Deadlines and retries for DynamoDB calls: capped exponential backoff with full jitter, inside
 * one deadline per limiter call.
 *
 * @module
 */

/** Error names DynamoDB (or the network under it) uses for a call worth trying again. */
const RETRYABLE = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "InternalServerError",
  "InternalFailure",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "TransactionInProgressException",
  "TransactionConflictException",
  "LimitExceededException",
  "TimeoutError",
  "RequestTimeout",
  "RequestTimeoutException",
]);

/** Socket error codes of a network failure (node's, and undici's under `fetch`). */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** True when the error is a throttle, a server fault or a network failure: worth a retry. */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & {
    code?: string;
    $retryable?: unknown;
    $metadata?: { httpStatusCode?: number };
    CancellationReasons?: { Code?: string }[];
  };
  if (e.name === "TransactionCanceledException") {
    const codes = (e.CancellationReasons ?? []).map((r) => r.Code ?? "None");
    return !codes.includes("ConditionalCheckFailed") &&
      codes.some((c) =>
        c === "TransactionConflict" || c === "ThrottlingError" ||
        c === "ProvisionedThroughputExceeded"
      );
  }
  if (RETRYABLE.has(e.name) || e.$retryable) return true;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return true;
  // fetch/undici and node:http put the socket error in `cause`.
  if (e.cause instanceof Error && e.cause !== err) return isRetryable(e.cause);
  return /socket hang up|ECONNREFUSED|ECONNRESET|network|fetch failed/i.test(e.message);
}

/** True when the error is the deadline's own abort. */
export function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** Options of {@link withRetries}. */
export interface RetryOptions {
  /** Absolute deadline, epoch ms by `Date.now()` (real time, not the limiter's clock). */
  deadline: number;
  /** First backoff in ms. @default 10 */
  baseMs?: number;
  /** Largest backoff in ms. @default 200 */
  capMs?: number;
  /** Told of each failure that is tried again (the limiter's telemetry counts retries). */
  onRetry?: (err: unknown) => void;
}

/** Error thrown when the deadline passed; `cause` is the last failure. */
export class DeadlineExceeded extends Error {
  /** @param cause The last failure before the deadline. */
  constructor(cause?: unknown) {
    super("deadline exceeded", { cause });
    this.name = "DeadlineExceeded";
  }
}

/**
 * Runs `fn(signal)` until it succeeds, fails with an error that is not retryable, or the
 * deadline passes (then {@link DeadlineExceeded} with the last error as `cause`). The signal
 * aborts at the deadline.
 */
export async function withRetries<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { deadline, baseMs = 10, capMs = 200 } = options;
  let attempt = 0;
  let last: unknown;
  while (true) {
    const left = deadline - Date.now();
    if (left <= 0) throw new DeadlineExceeded(last);
    const signal = AbortSignal.timeout(left);
    try {
      return await fn(signal);
    } catch (err) {
      if (isAbort(err) || signal.aborted) throw new DeadlineExceeded(last ?? err);
      if (!isRetryable(err)) throw err;
      last = err;
    }
    const backoff = Math.random() * Math.min(capMs, baseMs * 2 ** attempt++);
    const wait = Math.min(backoff, deadline - Date.now());
    if (wait <= 0) throw new DeadlineExceeded(last);
    options.onRetry?.(last);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** Error names that prove a request was refused before it could change anything. */
const NOT_APPLIED = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "TransactionInProgressException",
  "TransactionConflictException",
  "LimitExceededException",
  "ValidationException",
  "ResourceNotFoundException",
  "ConditionalCheckFailedException",
  "UnrecognizedClientException",
  "AccessDeniedException",
]);

/**
 * True when the failed request may have been applied anyway: it was sent and no answer said it
 * was refused (a timeout, a dropped connection, a server fault).
 */
export function mayHaveApplied(err: unknown): boolean {
  if (!(err instanceof Error)) return true;
  const e = err as Error & {
    code?: string;
    CancellationReasons?: { Code?: string }[];
    $metadata?: { attempts?: number };
  };
  // A client of the caller's own may retry inside the SDK: the error is then only the last
  // attempt's, and an earlier one may have landed.
  if ((e.$metadata?.attempts ?? 1) > 1) return true;
  // The lean transport's socket client saw that no byte of the request was written.
  if ((e as { $sent?: unknown }).$sent === false) return false;
  if (NOT_APPLIED.has(e.name)) return false;
  if (e.name === "TransactionCanceledException") return false;
  const code = e.code ?? (e.cause as { code?: string } | undefined)?.code;
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN") return false;
  if (/ECONNREFUSED/.test(e.message)) return false;
  return true;
}

/** The error under a deadline: the last failure, or the deadline itself when there was none. */
export function unwrap(err: unknown): unknown {
  return err instanceof DeadlineExceeded ? err.cause ?? err : err;
}
