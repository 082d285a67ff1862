/**
 * The `zae-limiter` command line (entry point). Runs on Deno (`deno run -A cli/main.ts`), Node and
 * Bun, and compiles to a single binary (`deno compile`, `bun build --compile`).
 *
 * @module
 */

import process from "node:process";
import { processIo } from "./io.ts";
import { run } from "./program.ts";

process.exitCode = await run(process.argv.slice(2), processIo());
