/**
 * The CLI's input and output, injectable so tests can run commands in-process.
 *
 * @module
 */

import process from "node:process";
import { createInterface } from "node:readline";
import { LIBRARY_VERSION } from "../src/version.ts";

/** Where a command writes and how it asks. */
export interface Io {
  /** Writes to standard output (a line ending is not added). */
  out(text: string): void;
  /** Writes to standard error. */
  err(text: string): void;
  /** Asks a yes/no question; `undefined` when nobody can answer (no terminal). */
  confirm(question: string): Promise<boolean | undefined>;
  /** Environment variables. */
  env: Record<string, string | undefined>;
}

/** The process's own streams and environment. */
export function processIo(): Io {
  // A reader that goes away (`zae-limiter ... | head`) is not an error: stop quietly.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    confirm: (question) => {
      if (!process.stdin.isTTY) return Promise.resolve(undefined);
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      return new Promise((resolve) => {
        rl.question(`${question} [y/N] `, (answer) => {
          rl.close();
          resolve(/^y(es)?$/i.test(answer.trim()));
        });
      });
    },
    env: process.env,
  };
}

/** The version `--version` prints (src/version.ts, kept in step with deno.json by a test). */
export const VERSION: string = LIBRARY_VERSION;
