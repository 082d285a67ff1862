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

const main = new URL("../cli/main.ts", import.meta.url).pathname;

/**
 * Runs the CLI as its own process (or `command` with `args`); `options.clearEnv` passes `env`
 * alone, without this process's variables.
 */
export async function runCli(
  args: string[],
  env: Record<string, string>,
  command: string[] = [Deno.execPath(), "run", "-A", "--no-check", main],
  options: { cwd?: string; clearEnv?: boolean } = {},
): Promise<{ code: number; out: string; err: string }> {
  const [exe, ...pre] = command;
  const r = await new Deno.Command(exe, {
    args: [...pre, ...args],
    env,
    ...options,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}
