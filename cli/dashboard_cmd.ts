/**
 * `zae-limiter dashboard`: serves `@zae/limiter/dashboard` over the configured table with the
 * Node HTTP server (`@hono/node-server`, which runs under Node, Deno and a Bun-compiled binary)
 * until SIGINT or SIGTERM. It binds to 127.0.0.1 and answers only to loopback host names there;
 * another address needs a token, or the command refuses to start (exit 2).
 *
 * @module
 */

import type { AddressInfo } from "node:net";
import process from "node:process";
import { serve } from "@hono/node-server";
import type { Command } from "commander";
import {
  checkToken,
  createDashboard,
  type Dashboard,
  loopbackHosts,
  tokenNeeded,
} from "../src/dashboard/mod.ts";
import { type CommandContext, type Connection, connectionOptions, withLimiter } from "./context.ts";
import { UsageError } from "./limits.ts";
import { int } from "./parsers.ts";

/** The options of `zae-limiter dashboard`. */
interface DashboardOptions extends Connection {
  port: number;
  host: string;
  readOnly?: boolean;
  token?: string;
}

/** Adds `dashboard`. */
export function addDashboardCommand(program: Command, ctx: CommandContext): void {
  const { command, io } = ctx;
  connectionOptions(command(
    program,
    "dashboard",
    "Serve a web page to see and edit the limits of a table (on 127.0.0.1 unless told)",
    [
      "zae-limiter dashboard --table-name rate_limits",
      "zae-limiter dashboard --table-name rate_limits --endpoint-url http://localhost:8000 --read-only",
      "ZAE_LIMITER_DASHBOARD_TOKEN=$(openssl rand -hex 24) zae-limiter dashboard --host 0.0.0.0",
    ],
  ))
    .option("--port <n>", "port to listen on (0: any free port)", int, 8787)
    .option("--host <address>", "address to bind", "127.0.0.1")
    .option("--read-only", "refuse every change (the page shows no edit controls)")
    .option(
      "--token <token>",
      "bearer token every API call needs (default: $ZAE_LIMITER_DASHBOARD_TOKEN); required when " +
        "--host is not a loopback address",
    )
    .action(async (opts: DashboardOptions) => {
      const token = opts.token ?? (io.env.ZAE_LIMITER_DASHBOARD_TOKEN || undefined);
      if (tokenNeeded(opts.host) && token === undefined) {
        throw new UsageError(
          `Refusing to serve on ${opts.host}, which is not a loopback address, without a token: ` +
            "set --token or ZAE_LIMITER_DASHBOARD_TOKEN",
        );
      }
      checkToken(token); // a weak token stops here, before any connection
      if (opts.port > 65_535) throw new UsageError(`--port ${opts.port} must be 0 to 65535`);
      await withLimiter(io, opts, async (limiter) => {
        // One read before serving: a missing table or bad credentials stop here, not per page.
        await limiter.getSystemDefaults();
        // Made once the port is known (its loopback host names name it): nothing asks before.
        const current: { dashboard?: Dashboard } = {};
        const server = serve({
          fetch: (request: Request) =>
            current.dashboard?.fetch(request) ?? new Response("Starting\n", { status: 503 }),
          port: opts.port,
          hostname: opts.host,
          overrideGlobalObjects: false,
        });
        const port = await new Promise<number>((resolve, reject) => {
          server.once("error", reject);
          server.once("listening", () => resolve((server.address() as AddressInfo).port));
        });
        current.dashboard = createDashboard({
          limiter,
          readOnly: opts.readOnly === true,
          token,
          allowedHosts: loopbackHosts(opts.host, port),
        });
        const shown = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
        io.out(
          `Dashboard of table ${limiter.tableName} at http://${shown}:${port}/` +
            `${opts.readOnly ? " (read-only)" : ""}${
              token === undefined ? "" : " (the API needs the token)"
            }; Ctrl-C stops it\n`,
        );
        await new Promise<void>((resolve) => {
          const stop = () => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            server.close(() => resolve());
            // Browsers keep connections open: close them, or close() waits for them.
            (server as { closeAllConnections?: () => void }).closeAllConnections?.();
          };
          process.on("SIGINT", stop);
          process.on("SIGTERM", stop);
        });
        io.err("Dashboard stopped.\n");
      });
    });
}
