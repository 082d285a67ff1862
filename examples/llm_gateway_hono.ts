/**
 * An LLM gateway on Hono: every API key has its own requests-per-minute (`rpm`) and
 * tokens-per-minute (`tpm`) limits, and each request also counts against the key's project
 * (a cascade to the parent entity, with the project's limits stored in DynamoDB). A request is
 * charged an estimate up front (prompt + `max_tokens`); once the answer is known — at the end of
 * the stream for `"stream": true` — the lease is adjusted to the real usage. Responses carry the
 * IETF `RateLimit` headers and the OpenAI-style `x-ratelimit-*` headers.
 *
 * ```sh
 * deno run -A examples/llm_gateway_hono.ts           # serves on :8787, DynamoDB Local started here
 * ZAE_LIMITER_ENDPOINT=http://localhost:8000 deno run -A examples/llm_gateway_hono.ts
 * deno run -A examples/llm_gateway_hono.ts --smoke   # a short scripted run, then exit (CI)
 * curl -N localhost:8787/v1/chat/completions -H 'authorization: Bearer sk-alice' \
 *   -d '{"model":"gpt-4o","max_tokens":200,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
 * ```
 *
 * In an application, import from the package: `@zae/limiter` and `@zae/limiter/http/hono`.
 *
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import { Hono } from "hono";
import { EntityExistsError, Limit, RateLimiter } from "../mod.ts";
import { rateLimit, type RateLimitEnv } from "../src/http/hono.ts";
import { startDynamoDBLocal } from "../src/local/mod.ts";

/** Limits of each API key (the fallback when a key has no stored limits). */
export const KEY_LIMITS: Limit[] = [Limit.perMinute("rpm", 20), Limit.perMinute("tpm", 2_000)];
/** Limits of a project, shared by its keys; stored in DynamoDB by {@link setUpTenants}. */
export const PROJECT_LIMITS: Limit[] = [
  Limit.perMinute("rpm", 30),
  Limit.perMinute("tpm", 3_000),
];
/** API keys and their projects (a real gateway keeps these in its database). */
export const API_KEYS: Record<string, string> = {
  "sk-alice": "proj-acme",
  "sk-bob": "proj-acme",
  "sk-carol": "proj-globex",
};

/** Creates the projects (with stored limits) and the keys (children that cascade). */
export async function setUpTenants(limiter: RateLimiter): Promise<void> {
  const create = (p: Parameters<RateLimiter["createEntity"]>[0]) =>
    limiter.createEntity(p).catch((err) => {
      if (!(err instanceof EntityExistsError)) throw err;
    });
  for (const project of new Set(Object.values(API_KEYS))) {
    await create({ entityId: project });
    await limiter.setLimits({ entityId: project, limits: PROJECT_LIMITS });
  }
  for (const [key, project] of Object.entries(API_KEYS)) {
    await create({ entityId: key, parentId: project, cascade: true });
  }
}

interface ChatRequest {
  model?: string;
  max_tokens?: number;
  stream?: boolean;
  messages?: { role: string; content: string }[];
}

/** A rough prompt size: one token per 4 characters. */
function promptTokens(body: ChatRequest): number {
  const chars = (body.messages ?? []).reduce((n, m) => n + String(m.content).length, 0);
  return Math.ceil(chars / 4) + 1;
}

/** A stand-in for the model: answers with `min(max_tokens, 40)` tokens ("tok0 tok1 ..."). */
function fakeModel(body: ChatRequest): string[] {
  const n = Math.min(body.max_tokens ?? 256, 40);
  return Array.from({ length: n }, (_, i) => `tok${i}`);
}

/** The gateway app. */
export function createGateway(limiter: RateLimiter): Hono<RateLimitEnv> {
  const app = new Hono<RateLimitEnv>();
  app.use("/v1/*", async (c, next) => {
    const key = c.req.header("authorization")?.replace(/^Bearer /, "");
    if (!key || !(key in API_KEYS)) return c.json({ error: "invalid_api_key" }, 401);
    await next();
  });
  app.use(
    "/v1/*",
    rateLimit({
      limiter,
      key: async (c) => {
        const body = await c.req.json<ChatRequest>();
        return {
          entityId: c.req.header("authorization")!.replace(/^Bearer /, ""),
          resource: body.model ?? "default",
          limits: KEY_LIMITS,
          useStoredLimits: true, // the project's stored limits apply to the project
          cascade: true,
          consume: { rpm: 1, tpm: promptTokens(body) + (body.max_tokens ?? 256) },
        };
      },
      headers: { openai: true },
    }),
  );
  app.post("/v1/chat/completions", async (c) => {
    const body = await c.req.json<ChatRequest>();
    const lease = c.get("lease");
    const estimate = lease.consumed.tpm;
    const prompt = promptTokens(body);
    const words = fakeModel(body);
    const usage = { prompt_tokens: prompt, completion_tokens: words.length };
    const total = prompt + words.length;
    if (!body.stream) {
      await lease.adjust({ tpm: total - estimate }); // give back what the estimate overcharged
      return c.json({
        object: "chat.completion",
        choices: [{ message: { role: "assistant", content: words.join(" ") } }],
        usage: { ...usage, total_tokens: total },
      });
    }
    // Streaming: the usage is known only at the end; the middleware commits after the body ends.
    const enc = new TextEncoder();
    let i = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i < words.length) {
          const chunk = { choices: [{ delta: { content: words[i++] + " " } }] };
          controller.enqueue(enc.encode(`data: ${JSON.stringify(chunk)}\n\n`));
          return;
        }
        await lease.adjust({ tpm: total - estimate });
        controller.enqueue(
          enc.encode(`data: ${JSON.stringify({ usage: { ...usage, total_tokens: total } })}\n\n`),
        );
        controller.enqueue(enc.encode("data: [DONE]\n\n"));
        controller.close();
      },
    });
    return c.body(stream, 200, { "content-type": "text/event-stream" });
  });
  return app;
}

