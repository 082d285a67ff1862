/**
 * Builds the npm packages: the library into `npm/` and the command line into `npm_cli/`.
 *
 * The library (`@zae/limiter`): ES modules with `.d.ts` declarations, compiled by the TypeScript
 * compiler from the same sources JSR publishes (`.ts` import specifiers are rewritten to `.js`),
 * and a `package.json` mirroring deno.json: the version, an `exports` entry per deno.json export
 * (plus `./cli`, which runs the command line), the pinned `dependencies` of package.json and its
 * optional `peerDependencies`. The root entry point may reach only `dependencies`: what only the
 * CLI, deploys, the aggregator or limits files need (the CloudFormation, Lambda and Streams
 * clients, `yaml`, `fflate`, `commander`) is an optional peer, so an app that only limits installs
 * the DynamoDB client alone. An entry point whose modules import an optional peer is reached
 * through a small guard (`entry/*.js`) that names the missing packages and how to install them,
 * instead of Node's bare `ERR_MODULE_NOT_FOUND` for the first one it meets.
 *
 * The command line (`@zae/limiter-cli`): the `zae-limiter` bin, depending on the library of the
 * same version and, pinned, on every optional peer the guarded entry points import.
 *
 * ```sh
 * deno task build:npm   # deno run -A scripts/build_npm.ts
 * cd npm && npm pack && cd ../npm_cli && npm pack
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
  /** Where to write the `@zae/limiter-cli` package. @default `<root>/npm_cli` */
  cliOutDir?: string;
  /** Print progress. @default true */
  log?: boolean;
}

/** What {@link buildNpm} wrote. */
export interface BuildNpmResult {
  /** The package folder. */
  outDir: string;
  /** The package.json written. */
  packageJson: Record<string, unknown>;
  /** The `@zae/limiter-cli` package folder. */
  cliOutDir: string;
  /** The package.json of `@zae/limiter-cli`. */
  cliPackageJson: Record<string, unknown>;
  /** The optional peers each guarded entry point needs, by subpath (`./infra`: [`yaml`, …]). */
  guarded: Record<string, string[]>;
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
  const cliOutDir = resolve(options.cliOutDir ?? join(root, "npm_cli"));
  const log = options.log ?? true;
  const say = (msg: string) => log && console.error(msg);

  const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as DenoJson;
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as RootPackageJson;
  const exportsMap = typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports;
  const entries = Object.entries(exportsMap).map(([subpath, file]) => ({
    subpath,
    file: resolve(root, file),
  }));
  const cli = join(root, "cli", "main.ts");
  const hasCli = existsSync(cli);
  if (hasCli) entries.push({ subpath: "./cli", file: cli });
  const rootNames = entries.map((e) => e.file);

