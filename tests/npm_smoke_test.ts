/**
 * The npm package as a user gets it: built (`scripts/build_npm.ts`), packed with `npm pack`,
 * installed from the tarball into an empty folder, then the README quick start runs under Node
 * (`node --test`) and under Bun against DynamoDB Local, a TypeScript consumer compiles against
 * the `.d.ts`, the Node example runs, and the `zae-limiter` bin starts.
 */
import assert from "node:assert/strict";
import ts from "typescript";
import { buildNpm } from "../scripts/build_npm.ts";
import { startTestDynamo, uniqueTableName } from "./_dynamo.ts";

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

Deno.test({
  name: "npm package: pack, install, quick start under Node and Bun",
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
    let tarball = "";
    try {
      await t.step("build and pack", async () => {
        const { packageJson } = buildNpm({ root: ROOT, outDir: pkgDir, log: false });
        assert.equal(packageJson.name, "@zae/limiter");
        assert.equal(packageJson.version, deno.version);
        assert.deepEqual(
          Object.keys(packageJson.exports as object),
          [...Object.keys(deno.exports), "./package.json"],
        );
        assert.deepEqual(packageJson.dependencies, rootPkg.dependencies);
        assert.deepEqual(packageJson.engines, { node: ">=20" });
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

      const hasHttp = "./http" in deno.exports ? "1" : "0";
      await Deno.writeTextFile(`${app}/quickstart.mjs`, QUICKSTART);
      await Deno.writeTextFile(`${app}/quickstart.test.mjs`, NODE_TEST);
      await Deno.writeTextFile(`${app}/bun_quickstart.mjs`, BUN_RUN);

      await t.step("quick start under Node (node --test)", async () => {
        const r = await run("node", ["--test", "quickstart.test.mjs"], {
          cwd: app,
          env: { ...env, ZAE_LIMITER_TABLE: uniqueTableName("npm_node"), SMOKE_HTTP: hasHttp },
        });
        const out = must(r, "node --test");
        assert.match(out, /# pass 1\n/);
        assert.match(out, /# fail 0\n/);
        const version = must(await run("node", ["--version"], { cwd: app }), "node --version");
        assert.match(version, /^v(2\d|[3-9]\d)\./, `Node ${version} is older than 20`);
      });

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

      await t.step("the zae-limiter bin starts", async () => {
        const r = await run(`${app}/node_modules/.bin/zae-limiter`, ["--help"], { cwd: app });
        assert.match(must(r, "zae-limiter --help"), /Usage: zae-limiter/);
      });
    } finally {
      await ddb.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
