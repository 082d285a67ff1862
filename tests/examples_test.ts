/**
 * Runs each Deno example in its short `--smoke` mode against DynamoDB Local: the examples
 * check their own results (node:assert) and exit non-zero on a failure. The Node example runs
 * on the installed npm package in `npm_smoke_test.ts`.
 */
import assert from "node:assert/strict";
import { startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function runExample(file: string, env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `examples/${file}`, "--smoke"],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout);
  assert.equal(out.code, 0, `${file} exited ${out.code}:\n${stdout}\n${dec.decode(out.stderr)}`);
  return stdout;
}

Deno.test({
  name: "examples run against DynamoDB Local",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const ddb = await startTestDynamo();
    try {
      await t.step("LLM gateway on Hono", async () => {
        const out = await runExample("llm_gateway_hono.ts", {
          ZAE_LIMITER_ENDPOINT: ddb.endpoint,
          ZAE_LIMITER_TABLE: uniqueTableName("ex_gateway"),
        });
        assert.match(out, /^alice: 200, 42 tokens used of 501 charged/m);
        assert.match(out, /RateLimit: "rpm";r=19;t=\d+, "tpm";r=1498;t=\d+, "proj-acme\/rpm";r=29/);
        assert.match(out, /^bob \(stream\): 200, 42 events, last data: \[DONE\]$/m);
        assert.match(out, /^carol: 200 then 429, Retry-After \d+ s, limit tpm$/m);
        assert.match(out, /^smoke run passed$/m);
      });

      await t.step("Deno Deploy fetch handler", async () => {
        const out = await runExample("deno_deploy.ts", {
          ZAE_LIMITER_ENDPOINT: ddb.endpoint,
          ZAE_LIMITER_TABLE: uniqueTableName("ex_deploy"),
        });
        assert.match(out, /^200 "rps";r=9;t=1, "rph";r=299;t=12$/m);
        assert.match(out, /^12 quick requests: (200 ){10}/m);
        assert.match(out, /^refused with Retry-After 1 s$/m);
        assert.match(out, /^smoke run passed$/m);
      });

      await t.step("OpenTelemetry to the console", async () => {
        const out = await runExample("otel_console.ts", {
          ZAE_LIMITER_ENDPOINT: ddb.endpoint,
          ZAE_LIMITER_TABLE: uniqueTableName("ex_otel"),
        });
        assert.match(out, /^request 2: admitted$/m);
        assert.match(out, /^request 3: refused$/m);
        assert.match(out, /name: ["']zae_limiter\.acquire["']/);
        assert.match(out, /name: ["']UpdateItem ex_otel/);
        assert.match(out, /["']zae_limiter\.outcome["']: ["']refused["']/);
        assert.match(out, /name: ["']zae_limiter\.acquires["']/);
        assert.match(out, /name: ["']db\.client\.operation\.duration["']/);
        assert.doesNotMatch(out, /customer-1/); // the entity id is in no span or metric
      });
    } finally {
      await ddb.stop();
    }
  },
});

Deno.test({
  name: "the LLM plan example on the DynamoDB Local it starts itself",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // No endpoint: the example starts (and stops) its own DynamoDB Local, as `deno run` does.
    const out = await runExample("llm_plan.ts", { ZAE_LIMITER_TABLE: uniqueTableName("ex_plan") });
    // A stream cut off mid-answer by the pool, a refusal until midnight in New York, and the
    // new month's window (February: 28 days) in the headers.
    assert.match(
      out,
      /^2026-01-31 23:50:00 {2}gpt-4o 200 prompt 20000 \+ 20000 streamed, cut off by all-models:tokens \(back in 600 s\); left: gpt-4o 10000, all-models 0 \[warning: tpm at 200 %\]$/m,
    );
    assert.match(out, /^2026-01-31 23:55:00 {2}claude 429 all-models:tokens, Retry-After 300 s$/m);
    assert.match(
      out,
      /^2026-02-01 00:00:00 {2}gpt-4o 200 prompt 1000 \+ 1000 streamed; left: gpt-4o 98000, all-models 148000$/m,
    );
    assert.match(
      out,
      /^RateLimit: "tokens";r=98000;t=2419200, "rpm";r=59;t=1, "all-models:tokens";r=148000;t=2419200$/m,
    );
    assert.match(out, /^X-RateLimit-Soft: "tpm";q=20000;r=18000;t=6;u=10$/m);
    assert.match(out, /^smoke run passed$/m);
  },
});
