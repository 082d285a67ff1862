/**
 * `zae-limiter limits set|get|delete` (an entity's stored limits) and `zae-limiter available`
 * (the tokens available now per limit).
 *
 * @module
 */

import type { Command } from "commander";
import { type Limit, ValidationError } from "../mod.ts";
import { type CommandContext, connectionOptions, withLimiter } from "./context.ts";
import { noSuchEntity } from "./entity_cmd.ts";
import { formatLimit, UsageError } from "./limits.ts";
import { int, limitList } from "./parsers.ts";
import { CliError } from "./report.ts";

/** Adds `limits set|get|delete` and `available` to the program. */
export function addLimitsCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const limits = command(program, "limits", "Manage stored limits of an entity", []);
  const lim = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(limits, name, description, examples))
      .option("--resource <resource>", "one resource (default: the entity-wide limits)");
  lim("set <entityId>", "Store limits (replaces the stored ones)", [
    "zae-limiter limits set key-1 --resource gpt-4 --limit tpm:10000/min:15000 --limit rpm:100/min",
    "zae-limiter limits set proj-1 --limit rpd:50000/day",
  ])
    .requiredOption(
      "--limit <spec>",
      "name:rate[/sec|/min|/hour|/day][:burst][:soft] (repeatable)",
      limitList,
    )
    .option("--shards <n>", "split each bucket into n items (1-64; default: as stored)", int)
    .action(async (entityId: string, opts, c: Command) => {
      const list: Limit[] = opts.limit;
      const where = { entityId, ...(opts.resource ? { resource: opts.resource } : {}) };
      const shards = await withLimiter(io, opts, async (l) => {
        await l.setLimits({
          ...where,
          limits: list,
          ...(opts.shards === undefined ? {} : { shards: opts.shards }),
        });
        return (await l.getShards(where)).shards;
      });
      print(
        c,
        { entityId, resource: opts.resource ?? "*", limits: list, shards },
        `Stored ${list.map(formatLimit).join(", ")} for ${entityId}${
          opts.resource ? ` on ${opts.resource}` : ""
        }${shards > 1 ? ` in ${shards} shards` : ""}.`,
      );
    });
  lim("get <entityId>", "Show stored limits and their shard count", [
    "zae-limiter limits get key-1 --resource gpt-4",
  ])
    .action(async (entityId: string, opts, c: Command) => {
      const where = { entityId, ...(opts.resource ? { resource: opts.resource } : {}) };
      const [list, shards] = await withLimiter(
        io,
        opts,
        (l) => Promise.all([l.getLimits(where), l.getShards(where)]),
      );
      print(
        c,
        { entityId, resource: opts.resource ?? "*", limits: list, ...shards },
        list.length
          ? [
            ...list.map(formatLimit),
            // One item is the usual case: shown only once split.
            ...(shards.shards > 1
              ? [
                `shards: ${shards.shards}${
                  shards.shardsSince ? ` (since ${shards.shardsSince})` : ""
                }`,
              ]
              : []),
          ].join("\n")
          : `No limits stored for ${entityId}${opts.resource ? ` on ${opts.resource}` : ""}.`,
      );
    });
  lim("delete <entityId>", "Delete stored limits", [
    "zae-limiter limits delete key-1 --resource gpt-4",
  ])
    .action(async (entityId: string, opts, c: Command) => {
      await withLimiter(
        io,
        opts,
        (l) => l.deleteLimits({ entityId, ...(opts.resource ? { resource: opts.resource } : {}) }),
      );
      print(
        c,
        { entityId, resource: opts.resource ?? "*", deleted: true },
        `Deleted limits of ${entityId}${opts.resource ? ` on ${opts.resource}` : ""}.`,
      );
    });

  connectionOptions(command(program, "available", "Tokens available now per limit", [
    "zae-limiter available --entity key-1 --resource gpt-4 --limit tpm:10000/min --limit rpm:100/min",
    "zae-limiter available --entity key-1 --resource gpt-4 --stored",
  ]))
    .requiredOption("--entity <entityId>", "the entity")
    .requiredOption("--resource <resource>", "the resource")
    .option(
      "--limit <spec>",
      "name:rate[/sec|/min|/hour|/day][:burst][:soft] (repeatable)",
      limitList,
      [],
    )
    .option("--stored", "use the entity's stored limits (--limit is the fallback)", false)
    .action(async (opts, c: Command) => {
      if (!opts.stored && opts.limit.length === 0) {
        throw new UsageError("Give at least one --limit, or --stored");
      }
      const available = await withLimiter(io, opts, async (l) => {
        try {
          return await l.available({
            entityId: opts.entity,
            resource: opts.resource,
            limits: opts.limit,
            useStoredLimits: opts.stored,
          });
        } catch (err) {
          // Only --stored can resolve to no limit at all: a typo, or limits never stored.
          if (!(err instanceof ValidationError && err.field === "limits")) throw err;
          if (!(await l.getEntity(opts.entity))) throw noSuchEntity(opts.entity, "entity");
          throw new CliError(
            "NoLimitsError",
            `No limits stored for entity ${JSON.stringify(opts.entity)} on ${
              JSON.stringify(opts.resource)
            } (nor for every resource, nor as the resource's or the system's defaults): store ` +
              "some with `zae-limiter limits set` or `zae-limiter resource set-defaults`, or give " +
              "--limit",
            "resource",
          );
        }
      });
      print(
        c,
        { entityId: opts.entity, resource: opts.resource, available },
        Object.entries(available).map(([k, v]) => `${k}: ${v}`).join("\n"),
      );
    });
}
