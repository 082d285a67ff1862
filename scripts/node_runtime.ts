/**
 * A Node.js binary of a pinned release, from the npm registry only: the `node-<os>-<arch>`
 * package (the one the npm package `node` installs) holds the official build in `bin/node`.
 * It is installed once into `$XDG_CACHE_HOME/zae-limiter/node-<version>` (by default
 * `~/.cache/...`); later calls and later runs reuse it. The npm smoke test runs the package on
 * it; CI warms the cache before the tests:
 *
 * ```sh
 * deno run -A scripts/node_runtime.ts        # prints the path of the Node 22 binary
 * ```
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** The Node 22 release the npm package is tested on besides the machine's own Node. */
export const NODE_22_VERSION = "22.23.5";

/**
 * The path of the `node` binary of a release, installing it from the npm registry into the
 * cache when missing. Throws when the platform has no such npm package or npm fails.
 *
 * @example
 * ```ts ignore
 * const node = nodeBinary(NODE_22_VERSION); // ~/.cache/zae-limiter/node-22.23.5/.../bin/node
 * ```
 */
export function nodeBinary(version: string = NODE_22_VERSION, log = true): string {
  const os = { linux: "linux", darwin: "darwin" }[process.platform as string];
  const arch = { x64: "x64", arm64: "arm64" }[process.arch as string];
  if (!os || !arch) {
    throw new Error(`no npm package of Node for ${process.platform}-${process.arch}`);
  }
  const name = `node-${os}-${arch}`;
  const cache = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"),
    "zae-limiter",
    `node-${version}`,
  );
  const bin = join(cache, "node_modules", name, "bin", "node");
  if (existsSync(bin)) return bin;
  if (log) console.error(`installing ${name}@${version} from npm into ${cache}`);
  mkdirSync(cache, { recursive: true });
  execFileSync("npm", [
    "install",
    "--no-save",
    "--no-package-lock",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    "--prefix",
    cache,
    `${name}@${version}`,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  if (!existsSync(bin)) throw new Error(`${name}@${version} installed no ${bin}`);
  return bin;
}

if (import.meta.main) console.log(nodeBinary(Deno.args[0] ?? NODE_22_VERSION));
