/**
 * Test helper: runs the CLI in-process (`run(argv, io)`) and captures what it writes.
 *
 * @module
 */

import type { Io } from "../cli/io.ts";
import { run } from "../cli/program.ts";

/** Runs the CLI; returns the exit code and its standard output and error. */
export async function cli(
  argv: string[],
  env: Record<string, string | undefined> = {},
  answer?: boolean,
): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const io: Io = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    confirm: () => Promise.resolve(answer),
    env,
  };
  const code = await run(argv, io);
  return { code, out, err };
}
