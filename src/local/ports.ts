/**
 * Ports on this machine: whether one is free, and a free one picked by the OS.
 *
 * @module
 */

import { createServer } from "node:net";

function listenOnce(port: number, host: string | undefined): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port, host, exclusive: true }, () => {
      const addr = server.address();
      const bound = typeof addr === "object" && addr ? addr.port : port;
      server.close(() => resolvePort(bound));
    });
  });
}

/**
 * Whether nothing listens on `port`: tries to listen on it at `host` and on all interfaces
 * (where DynamoDB Local binds).
 *
 * @example
 * ```ts
 * import { isPortFree } from "./mod.ts";
 * if (!(await isPortFree(8000))) console.log("8000 is taken");
 * ```
 */
export async function isPortFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  try {
    await listenOnce(port, host);
    await listenOnce(port, undefined);
    return true;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "EADDRINUSE" || code === "EACCES") return false;
    throw e;
  }
}

/**
 * A port that is free now, picked by the OS (by listening on port 0).
 *
 * @example
 * ```ts
 * import { freePort } from "./mod.ts";
 * const port = await freePort();
 * ```
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return listenOnce(0, host);
}

/** The endpoint URL of `host` and `port` (an IPv6 host in brackets). */
export function endpointOf(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
