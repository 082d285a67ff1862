/**
 * DynamoDB clients for the benchmark: one per library, same settings, dummy credentials for
 * DynamoDB Local, the SDK's own retries off (the limiter retries inside its deadline) and a
 * connection pool large enough for 64 requests in flight.
 *
 * @module
 */

import { DynamoDB } from "@aws-sdk/client-dynamodb";
import { Agent } from "node:http";

/**
 * A DynamoDB client for DynamoDB Local at `endpoint`; with `latency`, every call first waits
 * `latency.ms` (a simulated network round trip). `DynamoDB` (the aggregated client) is a
 * `DynamoDBClient` too, and rate-limiter-flexible needs its method style (`updateItem(...)`).
 *
 * @example
 * ```ts ignore
 * const client = benchClient("http://127.0.0.1:8000");
 * ```
 */
export function benchClient(
  endpoint: string,
  options: { maxAttempts?: number; latency?: { ms: number } } = {},
): DynamoDB {
  const client = new DynamoDB({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: options.maxAttempts ?? 1,
    requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 256 }) },
  });
  const { latency } = options;
  if (latency) {
    // A network's round trip, added to every call (`latency.ms`, read at each call):
    // DynamoDB Local answers over loopback.
    client.middlewareStack.add(
      (next) => async (args) => {
        if (latency.ms > 0) await new Promise((resolve) => setTimeout(resolve, latency.ms));
        return next(args);
      },
      { step: "finalizeRequest", name: "zaeBenchLatency" },
    );
  }
  return client;
}
