/**
 * Which items of a bucket write DynamoDB throttled (auto-sharding listens to them).
 *
 * @module
 */

/** Which of `n` written items a DynamoDB error says were throttled. */
export function throttledItems(err: unknown, n: number): number[] {
  if (!(err instanceof Error)) return [];
  const e = err as Error & { CancellationReasons?: { Code?: string }[] };
  if (e.name === "TransactionCanceledException") {
    return (e.CancellationReasons ?? []).flatMap((r, i) =>
      r.Code === "ThrottlingError" || r.Code === "ProvisionedThroughputExceeded" ? [i] : []
    );
  }
  if (e.name === "ProvisionedThroughputExceededException" || e.name === "ThrottlingException") {
    return Array.from({ length: n }, (_, i) => i);
  }
  return [];
}
