/**
 * The npm packages as a user gets them: built (`scripts/build_npm.ts`), packed with `npm pack`,
 * the library installed from its tarball into an empty folder (its install size measured against
 * the 25 MB goal), then the README quick start runs under Node 20 (the machine's) and Node 22
 * (from the npm registry, `scripts/node_runtime.ts`) with `node --test`, and under Bun, against
 * DynamoDB Local; the callback form runs where plain JavaScript has no `await using`; a
 * TypeScript consumer compiles against the `.d.ts`; the Node example runs; an entry point whose
 * optional peers are missing names them; then `@zae/limiter-cli` installs beside it and its
 * `zae-limiter` bin starts.
 */
import assert from "node:assert/strict";
import ts from "typescript";
import { buildNpm } from "../scripts/build_npm.ts";
import { NODE_22_VERSION, nodeBinary } from "../scripts/node_runtime.ts";
import { startTestDynamo, uniqueTableName } from "./_dynamo.ts";

/** The goal for the library's install (bytes on disk of node_modules). */
const INSTALL_GOAL_BYTES = 25_000_000;

const ROOT = new URL("..", import.meta.url).pathname;

async function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function must(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const QUICKSTART = `import assert from "node:assert/strict";
import { Limit, RateLimiter, RateLimitExceeded } from "@zae/limiter";

/** The README quick start, with an injected clock so every number is exact. */
export async function quickstart({ endpoint, tableName }) {
  const now = 1_800_000_000_000;
  const limiter = new RateLimiter({ tableName, endpoint, createTable: true, clock: () => now });
  try {
    const limits = [Limit.perMinute("rpm", 100), Limit.perMinute("tpm", 10_000)];
    const request = { entityId: "key-abc", resource: "gpt-4", limits };
    const answer = await limiter.acquire({ ...request, consume: { rpm: 1, tpm: 500 } }, async (lease) => {
      await lease.adjust({ tpm: 742 - 500 }); // the real usage
      return "done";
    });
    assert.equal(answer, "done");
    assert.deepEqual(await limiter.available(request), { rpm: 99, tpm: 9_258 });
    await assert.rejects(
      limiter.acquire({ ...request, consume: { rpm: 1, tpm: 9_500 } }),
      (err) => {
        assert.ok(err instanceof RateLimitExceeded);
        assert.equal(err.primaryViolation.limitName, "tpm");
        assert.equal(err.retryAfterSeconds, 1.452); // 242 tokens at 10 000 a minute
        assert.equal(err.retryAfterHeader, "2");
        return true;
      },
    );
    if (process.env.SMOKE_HTTP === "1") {
      const { rateLimitedResponse } = await import("@zae/limiter/http");
      const err = await limiter.acquire({ ...request, consume: { tpm: 9_500 } }).catch((e) => e);
      const res = rateLimitedResponse(err);
      assert.equal(res.status, 429);
      assert.equal(res.headers.get("Retry-After"), "2");
      assert.equal(res.headers.get("RateLimit"), '"rpm";r=99;t=1, "tpm";r=9258;t=5');
    }
    const { createTestLimiter } = await import("@zae/limiter/testing");
    const memory = createTestLimiter({ clock: () => now });
    await memory.acquire({ ...request, consume: { rpm: 100 } });
    assert.deepEqual(await memory.available(request), { rpm: 0, tpm: 10_000 });
    await memory.close();
  } finally {
    await limiter.close();
  }
}
`;

const NODE_TEST = `import { test } from "node:test";
import { quickstart } from "./quickstart.mjs";

test("README quick start on DynamoDB Local", () =>
  quickstart({ endpoint: process.env.ZAE_LIMITER_ENDPOINT, tableName: process.env.ZAE_LIMITER_TABLE }));
`;

/** The README's form for plain JavaScript on Node 20 and 22: the callback, not `await using`. */
const CALLBACK_JS = `import assert from "node:assert/strict";
import { Limit, RateLimiter } from "@zae/limiter";

const limiter = new RateLimiter({
  tableName: process.env.ZAE_LIMITER_TABLE,
  endpoint: process.env.ZAE_LIMITER_ENDPOINT,
  createTable: true,
});
const request = { entityId: "key-abc", resource: "gpt-4", limits: [Limit.perMinute("rpm", 100)] };
const text = await limiter.acquire({ ...request, consume: { rpm: 1 } }, async (lease) => {
  await lease.adjust({ rpm: 1 }); // committed when the callback returns
  return "answer";
});
assert.equal(text, "answer");
assert.equal((await limiter.available(request)).rpm, 98);
await limiter.close();
console.log("callback form ok", process.version);
`;

const AWAIT_USING_JS = `import { Limit, RateLimiter } from "@zae/limiter";
const limiter = new RateLimiter({ tableName: "t", endpoint: "http://127.0.0.1:9" });
const limits = [Limit.perMinute("rpm", 100)];
await using lease = await limiter.acquire({ entityId: "k", resource: "r", limits, consume: { rpm: 1 } });
`;

const BUN_RUN = `import { quickstart } from "./quickstart.mjs";
await quickstart({ endpoint: process.env.ZAE_LIMITER_ENDPOINT, tableName: process.env.ZAE_LIMITER_TABLE });
console.log("bun quick start ok", Bun.version);
`;

const CONSUMER_TS =
  `import { Limit, RateLimiter, RateLimitExceeded, type Lease } from "@zae/limiter";
export async function use(limiter: RateLimiter): Promise<number> {
  const limits: Limit[] = [Limit.perMinute("rpm", 10)];
  const lease: Lease = await limiter.acquire({ entityId: "k", resource: "r", limits, consume: { rpm: 1 } });
  await lease.commit();
  const err = new RateLimitExceeded(lease.statuses.map((s) => ({ ...s, exceeded: true })));
  const seconds: number = err.retryAfterSeconds;
  // @ts-expect-error the capacity is read-only
  limits[0].capacity = 3;
  return seconds;
}
`;

/** Bytes of the files under a folder, and bytes on disk (the blocks they take). */
async function folderSize(dir: string): Promise<{ bytes: number; disk: number }> {
  let bytes = 0;
  let disk = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) {
      const sub = await folderSize(path);
      bytes += sub.bytes;
      disk += sub.disk;
    }
    const info = await Deno.lstat(path);
    if (!entry.isDirectory) bytes += info.size;
    disk += (info.blocks ?? Math.ceil(info.size / 512)) * 512;
  }
  return { bytes, disk };
}

