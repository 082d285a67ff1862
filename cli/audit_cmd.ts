/**
 * `zae-limiter audit list`: the audit trail (every admin change: when, who, what, before and
 * after), newest first.
 *
 * @module
 */

import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import type { AuditEvent } from "../mod.ts";
import { type CommandContext, connectionOptions, withLimiter } from "./context.ts";
import { int } from "./parsers.ts";

/** Adds `audit list` to the program. */
export function addAuditCommands(program: Command, ctx: CommandContext): void {
  const { command, print, io } = ctx;
  const audit = command(program, "audit", "Read the audit trail of admin changes", []);
  connectionOptions(
    command(audit, "list", "List audit events, newest first", [
      "zae-limiter audit list --table-name rate_limits",
      "zae-limiter audit list --entity key-1 --since 7d",
      "zae-limiter audit list --resource gpt-4 --since 2026-01-01 --limit 500 --json",
    ]),
  )
    .option("--entity <entityId>", "one entity's events")
    .option("--resource <resource>", "events about one resource")
    .option("--since <time>", "events since: ISO 8601, epoch ms, or an age (30m, 24h, 7d)", since)
    .option("--limit <n>", "at most this many events (all pages up to it)", atLeastOne, 100)
    .action(async (opts, c: Command) => {
      const events = await withLimiter(io, opts, async (l) => {
        const out: AuditEvent[] = [];
        let cursor: string | undefined;
        do {
          const page = await l.getAuditEvents({
            ...(opts.entity !== undefined ? { entityId: opts.entity } : {}),
            ...(opts.resource !== undefined ? { resource: opts.resource } : {}),
            ...(opts.since !== undefined ? { since: opts.since } : {}),
            limit: Math.max(1, Math.min(1000, opts.limit - out.length)),
            ...(cursor ? { cursor } : {}),
          });
          out.push(...page.events);
          cursor = page.cursor;
        } while (cursor && out.length < opts.limit);
        return out.slice(0, Math.max(opts.limit, 0));
      });
      print(
        c,
        events,
        events.length === 0 ? "No audit events." : events.map(formatAuditEvent).join("\n"),
      );
    });
}

function atLeastOne(value: string): number {
  const n = int(value);
  if (n < 1) throw new InvalidArgumentError(`${JSON.stringify(value)} must be 1 or more.`);
  return n;
}

const AGE = /^(\d+)([smhd])$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: an age (`7d`) becomes now minus it; digits are epoch ms; else the text as is. */
export function since(value: string): string | number {
  const age = AGE.exec(value);
  if (age) return Date.now() - Number(age[1]) * UNIT_MS[age[2]];
  if (/^\d+$/.test(value)) return Number(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} must be an ISO 8601 time, epoch ms, or an age such as 24h or 7d.`,
    );
  }
  return value;
}

/** One line: time, principal, action, scope, and before → after. */
export function formatAuditEvent(e: AuditEvent): string {
  const scope = e.scope.kind === "entity"
    ? `entity ${e.scope.entityId}`
    : e.scope.kind === "resource"
    ? `resource ${e.scope.resource}`
    : "system";
  const on = e.resource !== undefined && e.scope.kind !== "resource" ? ` (${e.resource})` : "";
  return `${e.at}  ${e.principal}  ${e.action}  ${scope}${on}  ${compact(e.before)} → ${
    compact(e.after)
  }`;
}

/** A value in a few characters: limits as `name:capacity/period`, else short JSON. */
function compact(value: unknown): string {
  if (value === undefined) return "-";
  const limits = (value as { limits?: unknown })?.limits;
  if (Array.isArray(limits)) {
    const shards = (value as { shards?: number }).shards;
    return `[${limits.map(limitText).join(", ")}]${shards ? ` shards=${shards}` : ""}`;
  }
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

function limitText(l: unknown): string {
  const { name, capacity, refillAmount, refillPeriodSeconds } = l as Record<string, unknown>;
  if (typeof name !== "string") return JSON.stringify(l);
  const per = refillPeriodSeconds === 60
    ? "min"
    : refillPeriodSeconds === 3600
    ? "h"
    : refillPeriodSeconds === 1
    ? "s"
    : `${refillPeriodSeconds}s`;
  const burst = capacity !== refillAmount ? ` burst ${capacity}` : "";
  return `${name}:${refillAmount}/${per}${burst}`;
}
