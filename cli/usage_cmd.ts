/**
 * `zae-limiter usage list|summary` (the usage snapshots the aggregator writes) and
 * `zae-limiter aggregate` (aggregates a local table's stream, with no Lambda).
 *
 * @module
 */

import { type Command, Option } from "commander";
import { aggregateLocal } from "../src/aggregator/local.ts";
import type { UsageWindowName } from "../src/infra/mod.ts";
import { makeClient } from "../src/limiter.ts";
import { KeySpace } from "../mod.ts";
import { formatUsageChart, getUsageSnapshots, getUsageSummary } from "../src/usage.ts";
import {
  type CommandContext,
  type Connection,
  connectionOptions,
  dynamoEndpoint,
  globals,
  requireTable,
} from "./context.ts";

/** Adds `usage list|summary` and `aggregate` to the program. */
export function addUsageCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
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
        const snaps = await getUsageSnapshots(
          client,
          tableName,
          usageQuery(opts),
          KeySpace.of(opts.namespace),
        );
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
              `${s.windowStart}  ${s.resource}  requests=${s.requests}${
                s.refused ? ` refused=${s.refused}` : ""
              }${s.bypassed ? ` bypassed=${s.bypassed}` : ""}  ${
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
      const s = await getUsageSummary(
        client,
        tableName,
        usageQuery(opts),
        KeySpace.of(opts.namespace),
      );
      const kv = (r: Record<string, number>) =>
        Object.entries(r).map(([k, v]) => `${k}=${v}`).join(" ") || "-";
      print(
        c,
        s,
        [
          `Entity ${s.entityId}${
            s.resource ? ` on ${s.resource}` : ""
          }, ${s.window} windows with usage: ${s.windows}`,
          `Total:   requests=${s.requests} refused=${s.refused} bypassed=${s.bypassed} ${
            kv(s.total)
          }`,
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
}
