/**
 * The operations commands: `check` (is the table reachable, and the one the library expects?) and
 * `list` (the stacks zae-limiter deployed in a region).
 *
 * Exit codes of `check`: 0 healthy (warnings allowed), 1 misconfigured (no such table, another
 * key schema, access denied…), 3 unreachable (DynamoDB did not answer: an outage), 2 bad usage.
 *
 * @module
 */

import type { Command } from "commander";
import type { PingResult } from "../mod.ts";
import { type AwsOptions, type ListedStack, listStacks } from "../src/infra/mod.ts";
import {
  type CommandContext,
  type Connection,
  globals,
  tableOption,
  withLimiter,
} from "./context.ts";
import { ExitStatus } from "./local.ts";
import { errorLine, escapeControls } from "./report.ts";

/** The exit code of `check` when the table is misconfigured. */
export const EXIT_UNHEALTHY = 1;
/** The exit code of `check` when DynamoDB does not answer. */
export const EXIT_UNREACHABLE = 3;

/** Adds `check` and `list` to the program. */
export function addOpsCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;

  const check = command(
    program,
    "check",
    "Check that the table answers, is active and has the expected keys, indexes and stream",
    [
      "zae-limiter check --table-name rate_limits --region eu-west-1",
      "zae-limiter check --table-name rate_limits --endpoint-url http://127.0.0.1:8000 --json",
    ],
  );
  // Not a `connectionOptions` command: its answer for an unreachable endpoint is the check's own
  // result (exit 3), not the generic error of the commands that need DynamoDB.
  tableOption(check, true)
    .option(
      "--endpoint-url <url>",
      "DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB, $AWS_ENDPOINT_URL)",
    )
    .option("--region <region>", "AWS region")
    .action(async (opts: Connection, c: Command) => {
      const result = await withLimiter(io, opts, (limiter) => limiter.ping());
      print(c, result, formatPing(result));
      if (result.ok || !result.problem) return;
      const { kind, message } = result.problem;
      const exitCode = kind === "unavailable" ? EXIT_UNREACHABLE : EXIT_UNHEALTHY;
      // The JSON result already holds the problem; text adds the usual one-line error.
      if (!globals(c).json) io.err(errorLine({ exitCode, type: kind, message }));
      throw new ExitStatus(exitCode, message);
    });

  command(program, "list", "List the stacks zae-limiter deployed in a region", [
    "zae-limiter list --region eu-west-1",
    "zae-limiter list --region eu-west-1 --json",
  ])
    .option("--region <region>", "AWS region")
    .option("--endpoint-url <url>", "AWS endpoint URL (e.g. moto or LocalStack)")
    .action(async (opts: Connection, c: Command) => {
      const endpoint = opts.endpointUrl ?? io.env.AWS_ENDPOINT_URL;
      const aws: AwsOptions = {
        ...(opts.region ? { region: opts.region } : {}),
        ...(endpoint ? { endpoint } : {}),
      };
      const stacks = await listStacks(aws);
      print(c, { stacks }, formatStacks(stacks));
    });
}

/** The check as text: the table, the latency, one line per check, the verdict. */
export function formatPing(r: PingResult): string {
  const where = [r.endpoint, r.region].filter(Boolean).join(", ");
  const lines = [
    `Table:    ${r.tableName}${r.tableStatus ? `  ${r.tableStatus}` : ""}${
      where ? `  (${where})` : ""
    }`,
    `Latency:  ${r.latencyMs} ms`,
  ];
  const width = Math.max(...r.checks.map((k) => k.name.length));
  for (const k of r.checks) {
    lines.push(`  ${k.status.padEnd(7)}  ${k.name.padEnd(width)}  ${escapeControls(k.detail)}`);
  }
  const warned = r.warnings.length
    ? ` (${r.warnings.length} warning${r.warnings.length > 1 ? "s" : ""})`
    : "";
  lines.push(r.ok ? `Healthy${warned}.` : `Unhealthy: ${r.problem?.kind}.`);
  return lines.join("\n");
}

/** The stacks as a table, or one line when there are none. */
export function formatStacks(stacks: ListedStack[]): string {
  if (stacks.length === 0) return "No zae-limiter stacks in this region.";
  const rows = [
    ["STACK", "STATUS", "VERSION", "TABLE"],
    ...stacks.map((s) => [s.stackName, s.status, s.version, s.tableName ?? "-"]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}