  for (const dir of [outDir, cliOutDir]) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }

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
    removeComments: false, // the declarations' doc comments; the JavaScript's go (below)
  };
  say(`compiling ${rootNames.length} entry points with TypeScript ${ts.version}`);
  // Two emits: the declarations keep the doc comments (editors show them), the JavaScript drops
  // them (nothing reads them there; they were about a third of the package's bytes).
  const program = ts.createProgram({ rootNames, options: compilerOptions });
  const emitted: string[] = [];
  const write = (fileName: string, text: string) => {
    mkdirSync(dirname(fileName), { recursive: true });
    writeFileSync(fileName, text);
    if (fileName.endsWith(".js")) emitted.push(fileName);
  };
  const declared = program.emit(undefined, write, undefined, true);
  const jsProgram = ts.createProgram({
    rootNames,
    options: { ...compilerOptions, declaration: false, removeComments: true },
    oldProgram: program,
  });
  const result = jsProgram.emit(undefined, write);
  const diagnostics = [
    ...ts.getPreEmitDiagnostics(program),
    ...declared.diagnostics,
    ...result.diagnostics,
  ]
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
  const peers = pkg.peerDependencies ?? {};
  const optional = Object.keys(peers).filter((n) => pkg.peerDependenciesMeta?.[n]?.optional);
  if (optional.length !== Object.keys(peers).length) {
    throw new Error("every peerDependency of package.json must be optional (peerDependenciesMeta)");
  }
  checkBareImports(emitted, { ...dependencies, ...peers }, outDir);

  const outPath = (file: string, ext: ".js" | ".d.ts") =>
    "./" + relative(root, file).replaceAll("\\", "/").replace(/\.ts$/, ext);
  const emittedOf = (file: string) => join(outDir, outPath(file, ".js"));
  const exportsField: Record<string, { types: string; default: string } | string> = {};
  const guarded: Record<string, string[]> = {};
  const checker = program.getTypeChecker();
  for (const { subpath, file } of entries) {
    const needs = [...staticPackages(emittedOf(file))].filter((n) => !(n in dependencies)).sort();
    if (subpath === "." && needs.length > 0) {
      throw new Error(`the root entry point must not import optional peers: ${needs.join(", ")}`);
    }
    let target = outPath(file, ".js");
    if (needs.length > 0) {
      guarded[subpath] = needs;
      const names = subpath === "./cli" ? [] : valueExports(checker, program, file);
      target = writeGuard(outDir, subpath, target, names, needs, peers, deno.name);
    }
    exportsField[subpath] = { types: outPath(file, ".d.ts"), default: target };
  }
  exportsField["./package.json"] = "./package.json";
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
    engines: { node: ">=20" },
    sideEffects: false,
    dependencies,
    peerDependencies: peers,
    peerDependenciesMeta: Object.fromEntries(optional.map((n) => [n, { optional: true }])),
    keywords: ["rate-limit", "rate-limiter", "dynamodb", "token-bucket", "gcra", "llm"],
  };
  writeFileSync(join(outDir, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
  for (const doc of ["README.md", "LICENSE"]) {
    if (existsSync(join(root, doc))) copyFileSync(join(root, doc), join(outDir, doc));
  }
  say(`wrote ${emitted.length} modules and package.json to ${outDir}`);
  const cliPackageJson = writeCliPackage(root, cliOutDir, deno, pkg, guarded);
  say(`wrote ${cliPackageJson.name} to ${cliOutDir}`);
  return { outDir, packageJson, files: emitted.length, cliOutDir, cliPackageJson, guarded };
}

interface RootPackageJson {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
  description?: string;
}

/**
 * The bare packages that a module and the modules it imports import statically (loaded when the
 * module is). A bare package loaded by a dynamic `import("…")` is needed only on that path (the
 * tar parser, only when DynamoDB Local is unpacked), so it guards no entry point: the module
 * throws its own error naming the package there.
 */
function staticPackages(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const stack = [entry];
  while (stack.length > 0) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    const { importedFiles } = ts.preProcessFile(text, true, true);
    for (const { fileName: s } of importedFiles) {
      if (s.startsWith(".")) stack.push(resolve(dirname(file), s));
      else if (!s.startsWith("node:") && !text.includes(`import(${JSON.stringify(s)})`)) {
        packages.add(packageName(s));
      }
    }
  }
  return packages;
}

function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/** The names an entry point exports as values (classes, functions, constants), not types. */
function valueExports(checker: ts.TypeChecker, program: ts.Program, file: string): string[] {
  const source = program.getSourceFile(file);
  const symbol = source && checker.getSymbolAtLocation(source);
  if (!symbol) throw new Error(`no module symbol for ${file}`);
  return checker.getExportsOfModule(symbol).filter((s) => {
    if (s.declarations?.some((d) => ts.isTypeOnlyImportOrExportDeclaration(d))) return false;
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    return (target.flags & ts.SymbolFlags.Value) !== 0;
  }).map((s) => s.name).sort();
}

/**
 * Writes `entry/<name>.js`: it checks that the optional peers the entry point imports resolve,
 * throwing an error that names the missing ones and the install command, then loads the entry
 * point and re-exports its values. Returns its package path.
 */
