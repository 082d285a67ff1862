/**
 * Builds the npm package into `npm/`: ES modules with `.d.ts` declarations, compiled by the
 * TypeScript compiler from the same sources JSR publishes (`.ts` import specifiers are
 * rewritten to `.js`), and a `package.json` mirroring deno.json: the version, an `exports`
 * entry per deno.json export, the pinned dependencies of package.json, and the `zae-limiter`
 * bin when `cli/main.ts` exists.
 *
 * ```sh
 * deno task build:npm   # deno run -A scripts/build_npm.ts
 * cd npm && npm pack
 * ```
 *
 * Node's type declarations (`@types/node`, needed for `node:*` imports) are taken from
 * `node_modules/@types/node` when present, otherwise installed once with npm into a cache folder.
 *
 * @module
 */

import ts from "typescript";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** The `@types/node` release compiled against (Node 20 is the oldest engine supported). */
export const TYPES_NODE_VERSION = "20.19.9";

/** Options of {@link buildNpm}. */
export interface BuildNpmOptions {
  /** The repository root. @default the parent of this script's folder */
  root?: string;
  /** Where to write the package. @default `<root>/npm` */
  outDir?: string;
  /** Print progress. @default true */
  log?: boolean;
}

/** What {@link buildNpm} wrote. */
export interface BuildNpmResult {
  /** The package folder. */
  outDir: string;
  /** The package.json written. */
  packageJson: Record<string, unknown>;
  /** Number of JavaScript files emitted. */
  files: number;
}

interface DenoJson {
  name: string;
  version: string;
  license?: string;
  exports: string | Record<string, string>;
}

/**
 * Compiles the sources and writes the package. Throws when the compiler reports an error or when
 * the emitted code imports a package that is not a dependency.
 *
 * @example
 * ```ts ignore
 * const { outDir, files } = await buildNpm();
 * ```
 */
