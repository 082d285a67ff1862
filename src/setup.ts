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

/** Makes a client; with an endpoint and no credentials in the environment, dummy ones (DynamoDB Local takes any). */
export function makeClient(options: { region?: string; endpoint?: string }): DynamoDBClient {
  const env = (name: string) => process.env[name];
  const local = options.endpoint !== undefined;
  const region = options.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ??
    (local ? "us-east-1" : undefined);
  const haveCreds = env("AWS_ACCESS_KEY_ID") !== undefined || env("AWS_PROFILE") !== undefined;
  return new DynamoDBClient({
    region,
    endpoint: options.endpoint,
    maxAttempts: 1, // the limiter retries inside its own deadline
    ...(local && !haveCreds
      ? { credentials: { accessKeyId: "local", secretAccessKey: "local" } }
      : {}),
  });
}

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
 * Loads `ensureStack` on first use of `createStack`. In a bundle the file is not there: that is
 * reported as a bad `createStack` (thrown in both failure modes, never a pass), with what to do.
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
      `needs the infra module, which did not load here (${why}); a bundle leaves it out: ` +
        'call ensureStack from "@zae/limiter/infra" before the limiter, or deploy the stack ' +
        "with `zae-limiter deploy`",
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
