/**
 * `zae-limiter entity create|list|get|children|delete`: entities (projects, API keys) in the table.
 *
 * @module
 */

import type { Command } from "commander";
import type { Entity } from "../mod.ts";
import { type CommandContext, connectionOptions, withLimiter } from "./context.ts";
import { addEntityListCommand } from "./entity_list_cmd.ts";
import { UsageError } from "./limits.ts";
import { tagList } from "./parsers.ts";
import { CliError, escapeControls } from "./report.ts";

/** Adds `entity create|get|children|delete` to the program. */
export function addEntityCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const entity = command(program, "entity", "Manage entities (projects, API keys)", []);
  const ent = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(entity, name, description, examples));
  ent("create <entityId>", "Create an entity", [
    "zae-limiter entity create proj-1 --name Production",
    "zae-limiter entity create key-1 --parent proj-1 --cascade --meta owner=alice",
  ])
    .option("--name <name>", "display name")
    .option("--parent <entityId>", "parent entity (a project)")
    .option("--cascade", "acquires also consume from the parent", false)
    .option("--meta <key=value>", "metadata (repeatable)", tagList, undefined)
    .action(async (entityId: string, opts, c: Command) => {
      const created = await withLimiter(io, opts, (l) =>
        l.createEntity({
          entityId,
          ...(opts.name !== undefined ? { name: opts.name } : {}),
          ...(opts.parent !== undefined ? { parentId: opts.parent } : {}),
          cascade: opts.cascade,
          metadata: opts.meta ?? {},
        }));
      print(
        c,
        created,
        `Created entity ${entityId}${opts.parent ? ` (parent ${opts.parent})` : ""}.`,
      );
    });
  addEntityListCommand(entity, ctx);
  ent("get <entityId>", "Show an entity and the shard count of its stored limits", [
    "zae-limiter entity get key-1",
    "zae-limiter entity get key-1 --resource gpt-4",
  ])
    .option("--resource <resource>", "the shard count of this resource's limits")
    .action(async (entityId: string, opts, c: Command) => {
      const where = { entityId, ...(opts.resource ? { resource: opts.resource } : {}) };
      const [found, shards] = await withLimiter(
        io,
        opts,
        (l) => Promise.all([l.getEntity(entityId), l.getShards(where)]),
      );
      if (!found) throw noSuchEntity(entityId);
      print(
        c,
        { ...found, shards: shards.shards },
        `${formatEntity(found)}\nshards:    ${shards.shards}${
          opts.resource ? ` (${escapeControls(opts.resource)})` : ""
        }`,
      );
    });
  ent("children <parentId>", "List an entity's children", ["zae-limiter entity children proj-1"])
    .action(async (parentId: string, opts, c: Command) => {
      const children = await withLimiter(io, opts, (l) => l.listChildren(parentId));
      print(
        c,
        children,
        children.length
          ? children.map((e) =>
            `${e.entityId}${e.name ? `  ${escapeControls(e.name)}` : ""}${
              e.cascade ? "  cascade" : ""
            }`
          )
            .join("\n")
          : `${parentId} has no children.`,
      );
    });
  ent("delete <entityId>", "Delete an entity with its limits, buckets and usage", [
    "zae-limiter entity delete key-1",
    "zae-limiter entity delete key-1 --yes",
  ])
    .option("-y, --yes", "do not ask for confirmation", false)
    .action(async (entityId: string, opts, c: Command) => {
      if (!opts.yes) {
        const ok = await io.confirm(
          `Delete entity ${entityId} with its stored limits, buckets and usage?`,
        );
        if (ok === undefined) {
          throw new UsageError("Refusing to delete without confirmation: add --yes");
        }
        if (!ok) {
          print(c, { entityId, deleted: false }, "Not deleted.");
          return;
        }
      }
      await withLimiter(io, opts, async (l) => {
        // deleteEntity succeeds on an id that was never created: say so instead of "Deleted".
        if (!(await l.getEntity(entityId))) throw noSuchEntity(entityId);
        await l.deleteEntity(entityId);
      });
      print(c, { entityId, deleted: true }, `Deleted entity ${entityId}.`);
    });
}

/** The error for an entity that does not exist; `field` names the option that gave its id. */
export function noSuchEntity(entityId: string, field = "entityId"): CliError {
  return new CliError("EntityNotFoundError", `no such entity ${JSON.stringify(entityId)}`, field);
}

/** An entity as text; the name and metadata are stored text, so their control characters are escaped. */
function formatEntity(e: Entity): string {
  return [
    `entityId:  ${escapeControls(e.entityId)}`,
    ...(e.name !== undefined ? [`name:      ${escapeControls(e.name)}`] : []),
    ...(e.parentId !== undefined ? [`parent:    ${escapeControls(e.parentId)}`] : []),
    `cascade:   ${e.cascade}`,
    `createdAt: ${e.createdAt}`,
    ...Object.entries(e.metadata).map(([k, v]) =>
      `meta.${escapeControls(k)}: ${escapeControls(String(v))}`
    ),
  ].join("\n");
}