function writeGuard(
  outDir: string,
  subpath: string,
  target: string,
  names: string[],
  needs: string[],
  peers: Record<string, string>,
  packageName: string,
): string {
  const name = subpath.slice(2).replaceAll("/", "-");
  const file = `./entry/${name}.js`;
  mkdirSync(join(outDir, "entry"), { recursive: true });
  const label = `${packageName}/${subpath.slice(2)}`;
  const body = [
    `// Generated by scripts/build_npm.ts: ${label} needs optional peer dependencies.`,
    `const needs = ${JSON.stringify(Object.fromEntries(needs.map((n) => [n, peers[n]])))};`,
    "const missing = Object.keys(needs).filter((name) => {",
    "  try {",
    "    import.meta.resolve(name);",
    "    return false;",
    "  } catch {",
    "    return true;",
    "  }",
    "});",
    "if (missing.length > 0) {",
    '  const install = missing.map((n) => `${n}@${JSON.stringify(needs[n])}`).join(" ");',
    "  const error = new Error(",
    `    ${JSON.stringify(label)} + " needs packages that are not installed: " +`,
    '      missing.join(", ") + ". They are optional peer dependencies of ' + packageName +
    ', left out of a plain install to keep it small: install them (npm install " + install +',
    `      ") or install ${packageName}-cli, which depends on all of them.",`,
    "  );",
    '  error.code = "ERR_ZAE_LIMITER_MISSING_PEER";',
    "  throw error;",
    "}",
    `const m = await import(${JSON.stringify("." + target)});`,
    ...(names.length > 0 ? [`export const { ${names.join(", ")} } = m;`] : []),
    "",
  ].join("\n");
  writeFileSync(join(outDir, file), body);
  return file;
}

/** Writes the `@zae/limiter-cli` package: the `zae-limiter` bin and the packages it needs. */
function writeCliPackage(
  root: string,
  dir: string,
  deno: DenoJson,
  pkg: RootPackageJson,
  guarded: Record<string, string[]>,
): Record<string, unknown> {
  const pinned = { ...pkg.devDependencies, ...pkg.dependencies };
  const needs = [...new Set(Object.values(guarded).flat())].sort();
  const dependencies: Record<string, string> = { [deno.name]: deno.version };
  for (const name of needs) {
    if (!pinned[name]) throw new Error(`${name} has no pinned version in package.json`);
    dependencies[name] = pinned[name];
  }
  const bin = join(dir, "zae-limiter.js");
  writeFileSync(bin, `#!/usr/bin/env node\nimport "${deno.name}/cli";\n`);
  chmodSync(bin, 0o755);
  const packageJson: Record<string, unknown> = {
    name: `${deno.name}-cli`,
    version: deno.version,
    description: `The zae-limiter command line (deploy, limits, entities, local DynamoDB) for ` +
      `${deno.name}, with the packages it needs.`,
    license: deno.license ?? "MIT",
    type: "module",
    bin: { "zae-limiter": "./zae-limiter.js" },
    engines: { node: ">=20" },
    dependencies,
    keywords: ["rate-limit", "dynamodb", "cli"],
  };
  writeFileSync(join(dir, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
  writeFileSync(
    join(dir, "README.md"),
    `# ${deno.name}-cli\n\nThe \`zae-limiter\` command line of [${deno.name}]` +
      `(https://www.npmjs.com/package/${deno.name}): \`npx ${deno.name}-cli --help\`, or ` +
      `\`npm install -g ${deno.name}-cli\`. It depends on the library of the same version and on ` +
      `the packages that only deploys and the command line need (${needs.join(", ")}), which ` +
      `the library leaves out of its own install.\n`,
  );
  if (existsSync(join(root, "LICENSE"))) copyFileSync(join(root, "LICENSE"), join(dir, "LICENSE"));
  return packageJson;
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
function checkBareImports(files: string[], allowed: Record<string, string>, outDir: string) {
  const missing = new Map<string, string>();
  const spec =
    /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(spec)) {
      const s = m[1] ?? m[2];
      if (s.startsWith(".") || s.startsWith("node:")) continue;
      const name = packageName(s);
      if (!(name in allowed)) missing.set(name, relative(outDir, file));
    }
  }
  if (missing.size > 0) {
    throw new Error(
      "The package imports modules missing from package.json dependencies and peers: " +
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
  const { outDir, files, cliOutDir } = buildNpm();
  console.error(
    `npm package: ${files} modules, ${(folderSize(outDir) / 1024).toFixed(0)} KiB, ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s; the CLI package in ${cliOutDir}`,
  );
}