/** Where to run: an existing DynamoDB (env `ZAE_LIMITER_ENDPOINT`) or DynamoDB Local here. */
export interface MainOptions {
  /** DynamoDB endpoint. @default env `ZAE_LIMITER_ENDPOINT`, else DynamoDB Local started here */
  endpoint?: string;
  /** Table. @default env `ZAE_LIMITER_TABLE`, else `"rate_limits"` */
  tableName?: string;
  /** Port. @default env `PORT`, else 8787 (0 in smoke mode) */
  port?: number;
  /** Run the scripted requests and stop, instead of serving until killed. @default false */
  smoke?: boolean;
}

/** Serves the gateway; in smoke mode sends a few requests, checks them and returns. */
export async function main(options: MainOptions = {}): Promise<void> {
  const smoke = options.smoke ?? false;
  const ddb = (options.endpoint ?? process.env.ZAE_LIMITER_ENDPOINT)
    ? undefined
    : await startDynamoDBLocal();
  const endpoint = options.endpoint ?? process.env.ZAE_LIMITER_ENDPOINT ?? ddb!.endpoint;
  const tableName = options.tableName ?? process.env.ZAE_LIMITER_TABLE ?? "rate_limits";
  const limiter = new RateLimiter({ tableName, endpoint, createTable: true });
  try {
    await limiter.createTable();
    await setUpTenants(limiter);
    const port = options.port ?? (smoke ? 0 : Number(process.env.PORT ?? 8787));
    const server = Deno.serve(
      { hostname: "127.0.0.1", port, onListen: () => {} },
      createGateway(limiter).fetch,
    );
    const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
    console.log(`LLM gateway on ${url} (DynamoDB ${endpoint}, table ${tableName})`);
    if (!smoke) {
      await server.finished;
      return;
    }
    try {
      await smokeRun(url, limiter);
    } finally {
      await server.shutdown();
    }
  } finally {
    await limiter.close();
    await ddb?.stop();
  }
}

async function smokeRun(url: string, limiter: RateLimiter): Promise<void> {
  const chat = (key: string, body: ChatRequest) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o",
        messages: [{ role: "user", content: "hi" }],
        ...body,
      }),
    });
  const tpmLeft = async (entityId: string, limits: Limit[]) =>
    (await limiter.available({ entityId, resource: "gpt-4o", limits })).tpm;

  const plain = await chat("sk-alice", { max_tokens: 500 });
  const answer = await plain.json();
  console.log(
    `alice: ${plain.status}, ${answer.usage.total_tokens} tokens used of 501 charged; ` +
      `x-ratelimit-remaining-tokens=${plain.headers.get("x-ratelimit-remaining-tokens")}`,
  );
  console.log(`  RateLimit: ${plain.headers.get("RateLimit")}`);
  assert.equal(plain.status, 200);
  assert.equal(answer.usage.total_tokens, 42);

  const streamed = await chat("sk-bob", { max_tokens: 800, stream: true });
  const events = (await streamed.text()).split("\n\n").filter(Boolean);
  console.log(`bob (stream): ${streamed.status}, ${events.length} events, last ${events.at(-1)}`);
  assert.equal(events.at(-1), "data: [DONE]");
  // The stream has ended, so the lease is reconciled: 42 tokens each for alice and bob.
  const project = await tpmLeft("proj-acme", PROJECT_LIMITS);
  console.log(`proj-acme tpm left after reconciliation: ${project} of 3000`);
  assert.ok(project >= 3000 - 84 && project <= 3000, `project tpm ${project}`);

  const big = await chat("sk-carol", { max_tokens: 1_990 });
  await big.body?.cancel();
  const refused = await chat("sk-carol", { max_tokens: 1_990 });
  const body = await refused.json();
  console.log(
    `carol: ${big.status} then ${refused.status}, Retry-After ${
      refused.headers.get("Retry-After")
    } s, ` +
      `limit ${body.limits.find((l: { exceeded: boolean }) => l.exceeded).limit_name}`,
  );
  assert.equal(refused.status, 429);
  assert.ok(Number(refused.headers.get("Retry-After")) > 0);

  const unknown = await chat("sk-mallory", {});
  await unknown.body?.cancel();
  assert.equal(unknown.status, 401);
  console.log("smoke run passed");
}

if (import.meta.main) {
  await main({ smoke: Deno.args.includes("--smoke") });
}
