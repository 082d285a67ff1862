/**
 * The `zae-limiter` command line: commands, their options and help, exit codes.
 *
 * Exit codes: 0 success, 1 failure, 2 bad usage. Errors are one line (`--debug` adds the stack).
 *
 * @module
 */

import { writeFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { type Entity, type Limit, RateLimiter } from "../mod.ts";
import { aggregatorCodeSha256, buildAggregatorZip } from "../src/aggregator/bundle.ts";
import { aggregateLocal } from "../src/aggregator/local.ts";
import {
  type AwsOptions,
  defaultStackName,
  deleteStack,
  deploymentStatus,
  deployStack,
  type StackEvent,
  TEMPLATE_YAML,
  type UsageWindowName,
} from "../src/infra/mod.ts";
import { makeClient } from "../src/limiter.ts";
import { formatUsageChart, getUsageSnapshots, getUsageSummary } from "../src/usage.ts";
import { type Io, VERSION } from "./io.ts";
import { addLocalCommands, ExitStatus } from "./local.ts";
import { formatLimit, parseLimitSpec, UsageError } from "./limits.ts";
import {
  checkLocalEndpoint,
  CliError,
  errorJson,
  errorLine,
  escapeControls,
  escapeLines,
  explain,
  type FailureContext,
} from "./report.ts";

interface Globals {
  json?: boolean;
  debug?: boolean;
}

interface Connection {
  createTable?: boolean;
  tableName?: string;
  endpointUrl?: string;
  region?: string;
}

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

/** Commands that talk to DynamoDB (they take the connection options). */
const dynamoCommands = new WeakSet<Command>();

/** The command tree. */
export function buildProgram(io: Io, state: RunState = { json: false, failure: {} }): Command {
  // With --json the error is reported as JSON by `run`, not as commander's text.
  const outputError = (text: string, write: (t: string) => void) => {
    if (!state.json) write(text);
  };
  const program = new Command("zae-limiter")
    .description("Distributed rate limiting on DynamoDB: deploy, inspect and manage limits.")
    .option("--json", "machine-readable output (JSON)")
    .option("--debug", "show stack traces on errors")
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
  const globals = (c: Command): Globals => c.optsWithGlobals() as Globals;
  // Text output keeps its line breaks and escapes every other control character; values that
  // come from the table are escaped where they are formatted (see `formatEntity`).
  const print = (c: Command, json: unknown, text: string) => {
    if (globals(c).json) io.out(`${JSON.stringify(json, null, 2)}\n`);
    else io.out(escapeLines(text.endsWith("\n") ? text : `${text}\n`));
  };
  program.hook("preAction", async (_root, action: Command) => {
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

  // ---- infrastructure ----

  const aws = (opts: Connection): AwsOptions => {
    const endpoint = opts.endpointUrl ?? io.env.AWS_ENDPOINT_URL;
    return {
      ...(opts.region ? { region: opts.region } : {}),
      ...(endpoint ? { endpoint } : {}),
    };
  };
  const showEvent = (e: StackEvent) => {
    const time = e.timestamp.toISOString().slice(11, 19);
    io.err(
      `  ${time}  ${e.logicalId.padEnd(30)} ${e.resourceType.padEnd(34)} ${e.status}${
        e.reason ? `  ${escapeControls(e.reason)}` : ""
      }\n`,
    );
  };

  const deploy = command(program, "deploy", "Create or update the CloudFormation stack", [
    "zae-limiter deploy --table-name rate_limits --region eu-west-1",
    "zae-limiter deploy --table-name rate_limits --no-aggregator --deletion-protection",
    "zae-limiter deploy --table-name rate_limits --tag team=platform --alarm-sns-topic arn:aws:sns:eu-west-1:123456789012:ops",
  ]);
  tableOption(deploy, true);
  deploy
    .option("--stack-name <name>", "stack name (default: zae-limiter-<table>)")
    .option("--region <region>", "AWS region")
    .option("--endpoint-url <url>", "AWS endpoint URL (e.g. moto or LocalStack)")
    .option("--no-aggregator", "without the usage aggregator Lambda")
    .option("--snapshot-retention-days <days>", "days usage snapshots are kept", int, 90)
    .option("--usage-windows <list>", "snapshot windows: hourly,daily", windows, [
      "hourly",
      "daily",
    ])
    .option("--lambda-memory <mb>", "aggregator memory, MB", int, 256)
    .option("--lambda-timeout <seconds>", "aggregator timeout, seconds", int, 60)
    .option("--log-retention-days <days>", "days the aggregator's logs are kept", int, 30)
    .option("--alarm-sns-topic <arn>", "SNS topic the alarms notify")
    .option("--no-pitr", "without point-in-time recovery")
    .option("--deletion-protection", "turn on the table's deletion protection", false)
    .option("--tag <key=value>", "stack tag (repeatable)", tagList, undefined)
    .option(
      "--no-wait",
      "return once CloudFormation has started (code is uploaded on a deploy that waits)",
    )
    .action(async (opts, c: Command) => {
      const tableName = requireTable(opts, io);
      const stackName = opts.stackName ?? defaultStackName(tableName);
      const json = globals(c).json;
      io.err(`Deploying stack ${stackName} (table ${tableName})...\n`);
      const result = await deployStack({
        ...aws(opts),
        tableName,
        stackName,
        aggregator: opts.aggregator,
        snapshotRetentionDays: opts.snapshotRetentionDays,
        usageWindows: opts.usageWindows,
        lambdaMemoryMb: opts.lambdaMemory,
        lambdaTimeoutSeconds: opts.lambdaTimeout,
        logRetentionDays: opts.logRetentionDays,
        ...(opts.alarmSnsTopic ? { alarmSnsTopicArn: opts.alarmSnsTopic } : {}),
        pointInTimeRecovery: opts.pitr,
        deletionProtection: opts.deletionProtection,
        ...(opts.tag ? { tags: opts.tag } : {}),
        wait: opts.wait,
        pollMs: Number(io.env.ZAE_LIMITER_POLL_MS ?? 2000),
        onEvent: json ? undefined : showEvent,
      });
      const lines = [
        result.action === "none"
          ? `Stack ${stackName} is up to date: nothing to change (${result.status}).`
          : !opts.wait
          ? `Stack ${stackName}: ${result.action} started (${result.status}); run deploy again to upload the aggregator's code.`
          : `Stack ${stackName}: ${result.status} (${
            result.action === "create" ? "created" : "updated"
          }).`,
      ];
      if (result.code) {
        lines.push(
          result.code.updated
            ? `Aggregator code uploaded to ${result.code.functionName} (${result.code.codeSize} bytes, sha256 ${result.code.codeSha256}).`
            : `Aggregator code of ${result.code.functionName} is up to date.`,
        );
      }
      for (const key of ["AcquirePolicyArn", "AdminPolicyArn", "ReadOnlyPolicyArn"]) {
        if (result.outputs[key]) lines.push(`  ${key}: ${result.outputs[key]}`);
      }
      print(c, result, lines.join("\n"));
    });

  const del = command(program, "delete", "Delete the stack, its table and all its data", [
    "zae-limiter delete --table-name rate_limits --region eu-west-1",
    "zae-limiter delete --stack-name my-stack --yes",
  ]);
  tableOption(del, false);
  del
    .option("--stack-name <name>", "stack name (default: zae-limiter-<table>)")
    .option("--region <region>", "AWS region")
    .option("--endpoint-url <url>", "AWS endpoint URL")
    .option("-y, --yes", "do not ask for confirmation", false)
    .action(async (opts, c: Command) => {
      const tableName = opts.tableName ?? io.env.ZAE_LIMITER_TABLE;
      if (!opts.stackName && !tableName) {
        throw new UsageError("Missing --table-name or --stack-name (or ZAE_LIMITER_TABLE)");
      }
      const stackName = opts.stackName ?? defaultStackName(tableName);
      if (!opts.yes) {
        const ok = await io.confirm(
          `Delete stack ${stackName} with its table and all rate-limit data?`,
        );
        if (ok === undefined) {
          throw new UsageError("Refusing to delete without confirmation: add --yes");
        }
        if (!ok) {
          print(c, { stackName, deleted: false }, "Not deleted.");
          return;
        }
      }
      const json = globals(c).json;
      const deleted = await deleteStack({
        ...aws(opts),
        stackName,
        pollMs: Number(io.env.ZAE_LIMITER_POLL_MS ?? 2000),
        onEvent: json ? undefined : showEvent,
      });
      print(
        c,
        { stackName, deleted },
        deleted ? `Deleted stack ${stackName}.` : `No stack ${stackName}: nothing to delete.`,
      );
    });

  const status = command(program, "status", "Show the stack, the table and the aggregator", [
    "zae-limiter status --table-name rate_limits --region eu-west-1",
  ]);
  tableOption(status, true);
  status
    .option("--stack-name <name>", "stack name (default: zae-limiter-<table>)")
    .option("--region <region>", "AWS region")
    .option("--endpoint-url <url>", "AWS endpoint URL")
    .action(async (opts, c: Command) => {
      const tableName = requireTable(opts, io);
      const s = await deploymentStatus({
        ...aws(opts),
        tableName,
        ...(opts.stackName ? { stackName: opts.stackName } : {}),
      });
      const lines: string[] = [];
      lines.push(
        s.stack
          ? `Stack:      ${s.stack.stackName}  ${s.stack.status}${
            s.stack.statusReason ? `  (${escapeControls(s.stack.statusReason)})` : ""
          }`
          : `Stack:      none (${opts.stackName ?? defaultStackName(tableName)})`,
      );
      lines.push(
        s.table
          ? `Table:      ${s.table.name}  ${s.table.status}` +
            (s.table.itemCount !== undefined ? `  ~${s.table.itemCount} items` : "") +
            (s.table.ttl ? `  TTL ${s.table.ttl}` : "") +
            (s.table.pointInTimeRecovery ? `  PITR ${s.table.pointInTimeRecovery}` : "") +
            (s.table.deletionProtection ? "  deletion protection ON" : "")
          : `Table:      none (${tableName})`,
      );
      lines.push(
        s.aggregator
          ? `Aggregator: ${s.aggregator.functionName}  ${s.aggregator.state ?? "?"}` +
            `  last update ${s.aggregator.lastUpdateStatus ?? "?"}` +
            `  code ${
              s.aggregator.codeSha256 === aggregatorCodeSha256()
                ? "current"
                : "differs from this CLI's"
            }` + (s.aggregator.eventSourceState
              ? `  stream trigger ${s.aggregator.eventSourceState}`
              : "")
          : "Aggregator: none",
      );
      for (const w of s.warnings ?? []) {
        lines.push(`warning: ${escapeControls(w)}`);
      }
      print(c, s, lines.join("\n"));
    });

  command(program, "cfn-template", "Print the CloudFormation template (YAML)", [
    "zae-limiter cfn-template > template.yaml",
    "zae-limiter cfn-template -o template.yaml",
  ])
    .option("-o, --output <file>", "write to a file instead of standard output")
    .action((opts, c: Command) => {
      if (opts.output) {
        writeFileSync(opts.output, TEMPLATE_YAML);
        print(c, { file: opts.output, bytes: TEMPLATE_YAML.length }, `Wrote ${opts.output}`);
      } else if (globals(c).json) {
        print(c, { template: TEMPLATE_YAML }, "");
      } else {
        io.out(TEMPLATE_YAML);
      }
    });

  command(program, "lambda-export", "Write the aggregator's Lambda deployment zip", [
    "zae-limiter lambda-export -o aggregator.zip",
  ])
    .option("-o, --output <file>", "zip file to write", "zae-limiter-aggregator.zip")
    .action((opts, c: Command) => {
      const zip = buildAggregatorZip();
      writeFileSync(opts.output, zip);
      print(
        c,
        { file: opts.output, bytes: zip.length, codeSha256: aggregatorCodeSha256() },
        `Wrote ${opts.output} (${zip.length} bytes, sha256 ${aggregatorCodeSha256()}; handler index.handler, runtime nodejs22.x)`,
      );
    });

  command(program, "version", "Print the version", ["zae-limiter version"])
    .action((_opts, c: Command) => print(c, { version: VERSION }, VERSION));

  // ---- entities and limits ----

  const withLimiter = async <T>(opts: Connection, fn: (l: RateLimiter) => Promise<T>) => {
    const tableName = requireTable(opts, io);
    const endpoint = dynamoEndpoint(opts, io.env);
    const limiter = new RateLimiter({
      tableName,
      ...(endpoint ? { endpoint } : {}),
      ...(opts.region ? { region: opts.region } : {}),
      createTable: opts.createTable === true,
      timeoutMs: 10_000,
    });
    try {
      return await fn(limiter);
    } finally {
      await limiter.close();
    }
  };

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
      const created = await withLimiter(opts, (l) =>
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
  ent("get <entityId>", "Show an entity", ["zae-limiter entity get key-1"])
    .action(async (entityId: string, opts, c: Command) => {
      const found = await withLimiter(opts, (l) => l.getEntity(entityId));
      if (!found) throw noSuchEntity(entityId);
      print(c, found, formatEntity(found));
    });
  ent("children <parentId>", "List an entity's children", ["zae-limiter entity children proj-1"])
    .action(async (parentId: string, opts, c: Command) => {
      const children = await withLimiter(opts, (l) => l.listChildren(parentId));
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
      await withLimiter(opts, async (l) => {
        // deleteEntity succeeds on an id that was never created: say so instead of "Deleted".
        if (!(await l.getEntity(entityId))) throw noSuchEntity(entityId);
        await l.deleteEntity(entityId);
      });
      print(c, { entityId, deleted: true }, `Deleted entity ${entityId}.`);
    });

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
      "name:rate[/sec|/min|/hour|/day][:burst] (repeatable)",
      limitList,
    )
    .action(async (entityId: string, opts, c: Command) => {
      const list: Limit[] = opts.limit;
      await withLimiter(
        opts,
        (l) =>
          l.setLimits({
            entityId,
            ...(opts.resource ? { resource: opts.resource } : {}),
            limits: list,
          }),
      );
      print(
        c,
        { entityId, resource: opts.resource ?? "*", limits: list },
        `Stored ${list.map(formatLimit).join(", ")} for ${entityId}${
          opts.resource ? ` on ${opts.resource}` : ""
        }.`,
      );
    });
  lim("get <entityId>", "Show stored limits", ["zae-limiter limits get key-1 --resource gpt-4"])
    .action(async (entityId: string, opts, c: Command) => {
      const list = await withLimiter(
        opts,
        (l) => l.getLimits({ entityId, ...(opts.resource ? { resource: opts.resource } : {}) }),
      );
      print(
        c,
        { entityId, resource: opts.resource ?? "*", limits: list },
        list.length
          ? list.map(formatLimit).join("\n")
          : `No limits stored for ${entityId}${opts.resource ? ` on ${opts.resource}` : ""}.`,
      );
    });
  lim("delete <entityId>", "Delete stored limits", [
    "zae-limiter limits delete key-1 --resource gpt-4",
  ])
    .action(async (entityId: string, opts, c: Command) => {
      await withLimiter(
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
    .option("--limit <spec>", "name:rate[/sec|/min|/hour|/day][:burst] (repeatable)", limitList, [])
    .option("--stored", "use the entity's stored limits (--limit is the fallback)", false)
    .action(async (opts, c: Command) => {
      if (!opts.stored && opts.limit.length === 0) {
        throw new UsageError("Give at least one --limit, or --stored");
      }
      const available = await withLimiter(opts, async (l) => {
        const out = await l.available({
          entityId: opts.entity,
          resource: opts.resource,
          limits: opts.limit,
          useStoredLimits: opts.stored,
        });
        // Only --stored can resolve to no limit at all: a typo, or limits never stored.
        if (Object.keys(out).length === 0) {
          if (!(await l.getEntity(opts.entity))) throw noSuchEntity(opts.entity, "entity");
          throw new CliError(
            "NoLimitsError",
            `No limits stored for entity ${JSON.stringify(opts.entity)} on ${
              JSON.stringify(opts.resource)
            } (nor for every resource, nor through its parent): store some with ` +
              "`zae-limiter limits set`, or give --limit",
            "resource",
          );
        }
        return out;
      });
      print(
        c,
        { entityId: opts.entity, resource: opts.resource, available },
        Object.entries(available).map(([k, v]) => `${k}: ${v}`).join("\n"),
      );
    });

  // ---- usage ----

  const usage = command(program, "usage", "Usage snapshots written by the aggregator", []);
  const usageCmd = (name: string, description: string, examples: string[]) =>
    connectionOptions(command(usage, name, description, examples))
      .requiredOption("--entity <entityId>", "the entity")
      .option("--resource <resource>", "one resource (default: all)")
      .addOption(
        new Option("--window <window>", "snapshot window").choices(["hourly", "daily"]).default(
          "hourly",
        ),
      )
      .option("--start <time>", "from (ISO 8601)")
      .option("--end <time>", "until (ISO 8601)");
  const usageQuery = (opts: Record<string, string | undefined>) => ({
    entityId: opts.entity!,
    window: opts.window as UsageWindowName,
    ...(opts.resource ? { resource: opts.resource } : {}),
    ...(opts.start ? { start: opts.start } : {}),
    ...(opts.end ? { end: opts.end } : {}),
  });
  const ddbClient = (opts: Connection) => {
    const endpoint = dynamoEndpoint(opts, io.env);
    return makeClient({
      ...(endpoint ? { endpoint } : {}),
      ...(opts.region ? { region: opts.region } : {}),
    });
  };
  usageCmd("list", "List snapshots (with --plot, a chart over time)", [
    "zae-limiter usage list --entity key-1 --resource gpt-4 --window hourly",
    "zae-limiter usage list --entity key-1 --plot tpm",
  ])
    .option("--plot [metric]", "chart one metric over time (a limit name, or requests)")
    .action(async (opts, c: Command) => {
      const tableName = requireTable(opts, io);
      const client = ddbClient(opts);
      try {
        const snaps = await getUsageSnapshots(client, tableName, usageQuery(opts));
        if (opts.plot !== undefined && !globals(c).json) {
          const metric = opts.plot === true ? "requests" : opts.plot;
          io.out(
            snaps.length
              ? `${metric} per ${opts.window === "daily" ? "day" : "hour"}\n${
                formatUsageChart(snaps, { metric })
              }\n`
              : "No usage snapshots.\n",
          );
          return;
        }
        print(
          c,
          snaps,
          snaps.length
            ? snaps.map((s) =>
              `${s.windowStart}  ${s.resource}  requests=${s.requests}  ${
                Object.entries(s.consumed).map(([k, v]) => `${k}=${v}`).join(" ")
              }`
            ).join("\n")
            : "No usage snapshots.",
        );
      } finally {
        client.destroy();
      }
    });
  usageCmd("summary", "Totals, averages and the peak window", [
    "zae-limiter usage summary --entity key-1 --window daily",
  ]).action(async (opts, c: Command) => {
    const tableName = requireTable(opts, io);
    const client = ddbClient(opts);
    try {
      const s = await getUsageSummary(client, tableName, usageQuery(opts));
      const kv = (r: Record<string, number>) =>
        Object.entries(r).map(([k, v]) => `${k}=${v}`).join(" ") || "-";
      print(
        c,
        s,
        [
          `Entity ${s.entityId}${
            s.resource ? ` on ${s.resource}` : ""
          }, ${s.window} windows with usage: ${s.windows}`,
          `Total:   requests=${s.requests} ${kv(s.total)}`,
          `Average: requests=${s.averageRequests} ${kv(s.average)}`,
          s.peak
            ? `Peak:    ${s.peak.windowStart} requests=${s.peak.requests} ${kv(s.peak.consumed)}`
            : "Peak:    -",
        ].join("\n"),
      );
    } finally {
      client.destroy();
    }
  });

  connectionOptions(
    command(program, "aggregate", "Aggregate usage from a local table's stream (no Lambda)", [
      "zae-limiter aggregate --endpoint-url http://localhost:8000 --table-name rate_limits",
    ]),
  ).action(async (opts, c: Command) => {
    const tableName = requireTable(opts, io);
    const endpoint = dynamoEndpoint(opts, io.env);
    const result = await aggregateLocal({
      tableName,
      ...(endpoint ? { endpoint } : {}),
      ...(opts.region ? { region: opts.region } : {}),
    });
    print(
      c,
      result,
      `Read ${result.records} stream records from ${result.shards} shards; wrote ${result.snapshotWrites} snapshot updates.`,
    );
  });

  addLocalCommands(program, { command, print, io });
  return program;
}

function tableOption(c: Command, _required: boolean): Command {
  return c.option("--table-name <name>", "DynamoDB table (default: $ZAE_LIMITER_TABLE)");
}

function connectionOptions(c: Command): Command {
  dynamoCommands.add(c);
  return tableOption(c, true)
    .option(
      "--endpoint-url <url>",
      "DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB, $AWS_ENDPOINT_URL)",
    )
    .option("--region <region>", "AWS region")
    .option("--create-table", "create the table first when it is missing (DynamoDB Local)");
}

/** The DynamoDB endpoint: `--endpoint-url`, else `$AWS_ENDPOINT_URL_DYNAMODB`, `$AWS_ENDPOINT_URL`. */
function dynamoEndpoint(
  opts: Connection,
  env: Record<string, string | undefined>,
): string | undefined {
  return opts.endpointUrl ?? env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL;
}

function requireTable(opts: Connection, io: Io): string {
  const tableName = opts.tableName ?? io.env.ZAE_LIMITER_TABLE;
  if (!tableName) throw new UsageError("Missing --table-name (or set ZAE_LIMITER_TABLE)");
  return tableName;
}

function int(value: string): number {
  if (!/^\d+$/.test(value)) {
    throw new InvalidArgumentError(`${JSON.stringify(value)} is not a whole number.`);
  }
  return Number(value);
}

function windows(value: string): UsageWindowName[] {
  const list = value.split(",").map((w) => w.trim());
  if (list.length === 0 || list.some((w) => w !== "hourly" && w !== "daily")) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} must be hourly, daily or hourly,daily.`,
    );
  }
  return list as UsageWindowName[];
}

function tagList(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`${JSON.stringify(value)} must be key=value.`);
  return { ...(previous ?? {}), [value.slice(0, eq)]: value.slice(eq + 1) };
}

function limitList(value: string, previous: Limit[] | undefined): Limit[] {
  let limit: Limit;
  try {
    limit = parseLimitSpec(value);
  } catch (err) {
    throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
  }
  if ((previous ?? []).some((l) => l.name === limit.name)) {
    throw new InvalidArgumentError(`limit ${JSON.stringify(limit.name)} is given twice.`);
  }
  return [...(previous ?? []), limit];
}

function noSuchEntity(entityId: string, field = "entityId"): CliError {
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
