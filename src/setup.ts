/**
 * Table set-up: the DynamoDB client a limiter makes for itself, and the table or stack that
 * `createTable` / `createStack` create on first use.
 *
 * @module
 */

import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import process from "node:process";
import type { Backend } from "./backend.ts";
import { ValidationError } from "./error_base.ts";
import type { Whereabouts } from "./failure.ts";
import type { CreateStackSettings } from "./options.ts";
import { useLeanTransport } from "./transport/lean.ts";

/**
 * Makes a client; with an endpoint and no credentials in the environment, dummy ones (DynamoDB
 * Local takes any). Its hot-path calls go through the lean transport (`src/transport/lean.ts`);
 * the other calls go through the SDK, without the middleware that only adds headers (user agent,
 * recursion detection). See "Client CPU" in docs/design.md.
 */
export function makeClient(options: { region?: string; endpoint?: string }): DynamoDBClient {
  const env = (name: string) => process.env[name];
  const local = options.endpoint !== undefined;
  const region = options.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ??
    (local ? "us-east-1" : undefined);
  const haveCreds = env("AWS_ACCESS_KEY_ID") !== undefined || env("AWS_PROFILE") !== undefined;
  const client = new DynamoDBClient({
    region,
    endpoint: options.endpoint,
    maxAttempts: 1, // the limiter retries inside its own deadline
    ...(local && !haveCreds
      ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  });
  for (const name of LEAN_SKIPPED_MIDDLEWARE) client.middlewareStack.remove(name);
  if (!fetchRefuses(options.endpoint)) useLeanTransport(client);
  return client;
}

/** Middleware of the SDK that only adds headers DynamoDB does not need. */
const LEAN_SKIPPED_MIDDLEWARE = ["getUserAgentMiddleware", "recursionDetectionMiddleware"];

/**
 * Whether `fetch` refuses the endpoint's port (the Fetch standard's "bad ports", e.g. 9, which
 * tests use for "nothing listens"): such a client keeps the SDK's transport, which tries it.
 */
function fetchRefuses(endpoint: string | undefined): boolean {
  if (endpoint === undefined) return false;
  try {
    const port = new URL(endpoint).port;
    return port !== "" && BAD_PORTS.has(Number(port));
  } catch {
    return false; // the SDK reports a bad endpoint
  }
}

const BAD_PORTS = new Set([
  1,
  7,
  9,
  11,
  13,
  15,
  17,
  19,
  20,
  21,
  22,
  23,
  25,
  37,
  42,
  43,
  53,
  69,
  77,
  79,
  87,
  95,
  101,
  102,
  103,
  104,
  109,
  110,
  111,
  113,
  115,
  117,
  119,
  123,
  135,
  137,
  139,
  143,
  161,
  179,
  389,
  427,
  465,
  512,
  513,
  514,
  515,
  526,
  530,
  531,
  532,
  540,
  548,
  554,
  556,
  563,
  587,
  601,
  636,
  989,
  990,
  993,
  995,
  1719,
  1720,
  1723,
  2049,
  3659,
  4045,
  4190,
  5060,
  5061,
  6000,
  6566,
  6665,
  6666,
  6667,
  6668,
  6669,
  6679,
  6697,
  10080,
]);

/** Options of {@link TableSetup}. */
export interface TableSetupOptions {
  backend: Backend;
  tableName: string;
  createTable: boolean;
  createStack?: CreateStackSettings & { region?: string; endpoint?: string };
}

/** Creates the stack or the table when asked to, once; the first calls wait for it. */
export class TableSetup {
  readonly #options: TableSetupOptions;
  #ready?: Promise<void>;

  constructor(options: TableSetupOptions) {
    this.#options = options;
  }

  /** Waits for the set-up (started by the first call); a failed set-up is tried again next time. */
  async ready(): Promise<void> {
    if (!this.#options.createTable && !this.#options.createStack) return;
    this.#ready ??= this.#prepare().catch((err) => {
      this.#ready = undefined;
      throw err;
    });
    // Creating a table or a stack takes longer than a request's deadline: first calls wait.
    await this.#ready;
  }

  async #prepare(): Promise<void> {
    const { createStack, createTable, backend, tableName } = this.#options;
    if (createStack) {
      const { ensureStack } = await loadInfraStack(createStack);
      const { stackName, aggregator, snapshotRetentionDays, region, endpoint } = createStack;
      await ensureStack({
        tableName,
        stackName,
        region,
        endpoint,
        ...(aggregator === undefined ? {} : { aggregator }),
        ...(snapshotRetentionDays === undefined ? {} : { snapshotRetentionDays }),
      });
    }
    if (createTable) await backend.buckets.createTable();
  }
}

/**
 * The infra module, kept out of bundles: a literal `import("./infra/stack.ts")` is followed and
 * inlined by esbuild (and other bundlers), which would add the CloudFormation and Lambda clients,
 * `yaml`, the template and the aggregator's code (about 390 KB minified) to every function that
 * imports the limiter. A specifier held in a variable is left to the runtime: Deno and Bun load
 * the `.ts` file beside this one, Node the `.js` file of the npm build (the TypeScript compiler's
 * `rewriteRelativeImportExtensions` turns `.ts` into `.js` at run time for such imports).
 */
const INFRA_STACK_MODULE = "./infra/stack.ts";

type InfraStack = typeof import("./infra/stack.ts");

/**
 * Loads `ensureStack` on first use of `createStack`. In a bundle the file is not there, and with
 * the npm package the CloudFormation and Lambda clients are optional peers that may be missing:
 * either is reported as a bad `createStack` (thrown in both failure modes, never a pass), with
 * what to do.
 */
export async function loadInfraStack(
  createStack: unknown,
  specifier: string = INFRA_STACK_MODULE,
): Promise<InfraStack> {
  try {
    return await import(specifier);
  } catch (err) {
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    const error = new ValidationError(
      "createStack",
      createStack,
      `needs the infra module, which did not load here (${why}); a bundle leaves it out, and ` +
        "the npm package installs the packages it needs only on request (optional peers: " +
        "`npm install @zae/limiter-cli` brings them all): call ensureStack from " +
        '"@zae/limiter/infra" before the limiter, or deploy the stack with `zae-limiter deploy`',
    );
    error.cause = err;
    throw error;
  }
}

/**
 * Where a limiter points, for error messages: the table, and the region and endpoint as far as
 * they are known (a client of the caller's own is asked, in the background).
 */
export function whereabouts(
  tableName: string,
  client: { config?: { region?: unknown; endpoint?: unknown } },
  region: string | undefined,
  endpoint: string | undefined,
): Whereabouts {
  const env = (name: string) => process.env[name] || undefined;
  const where: Whereabouts = {
    tableName,
    region: region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION"),
    endpoint: endpoint ?? env("AWS_ENDPOINT_URL_DYNAMODB") ?? env("AWS_ENDPOINT_URL"),
  };
  const ask = async () => {
    const r = client.config?.region;
    const value = typeof r === "function" ? await r() : r;
    if (typeof value === "string" && value) where.region = value;
    const e = client.config?.endpoint;
    const url = typeof e === "function" ? await e() : e;
    if (url && typeof url === "object" && "hostname" in url) {
      const u = url as { protocol?: string; hostname?: string; port?: number; path?: string };
      where.endpoint = `${u.protocol ?? "https:"}//${u.hostname}${u.port ? `:${u.port}` : ""}`;
    }
  };
  ask().catch(() => {}); // a missing region shows as such when a call needs it
  return where;
}
