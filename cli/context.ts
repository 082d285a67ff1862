/**
 * What every command group shares: the context `buildProgram` hands them (the command factory,
 * output, I/O), the DynamoDB connection options and how they resolve, and a limiter for one
 * command.
 *
 * @module
 */

import type { Command } from "commander";
import { RateLimiter } from "../mod.ts";
import type { Io } from "./io.ts";
import { UsageError } from "./limits.ts";

/** The options every command has. */
export interface Globals {
  json?: boolean;
  debug?: boolean;
}

/** The options of a command that talks to DynamoDB. */
export interface Connection {
  createTable?: boolean;
  tableName?: string;
  endpointUrl?: string;
  region?: string;
  principal?: string;
  /** The namespace: the global `--namespace`, else `$ZAE_LIMITER_NAMESPACE` (set before the action). */
  namespace?: string;
}

/** Adds a subcommand with its description, help examples and the program's output settings. */
export type CommandFactory = (
  parent: Command,
  name: string,
  description: string,
  examples: string[],
) => Command;

/** What `buildProgram` gives each command group. */
export interface CommandContext {
  /** Adds a subcommand. */
  command: CommandFactory;
  /** Writes a command's result: `json` with `--json`, else `text` (control characters escaped). */
  print: (c: Command, json: unknown, text: string) => void;
  /** Where commands write and how they ask. */
  io: Io;
}

/** The global options as seen from `c`. */
export function globals(c: Command): Globals {
  return c.optsWithGlobals() as Globals;
}

/** Commands that talk to DynamoDB (they take the connection options). */
export const dynamoCommands = new WeakSet<Command>();

/** The `--table-name` option (default `$ZAE_LIMITER_TABLE`). */
export function tableOption(c: Command, _required: boolean): Command {
  return c.option("--table-name <name>", "DynamoDB table (default: $ZAE_LIMITER_TABLE)");
}

/** The DynamoDB connection options; marks `c` as a command that talks to DynamoDB. */
export function connectionOptions(c: Command): Command {
  dynamoCommands.add(c);
  return tableOption(c, true)
    .option(
      "--endpoint-url <url>",
      "DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB, $AWS_ENDPOINT_URL)",
    )
    .option("--region <region>", "AWS region")
    .option("--create-table", "create the table first when it is missing (DynamoDB Local)")
    .option(
      "--principal <name>",
      "who admin changes are recorded as made by (default: the STS caller on AWS, else local)",
    );
}

/**
 * Hands the global `--namespace` (else `$ZAE_LIMITER_NAMESPACE`) to the action's options, so that
 * every command that makes a limiter or reads keys works in it.
 */
export function passNamespace(action: Command, env: Record<string, string | undefined>): void {
  const given = (action.optsWithGlobals() as Connection).namespace ?? env.ZAE_LIMITER_NAMESPACE;
  if (given !== undefined && given !== "") action.setOptionValue("namespace", given);
}

/** The DynamoDB endpoint: `--endpoint-url`, else `$AWS_ENDPOINT_URL_DYNAMODB`, `$AWS_ENDPOINT_URL`. */
export function dynamoEndpoint(
  opts: Connection,
  env: Record<string, string | undefined>,
): string | undefined {
  return opts.endpointUrl ?? env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL;
}

/** The table: `--table-name`, else `$ZAE_LIMITER_TABLE`; a usage error when neither is given. */
export function requireTable(opts: Connection, io: Io): string {
  const tableName = opts.tableName ?? io.env.ZAE_LIMITER_TABLE;
  if (!tableName) throw new UsageError("Missing --table-name (or set ZAE_LIMITER_TABLE)");
  return tableName;
}

/** Runs `fn` with a limiter on the command's table, closed afterwards. */
export async function withLimiter<T>(
  io: Io,
  opts: Connection,
  fn: (l: RateLimiter) => Promise<T>,
): Promise<T> {
  const tableName = requireTable(opts, io);
  const endpoint = dynamoEndpoint(opts, io.env);
  const limiter = new RateLimiter({
    tableName,
    ...(endpoint ? { endpoint } : {}),
    ...(opts.region ? { region: opts.region } : {}),
    ...(opts.principal ? { principal: opts.principal } : {}),
    createTable: opts.createTable === true,
    timeoutMs: 10_000,
    ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
  });
  try {
    return await fn(limiter);
  } finally {
    await limiter.close();
  }
}

/** The group `name` of `program`, made when missing (several modules add to one group). */
export function commandGroup(
  program: Command,
  ctx: CommandContext,
  name: string,
  description: string,
): Command {
  return program.commands.find((c) => c.name() === name) ??
    ctx.command(program, name, description, []);
}
