/**
 * `zae-limiter resource set-defaults|get-defaults|delete-defaults|list` (a resource's default
 * limits, for every entity on it) and `zae-limiter system set-defaults|get-defaults|delete-defaults`
 * (the system defaults, for every entity and resource).
 *
 * @module
 */

import type { Command } from "commander";
import type { Limit } from "../mod.ts";
import { type CommandContext, commandGroup, connectionOptions, withLimiter } from "./context.ts";
import { formatLimit } from "./limits.ts";
import { limitList } from "./parsers.ts";

const LIMIT_HELP = "name:rate[/sec|/min|/hour|/day][:burst][:soft] (repeatable)";

/** Adds the `resource` and `system` command groups to the program. */
export function addDefaultsCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const resource = commandGroup(program, ctx, "resource", "Manage resources (defaults, controls)");
  const res = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(resource, name, description, examples));
  res("set-defaults <resource>", "Store a resource's default limits (replaces the stored ones)", [
    "zae-limiter resource set-defaults gpt-4 --limit tpm:100000/min --limit rpm:1000/min",
  ])
    .requiredOption("--limit <spec>", LIMIT_HELP, limitList)
    .action(async (name: string, opts, c: Command) => {
      const limits: Limit[] = opts.limit;
      await withLimiter(io, opts, (l) => l.setResourceDefaults({ resource: name, limits }));
      print(
        c,
        { resource: name, limits },
        `Stored defaults ${limits.map(formatLimit).join(", ")} for resource ${name}.`,
      );
    });
  res("get-defaults <resource>", "Show a resource's default limits", [
    "zae-limiter resource get-defaults gpt-4",
  ])
    .action(async (name: string, opts, c: Command) => {
      const limits = await withLimiter(io, opts, (l) => l.getResourceDefaults({ resource: name }));
      print(
        c,
        { resource: name, limits },
        limits.length
          ? limits.map(formatLimit).join("\n")
          : `No default limits stored for resource ${name}.`,
      );
    });
  res("delete-defaults <resource>", "Delete a resource's default limits", [
    "zae-limiter resource delete-defaults gpt-4",
  ])
    .action(async (name: string, opts, c: Command) => {
      await withLimiter(io, opts, (l) => l.deleteResourceDefaults({ resource: name }));
      print(c, { resource: name, deleted: true }, `Deleted defaults of resource ${name}.`);
    });
  res("list", "List the resources that have default limits", ["zae-limiter resource list"])
    .action(async (opts, c: Command) => {
      const resources = await withLimiter(io, opts, (l) => l.listResources());
      print(
        c,
        { resources },
        resources.length ? resources.join("\n") : "No resource has default limits.",
      );
    });

  const system = commandGroup(program, ctx, "system", "Manage the system default limits");
  const sys = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(system, name, description, examples));
  sys("set-defaults", "Store the system default limits (replaces the stored ones)", [
    "zae-limiter system set-defaults --limit rpm:60/min",
  ])
    .requiredOption("--limit <spec>", LIMIT_HELP, limitList)
    .action(async (opts, c: Command) => {
      const limits: Limit[] = opts.limit;
      await withLimiter(io, opts, (l) => l.setSystemDefaults({ limits }));
      print(c, { limits }, `Stored system defaults ${limits.map(formatLimit).join(", ")}.`);
    });
  sys("get-defaults", "Show the system default limits", ["zae-limiter system get-defaults"])
    .action(async (opts, c: Command) => {
      const limits = await withLimiter(io, opts, (l) => l.getSystemDefaults());
      print(
        c,
        { limits },
        limits.length ? limits.map(formatLimit).join("\n") : "No system default limits stored.",
      );
    });
  sys("delete-defaults", "Delete the system default limits", [
    "zae-limiter system delete-defaults",
  ])
    .action(async (opts, c: Command) => {
      await withLimiter(io, opts, (l) => l.deleteSystemDefaults());
      print(c, { deleted: true }, "Deleted the system default limits.");
    });
}
