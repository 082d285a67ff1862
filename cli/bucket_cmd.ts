/**
 * `zae-limiter entity reset|top-up`: operators' changes to a bucket's state (see docs/cli.md).
 * Registered on the existing `entity` command object.
 *
 * @module
 */

import type { Command } from "commander";
import { type CommandContext, connectionOptions, withLimiter } from "./context.ts";
import { UsageError } from "./limits.ts";

/** Adds `reset` and `top-up` to the `entity` command. */
export function addBucketCommands(entity: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const sub = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(entity, name, description, examples));
  sub("reset <entityId>", "Make a bucket full again (every limit, or the named ones)", [
    "zae-limiter entity reset key-1 --resource gpt-4",
    "zae-limiter entity reset key-1 --resource gpt-4 --limit tpm",
  ])
    .requiredOption("--resource <resource>", "the bucket's resource")
    .option("--limit <name>", "only this limit (repeatable)", collect, undefined)
    .action(async (entityId: string, opts, c: Command) => {
      const r = await withLimiter(io, opts, (l) =>
        l.resetBucket({
          entityId,
          resource: opts.resource,
          ...(opts.limit ? { limits: opts.limit } : {}),
        }));
      print(c, r, `Reset ${entityId} / ${opts.resource}: ${shown(r.before)} -> ${shown(r.after)}.`);
    });
  sub("top-up <entityId>", "Add tokens to one limit of a bucket (up to capacity), once per key", [
    "zae-limiter entity top-up key-1 --resource gpt-4 --limit tpm --amount 5000 --key inc-42",
  ])
    .requiredOption("--resource <resource>", "the bucket's resource")
    .requiredOption("--limit <name>", "the limit")
    .requiredOption("--amount <tokens>", "tokens to add (> 0)", amount)
    .requiredOption("--key <key>", "idempotency key: a repeat with the same key adds nothing")
    .action(async (entityId: string, opts, c: Command) => {
      const r = await withLimiter(io, opts, (l) =>
        l.topUp({
          entityId,
          resource: opts.resource,
          limit: opts.limit,
          amount: opts.amount,
          idempotencyKey: opts.key,
        }));
      print(
        c,
        r,
        r.applied
          ? `Topped up ${entityId} / ${opts.resource}: ${shown(r.before)} -> ${shown(r.after)}.`
          : `Already applied (key ${opts.key}): nothing changed.`,
      );
    });
}

/** The `entity` command of `program` (added by entity_cmd.ts). */
export function entityCommand(program: Command): Command {
  const found = program.commands.find((c) => c.name() === "entity");
  if (!found) throw new Error("the entity command must be added first");
  return found;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function amount(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--amount: ${JSON.stringify(value)} is not a number`);
  }
  return n;
}

function shown(available: Record<string, number>): string {
  return Object.entries(available).map(([k, v]) => `${k}=${v}`).join(" ") || "(no limits)";
}