Deno.test({
  name: `npm packages: pack, install, quick start under Node 20, Node ${NODE_22_VERSION} and Bun`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const work = await Deno.makeTempDir({ prefix: "zae-npm-smoke-" });
    const pkgDir = `${work}/package`;
    const app = `${work}/app`;
    const ddb = await startTestDynamo();
    const env = { ZAE_LIMITER_ENDPOINT: ddb.endpoint, AWS_REGION: "us-east-1" };
    const deno = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
    const rootPkg = JSON.parse(await Deno.readTextFile(`${ROOT}package.json`));
    const cliOutDir = `${work}/package_cli`;
    let tarball = "";
    let cliTarball = "";
    let node22 = "";
    let built!: ReturnType<typeof buildNpm>;
    try {
      await t.step("build and pack", async () => {
        built = buildNpm({ root: ROOT, outDir: pkgDir, cliOutDir, log: false });
        const { packageJson } = built;
        assert.equal(packageJson.name, "@zae/limiter");
        assert.equal(packageJson.version, deno.version);
        assert.deepEqual(
          Object.keys(packageJson.exports as object),
          [...Object.keys(deno.exports), "./cli", "./package.json"],
        );
        assert.deepEqual(packageJson.dependencies, rootPkg.dependencies);
        assert.deepEqual(packageJson.peerDependencies, rootPkg.peerDependencies);
        assert.ok("hono" in rootPkg.peerDependencies, "hono is a peer, not a dependency");
        for (const name of Object.keys(rootPkg.peerDependencies)) {
          assert.equal(rootPkg.dependencies[name], undefined, `${name} is only a peer`);
          assert.deepEqual(rootPkg.peerDependenciesMeta[name], { optional: true }, name);
        }
        assert.deepEqual(packageJson.peerDependenciesMeta, rootPkg.peerDependenciesMeta);
        assert.deepEqual(packageJson.engines, { node: ">=20" });
        assert.equal(packageJson.bin, undefined, "the bin is @zae/limiter-cli's");
        assert.equal(built.guarded["."], undefined);
        for (const sub of ["./cli", "./infra", "./limits-file"]) {
          assert.ok(built.guarded[sub]?.length, `${sub} is guarded`);
        }
        assert.ok(built.guarded["./cli"].includes("commander"));
        assert.ok(built.guarded["./infra"].includes("@aws-sdk/client-cloudformation"));
        const cliPkg = built.cliPackageJson;
        assert.equal(cliPkg.name, "@zae/limiter-cli");
        assert.deepEqual(cliPkg.bin, { "zae-limiter": "./zae-limiter.js" });
        assert.deepEqual(cliPkg.engines, { node: ">=20" });
        const cliDeps = cliPkg.dependencies as Record<string, string>;
        assert.equal(cliDeps["@zae/limiter"], deno.version);
        for (const name of new Set(Object.values(built.guarded).flat())) {
          assert.equal(cliDeps[name], rootPkg.devDependencies[name], `${name} pinned in the CLI`);
        }
        for (const [sub, target] of Object.entries(packageJson.exports as object)) {
          if (sub === "./package.json") continue;
          await Deno.stat(`${pkgDir}/${target.default}`);
          await Deno.stat(`${pkgDir}/${target.types}`);
        }
        const packed = JSON.parse(must(
          await run("npm", ["pack", "--json", "--pack-destination", work], { cwd: pkgDir }),
          "npm pack",
        ));
        tarball = `${work}/${packed[0].filename}`;
        const files: string[] = packed[0].files.map((f: { path: string }) => f.path);
        assert.ok(files.includes("mod.js") && files.includes("mod.d.ts"), files.join(" "));
        assert.ok(!files.some((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), "no .ts sources");
        const cliPacked = JSON.parse(must(
          await run("npm", ["pack", "--json", "--pack-destination", work], { cwd: cliOutDir }),
          "npm pack (cli)",
        ));
        cliTarball = `${work}/${cliPacked[0].filename}`;
        node22 = nodeBinary(NODE_22_VERSION, false);
      });

      await t.step("install the tarball into an empty folder", async () => {
        await Deno.mkdir(app);
        await Deno.writeTextFile(
          `${app}/package.json`,
          JSON.stringify({ name: "smoke-app", private: true, type: "module" }),
        );
        must(
          await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball], {
            cwd: app,
          }),
          "npm install",
        );
        const installed = JSON.parse(
          await Deno.readTextFile(`${app}/node_modules/@zae/limiter/package.json`),
        );
        assert.equal(installed.version, deno.version);
      });

      await t.step("the library's install weighs at most 25 MB", async () => {
        const size = await folderSize(`${app}/node_modules`);
        const lock = JSON.parse(await Deno.readTextFile(`${app}/node_modules/.package-lock.json`));
        const packages = Object.keys(lock.packages);
        const mb = (n: number) => (n / 1e6).toFixed(1);
        console.log(
          `install size of @zae/limiter alone: ${packages.length} packages, ` +
            `${mb(size.disk)} MB on disk (${mb(size.bytes)} MB of files); goal <= ` +
            `${mb(INSTALL_GOAL_BYTES)} MB`,
        );
        assert.ok(size.disk <= INSTALL_GOAL_BYTES, `${size.disk} bytes on disk`);
        for (const peer of Object.keys(rootPkg.peerDependencies)) {
          assert.ok(!packages.includes(`node_modules/${peer}`), `${peer} was installed`);
        }
        assert.ok(packages.includes("node_modules/@aws-sdk/client-dynamodb"));
      });

      await t.step("an entry point without its optional peers names them", async () => {
        const r = await run("node", [
          "-e",
          'await import("@zae/limiter/infra")',
          "--input-type=module",
        ], {
          cwd: app,
        });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /ERR_ZAE_LIMITER_MISSING_PEER/);
        for (const peer of built.guarded["./infra"]) assert.ok(r.stderr.includes(peer), peer);
        assert.match(r.stderr, /npm install .*yaml@"\^2\./);
        assert.match(r.stderr, /@zae\/limiter-cli/);
      });

      const hasHttp = "./http" in deno.exports ? "1" : "0";
      await Deno.writeTextFile(`${app}/quickstart.mjs`, QUICKSTART);
      await Deno.writeTextFile(`${app}/quickstart.test.mjs`, NODE_TEST);
      await Deno.writeTextFile(`${app}/bun_quickstart.mjs`, BUN_RUN);

      await Deno.writeTextFile(`${app}/callback.mjs`, CALLBACK_JS);
      await Deno.writeTextFile(`${app}/await_using.mjs`, AWAIT_USING_JS);
      const nodes = [{ major: 20, bin: "node" }, { major: 22, bin: node22 }];
      for (const { major, bin } of nodes) {
        await t.step(`quick start under Node ${major} (node --test)`, async () => {
          const version = must(await run(bin, ["--version"], { cwd: app }), "node --version");
          assert.match(version, new RegExp(`^v${major}\\.`));
          const r = await run(bin, ["--test", "quickstart.test.mjs"], {
            cwd: app,
            env: {
              ...env,
              ZAE_LIMITER_TABLE: uniqueTableName(`npm_node${major}`),
              SMOKE_HTTP: hasHttp,
            },
          });
          const out = must(r, "node --test");
          assert.match(out, /# pass 1\n/);
          assert.match(out, /# fail 0\n/);
        });

        await t.step(
          `Node ${major}: no \`await using\` in plain JavaScript; the callback runs`,
          async () => {
            const r = await run(bin, ["--check", "await_using.mjs"], { cwd: app });
            assert.notEqual(r.code, 0, "Node accepts `await using` now: update the README");
            assert.match(r.stderr, /SyntaxError/);
            const ok = await run(bin, ["callback.mjs"], {
              cwd: app,
              env: { ...env, ZAE_LIMITER_TABLE: uniqueTableName(`npm_cb${major}`) },
            });
            assert.match(
              must(ok, "node callback.mjs"),
              new RegExp(`^callback form ok v${major}\\.`),
            );
          },
        );
      }

      await t.step("quick start under Bun", async () => {
        const r = await run("bun", ["bun_quickstart.mjs"], {
          cwd: app,
          env: { ...env, ZAE_LIMITER_TABLE: uniqueTableName("npm_bun"), SMOKE_HTTP: hasHttp },
        });
        assert.match(must(r, "bun"), /^bun quick start ok \d+\.\d+/);
      });

      await t.step("a TypeScript consumer compiles against the .d.ts", async () => {
        await Deno.writeTextFile(`${app}/consumer.ts`, CONSUMER_TS);
        const program = ts.createProgram([`${app}/consumer.ts`], {
          module: ts.ModuleKind.NodeNext,
          moduleResolution: ts.ModuleResolutionKind.NodeNext,
          target: ts.ScriptTarget.ES2022,
          lib: ["lib.esnext.d.ts", "lib.dom.d.ts"],
          types: [],
          strict: true,
          noEmit: true,
          skipLibCheck: true,
        });
        const errors = ts.getPreEmitDiagnostics(program)
          .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
        assert.deepEqual(errors, []);
      });

      await t.step("the Node example runs on the installed package", async () => {
        await Deno.copyFile(`${ROOT}examples/node_script.mjs`, `${app}/node_script.mjs`);
        const r = await run("node", ["node_script.mjs", "--jobs", "8"], {
          cwd: app,
          env: { ...env, ZAE_LIMITER_TABLE: uniqueTableName("npm_example") },
        });
        const summary = JSON.parse(must(r, "node node_script.mjs").trim().split("\n").at(-1)!);
        assert.equal(summary.jobs, 8);
        assert.ok(summary.waits >= 1, "8 jobs at 5 a second must wait at least once");
        assert.equal(summary.tokens, 8 * 136); // 123 prompt tokens + 13 for the summary
      });

      await t.step(
        "@zae/limiter-cli installs beside it; its bin starts on Node 20 and 22",
        async () => {
          must(
            await run(
              "npm",
              ["install", "--no-audit", "--no-fund", "--loglevel=error", cliTarball],
              {
                cwd: app,
              },
            ),
            "npm install (cli)",
          );
          const r = await run(`${app}/node_modules/.bin/zae-limiter`, ["--help"], { cwd: app });
          assert.match(must(r, "zae-limiter --help"), /Usage: zae-limiter/);
          const bin22 = `${app}/node_modules/@zae/limiter-cli/zae-limiter.js`;
          const r22 = await run(node22, [bin22, "--help"], { cwd: app });
          assert.match(must(r22, "zae-limiter --help (Node 22)"), /Usage: zae-limiter/);
        },
      );

      await t.step("with the peers installed, every guarded entry point loads whole", async () => {
        const subs = Object.keys(built.guarded).filter((s) => s !== "./cli");
        const code = `for (const sub of ${JSON.stringify(subs)}) {
          const m = await import("@zae/limiter" + sub.slice(1));
          const names = Object.keys(m);
          if (names.length === 0 || names.some((n) => m[n] === undefined)) throw new Error(sub);
          console.log(sub, names.length);
        }`;
        for (const bin of ["node", node22]) {
          const r = await run(bin, ["--input-type=module", "-e", code], { cwd: app });
          assert.equal(must(r, `${bin} import`).trim().split("\n").length, subs.length);
        }
      });
    } finally {
      await ddb.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
