/**
 * `zae-limiter namespace list|create|delete`: the namespaces of a table (applications sharing it
 * without seeing each other). The global `--namespace` picks the one other commands work in.
 *
 * @module
 */

import type { Command } from "commander";
import { createNamespace, deleteNamespace, listNamespaces } from "../mod.ts";
import { makeClient } from "../src/limiter.ts";
import {
  type CommandContext,
  type Connection,
  connectionOptions,
  dynamoEndpoint,
  requireTable,
} from "./context.ts";
import type { Io } from "./io.ts";
import { UsageError } from "./limits.ts";

/** Runs `fn` with a client for the command's table, destroyed afterwards. */
async function withClient<T>(
  io: Io,
  opts: Connection,
  fn: (client: ReturnType<typeof makeClient>, tableName: string) => Promise<T>,
): Promise<T> {
  const tableName = requireTable(opts, io);
  const endpoint = dynamoEndpoint(opts, io.env);
  const client = makeClient({
    ...(endpoint ? { endpoint } : {}),
    ...(opts.region ? { region: opts.region } : {}),
  });
  try {
    return await fn(client, tableName);
  } finally {
    client.destroy();
  }
}

/** Adds `namespace list|create|delete` to the program. */
export function addNamespaceCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const ns = command(program, "namespace", "Namespaces: applications sharing one table", []);
  const sub = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(ns, name, description, examples));

  sub("list", "List the registered namespaces (the default one always exists)", [
    "zae-limiter namespace list --table-name rate_limits",
  ]).action(async (opts: Connection, c: Command) => {
    const found = await withClient(io, opts, (client, t) => listNamespaces(client, t));
    print(
      c,
      { namespaces: found },
      found.length
        ? found.map((n) => `${n.name}  ${n.createdAt}`).join("\n")
        : "No namespaces besides the default one.",
    );
  });

  sub("create <name>", "Register a namespace (a no-op when it is registered)", [
    "zae-limiter namespace create billing --table-name rate_limits",
  ]).action(async (name: string, opts: Connection, c: Command) => {
    const created = await withClient(io, opts, (client, t) => createNamespace(client, t, name));
    print(
      c,
      { namespace: name, created },
      created ? `Created namespace ${name}.` : `Namespace ${name} already exists.`,
    );
  });

  sub("delete <name>", "Delete every item of a namespace, then its registration", [
    "zae-limiter namespace delete billing --table-name rate_limits --yes",
  ])
    .option("-y, --yes", "do not ask for confirmation", false)
    .action(async (name: string, opts: Connection & { yes: boolean }, c: Command) => {
      if (!opts.yes) {
        const ok = await io.confirm(
          `Delete namespace ${name} with all its entities, limits, buckets, usage and audit events?`,
        );
        if (ok === undefined) {
          throw new UsageError("Refusing to delete without confirmation: add --yes");
        }
        if (!ok) {
          print(c, { namespace: name, deleted: false }, "Not deleted.");
          return;
        }
      }
      const items = await withClient(io, opts, (client, t) => deleteNamespace(client, t, name));
      print(
        c,
        { namespace: name, deleted: true, items },
        `Deleted namespace ${name} (${items} items).`,
      );
    });
}
