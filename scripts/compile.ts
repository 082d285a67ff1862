/**
 * Builds the single binary `dist/zae-limiter` with `deno compile` (`deno task compile`).
 *
 * `deno compile` needs Deno's runtime (`denort`) for the target: it downloads it, or takes the
 * file named by `DENORT_BIN` (used when the download cannot be reached). Extra arguments are passed
 * on, e.g. `deno task compile --target x86_64-unknown-linux-gnu`.
 *
 * The same entry point also compiles with Bun: `bun build --compile cli/main.ts --outfile
 * dist/zae-limiter-bun` (CI checks that one).
 *
 * @module
 */

const root = new URL("../", import.meta.url).pathname;
const output = "dist/zae-limiter";
const denort = Deno.env.get("DENORT_BIN");
if (denort !== undefined) {
  try {
    const info = await Deno.stat(denort);
    if (!info.isFile) throw new Error("not a file");
  } catch (err) {
    console.error(
      `error: DENORT_BIN=${denort} is not a readable file (${(err as Error).message})`,
    );
    Deno.exit(2);
  }
}
const args = [
  "compile",
  "--no-check",
  "--allow-all",
  "--output",
  output,
  ...Deno.args,
  "cli/main.ts",
];
console.error(`deno ${args.join(" ")}${denort ? `  (DENORT_BIN=${denort})` : ""}`);
const { code } = await new Deno.Command(Deno.execPath(), {
  args,
  cwd: root,
  env: denort ? { DENORT_BIN: denort } : {},
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (code !== 0) {
  console.error(
    "error: deno compile failed. Without network access to Deno's runtime download, point " +
      "DENORT_BIN at a denort binary of this Deno version (" + Deno.version.deno + ").",
  );
  Deno.exit(code);
}
console.error(`built ${output}`);
