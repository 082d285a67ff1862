/**
 * The infrastructure commands: `deploy`, `delete` and `status` of the CloudFormation stack, and
 * `cfn-template` and `lambda-export`, which write what a deploy uses.
 *
 * @module
 */

import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import { aggregatorCodeSha256, buildAggregatorZip } from "../src/aggregator/bundle.ts";
import {
  type AwsOptions,
  defaultStackName,
  deleteStack,
  deploymentStatus,
  deployStack,
  type StackEvent,
  TEMPLATE_YAML,
} from "../src/infra/mod.ts";
import {
  type CommandContext,
  type Connection,
  globals,
  requireTable,
  tableOption,
} from "./context.ts";
import { UsageError } from "./limits.ts";
import { int, tagList, windows } from "./parsers.ts";
import { escapeControls } from "./report.ts";

/** Adds `deploy`, `delete`, `status`, `cfn-template` and `lambda-export` to the program. */
export function addInfraCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
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
    .option("--audit-retention-days <days>", "days audit events are kept", int, 90)
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
        auditRetentionDays: opts.auditRetentionDays,
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
}
