/**
 * `zae-limiter limits plan|apply|export`: limits as code (a YAML file of system defaults,
 * resource defaults and entities; see docs/usage.md, "Limits as code").
 *
 * @module
 */

import { readFile, writeFile } from "node:fs/promises";
import type { Command } from "commander";
import type { RateLimiter } from "../mod.ts";
import {
  applyJson,
  exportLimits,
  formatApply,
  formatPlan,
  limiterStore,
  type LimitsFile,
  LimitsFileError,
  type LimitsStore,
  parseLimitsFile,
  planJson,
  planLimits,
  runPlan,
} from "../src/limits_file/mod.ts";
import { type CommandContext, connectionOptions, globals, withLimiter } from "./context.ts";
import { UsageError } from "./limits.ts";
import { ExitStatus } from "./local.ts";
import { CliError } from "./report.ts";

/** Adds `limits plan`, `limits apply` and `limits export` to the `limits` group. */
export function addLimitsFileCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const limits = program.commands.find((c) => c.name() === "limits") ??
    command(program, "limits", "Manage stored limits", []);
  const store = (l: RateLimiter): LimitsStore => limiterStore(l);

  /** Reads and checks the file before any connection: a bad file writes nothing. */
  const load = async (path: string, c: Command): Promise<LimitsFile> => {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      throw new CliError(
        "FileNotFound",
        `Cannot read ${path}: ${(err as Error).message}`,
        "--file",
        2,
      );
    }
    try {
      return parseLimitsFile(text, path);
    } catch (err) {
      if (!(err instanceof LimitsFileError)) throw err;
      // One line per problem, each with file:line and the field.
      if (globals(c).json) {
        const { name: type, message, field, problems } = err;
        io.out(`${JSON.stringify({ error: { type, message, field, problems } }, null, 2)}\n`);
      } else {
        for (const line of err.message.split("\n")) io.err(`error: ${line}\n`);
      }
      throw new ExitStatus(2, err.message);
    }
  };

  connectionOptions(command(limits, "plan", "Show what applying a limits file would change", [
    "zae-limiter limits plan -f limits.yaml",
    "zae-limiter limits plan -f limits.yaml --prune --json",
  ]))
    .requiredOption("-f, --file <path>", "the limits file (YAML)")
    .option("--prune", "also remove what the file does not name", false)
    .action(async (opts, c: Command) => {
      const file = await load(opts.file, c);
      const plan = await withLimiter(
        io,
        opts,
        (l) => planLimits(file, store(l), { prune: opts.prune }),
      );
      print(c, planJson(plan), formatPlan(plan));
    });

  connectionOptions(command(limits, "apply", "Make the table match a limits file", [
    "zae-limiter limits apply -f limits.yaml",
    "zae-limiter limits apply -f limits.yaml --prune --yes",
  ]))
    .requiredOption("-f, --file <path>", "the limits file (YAML)")
    .option("--prune", "also remove what the file does not name", false)
    .option("-y, --yes", "do not ask for confirmation", false)
    .action(async (opts, c: Command) => {
      const file = await load(opts.file, c);
      const result = await withLimiter(io, opts, async (l) => {
        const s = store(l);
        const plan = await planLimits(file, s, { prune: opts.prune });
        if (plan.steps.length > 0 && !opts.yes) {
          io.err(formatPlan(plan));
          const ok = await io.confirm(`Apply these ${plan.steps.length} steps?`);
          if (ok === undefined) {
            throw new UsageError("Refusing to apply without confirmation: add --yes");
          }
          if (!ok) return undefined;
        }
        return await runPlan(plan, s);
      });
      if (!result) {
        print(c, { applied: false }, "Not applied.");
        return;
      }
      print(c, applyJson(result), formatApply(result));
      if (result.failed > 0) {
        throw new ExitStatus(1, `${result.failed} steps of limits apply did not succeed`);
      }
    });

  connectionOptions(command(limits, "export", "Write the table's limits as a limits file", [
    "zae-limiter limits export -o limits.yaml",
    "zae-limiter limits export > limits.yaml",
  ]))
    .option("-o, --output <path>", "write to this file (default: standard output)")
    .action(async (opts, c: Command) => {
      const text = await withLimiter(io, opts, (l) => exportLimits(store(l)));
      if (opts.output) {
        await writeFile(opts.output, text);
        print(c, { output: opts.output }, `Wrote ${opts.output}.`);
      } else if (globals(c).json) {
        print(c, { yaml: text }, text);
      } else {
        io.out(text);
      }
    });
}
