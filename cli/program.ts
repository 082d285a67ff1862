/**
 * The `zae-limiter` command line: commands, their options and help, exit codes.
 *
 * Exit codes: 0 success, 1 failure, 2 bad usage. Errors are one line (`--debug` adds the stack).
 *
 * @module
 */

import { Command, CommanderError } from "commander";
import { addAuditCommands } from "./audit_cmd.ts";
import {
  type CommandContext,
  type Connection,
  dynamoCommands,
  dynamoEndpoint,
  globals,
  passNamespace,
} from "./context.ts";
import { addDashboardCommand } from "./dashboard_cmd.ts";
import { addDefaultsCommands } from "./defaults_cmd.ts";
import { addBucketCommands, entityCommand } from "./bucket_cmd.ts";
import { addControlCommands } from "./controls_cmd.ts";
import { addEntityCommands } from "./entity_cmd.ts";
import { addInfraCommands } from "./infra_cmd.ts";
import { type Io, VERSION } from "./io.ts";
import { addLimitsCommands } from "./limits_cmd.ts";
import { addLimitsFileCommands } from "./limits_file_cmd.ts";
import { addLocalCommands, ExitStatus } from "./local.ts";
import { addNamespaceCommands } from "./namespace_cmd.ts";
import { addOpsCommands } from "./ops_cmd.ts";
import {
  checkLocalEndpoint,
  errorJson,
  errorLine,
  escapeLines,
  explain,
  type FailureContext,
} from "./report.ts";
import { addUpgradeCommand } from "./upgrade_cmd.ts";
import { addUsageCommands } from "./usage_cmd.ts";

/** Runs the CLI with `argv` (without the program name); resolves to the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  // `deno task cli -- …` passes the `--` on.
  if (argv[0] === "--") argv = argv.slice(1);
  // Known before commander parses, so that its own usage errors can be JSON too.
  const json = argv.includes("--json");
  const failure: { context?: FailureContext } = {};
  const program = buildProgram(io, { json, failure });
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof ExitStatus) return err.exitCode; // its output is already written
    if (err instanceof CommanderError) {
      if (
        err.code === "commander.helpDisplayed" || err.code === "commander.help" ||
        err.code === "commander.version" || err.exitCode === 0
      ) {
        return 0;
      }
      // Without --json, commander has already written its one-line message.
      if (!json) return 2;
    }
    const report = explain(err, failure.context);
    if (json) io.out(errorJson(report));
    else io.err(errorLine(report));
    if (argv.includes("--debug") && err instanceof Error && err.stack) io.err(`${err.stack}\n`);
    return report.exitCode;
  }
}

/** How `run` and the command tree share what a failure needs. */
interface RunState {
  /** `--json` was given: errors go to standard output as JSON. */
  json: boolean;
  /** Set before each action: the command and where it connects. */
  failure: { context?: FailureContext };
}

/**
 * The command tree. The commands live by group: `infra_cmd.ts` (deploy, delete, status, template,
 * Lambda zip), `ops_cmd.ts` (check, list), `entity_cmd.ts`, `namespace_cmd.ts`, `limits_cmd.ts` (stored limits, available), `usage_cmd.ts` (usage,
 * aggregate), `audit_cmd.ts` (the audit trail) and `local.ts` (DynamoDB Local); `context.ts` holds what they share.
 */
export function buildProgram(io: Io, state: RunState = { json: false, failure: {} }): Command {
  // With --json the error is reported as JSON by `run`, not as commander's text.
  const outputError = (text: string, write: (t: string) => void) => {
    if (!state.json) write(text);
  };
  const program = new Command("zae-limiter")
    .description("Distributed rate limiting on DynamoDB: deploy, inspect and manage limits.")
    .option("--json", "machine-readable output (JSON)")
    .option("--debug", "show stack traces on errors")
    .option(
      "--namespace <name>",
      "the namespace to work in (default: $ZAE_LIMITER_NAMESPACE, else the default namespace)",
    )
    .version(VERSION, "-V, --version", "print the version")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err, outputError })
    .showSuggestionAfterError(true)
    .addHelpText(
      "after",
      `
Examples:
  $ zae-limiter local up
  $ zae-limiter entity create key-1 --table-name rate_limits --endpoint-url http://localhost:8000
  $ zae-limiter deploy --table-name rate_limits --region eu-west-1
  $ zae-limiter limits set key-1 --resource gpt-4 --limit tpm:10000/min:15000 --limit rpm:100/min
`,
    );
  const command = (parent: Command, name: string, description: string, examples: string[]) => {
    const c = parent.command(name).description(description).exitOverride()
      .configureOutput({ writeOut: io.out, writeErr: io.err, outputError });
    if (examples.length) {
      c.addHelpText("after", `\nExamples:\n${examples.map((e) => `  $ ${e}`).join("\n")}\n`);
    }
    return c;
  };
  // Text output keeps its line breaks and escapes every other control character; values that
  // come from the table are escaped where they are formatted (see `formatEntity`).
  const print = (c: Command, json: unknown, text: string) => {
    if (globals(c).json) io.out(`${JSON.stringify(json, null, 2)}\n`);
    else io.out(escapeLines(text.endsWith("\n") ? text : `${text}\n`));
  };
  program.hook("preAction", async (_root, action: Command) => {
    passNamespace(action, io.env);
    const opts = action.opts() as Connection;
    const names: string[] = [];
    for (let c: Command | null = action; c && c !== program; c = c.parent) names.unshift(c.name());
    const operation = names.join(" ");
    const endpoint = dynamoCommands.has(action)
      ? dynamoEndpoint(opts, io.env)
      : opts.endpointUrl ?? io.env.AWS_ENDPOINT_URL;
    const region = opts.region ?? io.env.AWS_REGION ?? io.env.AWS_DEFAULT_REGION;
    state.failure.context = {
      operation,
      dynamo: dynamoCommands.has(action),
      ...(endpoint ? { endpoint } : {}),
      ...(region ? { region } : {}),
    };
    if (dynamoCommands.has(action) && endpoint) await checkLocalEndpoint(endpoint, operation);
  });

  const ctx: CommandContext = { command, print, io };

  addInfraCommands(program, ctx);
  addOpsCommands(program, ctx);
  command(program, "version", "Print the version", ["zae-limiter version"])
    .action((_opts, c: Command) => print(c, { version: VERSION }, VERSION));

  addEntityCommands(program, ctx);
  addBucketCommands(entityCommand(program), ctx);
  addControlCommands(program, ctx);
  addLimitsCommands(program, ctx);
  addLimitsFileCommands(program, ctx);
  addDefaultsCommands(program, ctx);
  addNamespaceCommands(program, ctx);
  addUsageCommands(program, ctx);
  addAuditCommands(program, ctx);
  addLocalCommands(program, ctx);
  addUpgradeCommand(program, ctx);
  addDashboardCommand(program, ctx);
  return program;
}