export function buildNpm(options: BuildNpmOptions = {}): BuildNpmResult {
  const root = resolve(options.root ?? join(dirname(fileURLToPath(import.meta.url)), ".."));
  const outDir = resolve(options.outDir ?? join(root, "npm"));
  const log = options.log ?? true;
  const say = (msg: string) => log && console.error(msg);

  const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as DenoJson;
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    dependencies?: Record<string, string>;
    description?: string;
  };
  const exportsMap = typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports;
  const entries = Object.entries(exportsMap).map(([subpath, file]) => ({
    subpath,
    file: resolve(root, file),
  }));
  const cli = join(root, "cli", "main.ts");
  const hasCli = existsSync(cli);
  const rootNames = [...entries.map((e) => e.file), ...(hasCli ? [cli] : [])];

  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  const typeRoots = [typesNodeRoot(root, say)];
  const compilerOptions: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.esnext.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts", "lib.dom.asynciterable.d.ts"],
    types: ["node"],
    typeRoots,
    rewriteRelativeImportExtensions: true,
    declaration: true,
    strict: true,
    skipLibCheck: true,
    useDefineForClassFields: true,
    rootDir: root,
    outDir,
    newLine: ts.NewLineKind.LineFeed,
    removeComments: false,
  };
  say(`compiling ${rootNames.length} entry points with TypeScript ${ts.version}`);
  const program = ts.createProgram({ rootNames, options: compilerOptions });
  const emitted: string[] = [];
  const result = program.emit(undefined, (fileName, text) => {
    mkdirSync(dirname(fileName), { recursive: true });
    writeFileSync(fileName, text);
    if (fileName.endsWith(".js")) emitted.push(fileName);
  });
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics]
    .filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (diagnostics.length > 0) {
    const host: ts.FormatDiagnosticsHost = {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => root,
      getNewLine: () => "\n",
    };
    throw new Error(
      `TypeScript reported ${diagnostics.length} error(s):\n` +
        ts.formatDiagnostics(diagnostics.slice(0, 20), host),
    );
  }

  const dependencies = pkg.dependencies ?? {};
  checkBareImports(emitted, dependencies, outDir);

  const outPath = (file: string, ext: ".js" | ".d.ts") =>
    "./" + relative(root, file).replaceAll("\\", "/").replace(/\.ts$/, ext);
  const exportsField: Record<string, { types: string; default: string } | string> = {};
  for (const { subpath, file } of entries) {
    exportsField[subpath] = { types: outPath(file, ".d.ts"), default: outPath(file, ".js") };
  }
  exportsField["./package.json"] = "./package.json";
  if (hasCli) {
    const main = join(outDir, "cli", "main.js");
    const text = readFileSync(main, "utf8");
    if (!text.startsWith("#!")) writeFileSync(main, `#!/usr/bin/env node\n${text}`);
    chmodSync(main, 0o755);
  }
  const packageJson: Record<string, unknown> = {
    name: deno.name,
    version: deno.version,
    description: pkg.description ??
      "A distributed rate limiter on Amazon DynamoDB: exact token buckets (GCRA), leases, " +
        "hierarchical limits, HTTP middleware and a CLI.",
    license: deno.license ?? "MIT",
    type: "module",
    main: outPath(resolve(root, exportsMap["."]), ".js"),
    types: outPath(resolve(root, exportsMap["."]), ".d.ts"),
    exports: exportsField,
    ...(hasCli ? { bin: { "zae-limiter": "./cli/main.js" } } : {}),
    engines: { node: ">=20" },
    sideEffects: false,
    dependencies,
    keywords: ["rate-limit", "rate-limiter", "dynamodb", "token-bucket", "gcra", "llm"],
  };
  writeFileSync(join(outDir, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
  for (const doc of ["README.md", "LICENSE"]) {
    if (existsSync(join(root, doc))) copyFileSync(join(root, doc), join(outDir, doc));
  }
  say(`wrote ${emitted.length} modules and package.json to ${outDir}`);
  return { outDir, packageJson, files: emitted.length };
}

/** A folder holding `node/` (the `@types/node` package), installing it once if needed. */
function typesNodeRoot(root: string, say: (msg: string) => void): string {
  const local = join(root, "node_modules", "@types");
  if (existsSync(join(local, "node", "package.json"))) return local;
  const cache = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"),
    "zae-limiter",
    `types-node-${TYPES_NODE_VERSION}`,
  );
  const types = join(cache, "node_modules", "@types");
  if (!existsSync(join(types, "node", "package.json"))) {
    say(`installing @types/node@${TYPES_NODE_VERSION} into ${cache}`);
    mkdirSync(cache, { recursive: true });
    execFileSync("npm", [
      "install",
      "--no-save",
      "--no-package-lock",
      "--no-audit",
      "--no-fund",
      "--prefix",
      cache,
      `@types/node@${TYPES_NODE_VERSION}`,
    ], { stdio: ["ignore", "ignore", "inherit"] });
  }
  return types;
}

/** Fails when emitted code imports a package that the npm package does not depend on. */
function checkBareImports(files: string[], dependencies: Record<string, string>, outDir: string) {
  const missing = new Map<string, string>();
  const spec =
    /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(spec)) {
      const s = m[1] ?? m[2];
      if (s.startsWith(".") || s.startsWith("node:")) continue;
      const name = s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0];
      if (!(name in dependencies)) missing.set(name, relative(outDir, file));
    }
  }
  if (missing.size > 0) {
    throw new Error(
      "The package imports modules missing from package.json dependencies: " +
        [...missing].map(([name, file]) => `${name} (in ${file})`).join(", "),
    );
  }
}

/** Total size in bytes of a folder, for the build summary. */
function folderSize(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? folderSize(path) : statSync(path).size;
  }
  return total;
}

if (import.meta.main) {
  const started = performance.now();
  const { outDir, files } = buildNpm();
  console.error(
    `npm package: ${files} modules, ${(folderSize(outDir) / 1024).toFixed(0)} KiB, ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}
