/**
 * `zae-limiter upgrade`: migrates the table in place to the schema version of this release.
 *
 * @module
 */

import type { Command } from "commander";
import { upgradeTable } from "../mod.ts";
import { type CommandContext, connectionOptions, requireTable, withLimiter } from "./context.ts";

/** Adds `upgrade` to the program. */
export function addUpgradeCommand(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  connectionOptions(
    command(program, "upgrade", "Upgrade the table's schema in place (idempotent)", [
      "zae-limiter upgrade --table-name rate_limits --region eu-west-1",
    ]),
  ).action(async (opts, c: Command) => {
    const tableName = requireTable(opts, io);
    const json = c.optsWithGlobals().json === true;
    const result = await withLimiter(io, opts, (l) =>
      upgradeTable({
        client: l.client,
        tableName,
        ...(json ? {} : { progress: (m: string) => io.err(`${m}...\n`) }),
      }));
    print(
      c,
      { tableName, ...result },
      result.changed
        ? `Upgraded ${tableName} from schema version ${result.fromVersion} to ` +
          `${result.toVersion}: ${result.addedIndex ? "added index GSI3, " : ""}` +
          `indexed ${result.backfilled} entity items.`
        : `${tableName} is already schema version ${result.toVersion}: nothing to do.`,
    );
  });
}
