/**
 * Parsers of option values: each turns the text of one option into its value, or says why it
 * cannot (commander reports that as a usage error, exit code 2).
 *
 * @module
 */

import { InvalidArgumentError } from "commander";
import type { Limit } from "../mod.ts";
import type { UsageWindowName } from "../src/infra/mod.ts";
import { parseLimitSpec } from "./limits.ts";

/** A whole number, e.g. `--lambda-memory 256`. */
export function int(value: string): number {
  if (!/^\d+$/.test(value)) {
    throw new InvalidArgumentError(`${JSON.stringify(value)} is not a whole number.`);
  }
  return Number(value);
}

/** Snapshot windows: `hourly`, `daily` or `hourly,daily`. */
export function windows(value: string): UsageWindowName[] {
  const list = value.split(",").map((w) => w.trim());
  if (list.length === 0 || list.some((w) => w !== "hourly" && w !== "daily")) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} must be hourly, daily or hourly,daily.`,
    );
  }
  return list as UsageWindowName[];
}

/** A repeatable `key=value` option, gathered into a record. */
export function tagList(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`${JSON.stringify(value)} must be key=value.`);
  return { ...(previous ?? {}), [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** A repeatable `--limit` spec, gathered into a list; a name given twice is refused. */
export function limitList(value: string, previous: Limit[] | undefined): Limit[] {
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
