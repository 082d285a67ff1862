/**
 * `zae-limiter entity list`: every entity of the table, from the entity index.
 *
 * @module
 */

import type { Command } from "commander";
import type { Entity } from "../mod.ts";
import { type CommandContext, connectionOptions, withLimiter } from "./context.ts";
import { escapeControls } from "./report.ts";

/** Adds `list` to the `entity` command group. */
export function addEntityListCommand(entity: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  connectionOptions(command(entity, "list", "List entities (all pages)", [
    "zae-limiter entity list",
    "zae-limiter entity list --with-custom-limits --json",
  ]))
    .option("--with-custom-limits", "only entities with stored limits", false)
    .action(async (opts, c: Command) => {
      const entities = await withLimiter(io, opts, async (l) => {
        const all: Entity[] = [];
        let cursor: string | undefined;
        do {
          const page = await l.listEntities({
            withCustomLimits: opts.withCustomLimits,
            limit: 1000,
            ...(cursor ? { cursor } : {}),
          });
          all.push(...page.entities);
          cursor = page.cursor;
        } while (cursor);
        return all;
      });
      print(
        c,
        entities,
        entities.length
          ? entities.map((e) =>
            [
              e.entityId,
              ...(e.name ? [escapeControls(e.name)] : []),
              ...(e.parentId ? [`parent ${e.parentId}`] : []),
              ...(e.cascade ? ["cascade"] : []),
            ].join("  ")
          ).join("\n")
          : opts.withCustomLimits
          ? "No entity has stored limits."
          : "No entities.",
      );
    });
}
