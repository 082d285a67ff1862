/**
 * AWS client settings shared by the infrastructure functions.
 *
 * @module
 */

import process from "node:process";

/**
 * Where and as whom to call AWS.
 *
 * @example
 * ```ts
 * import { type AwsOptions, clientConfig } from "./aws.ts";
 * // moto's server, with dummy credentials filled in when the environment has none:
 * const options: AwsOptions = { endpoint: "http://127.0.0.1:5000" };
 * console.assert(clientConfig(options).region !== undefined);
 * ```
 */
export interface AwsOptions {
  /** AWS region. @default `AWS_REGION`, `AWS_DEFAULT_REGION`, or `"us-east-1"` with an endpoint */
  region?: string;
  /**
   * One endpoint URL for every service (moto's server, LocalStack). Without it, each SDK client
   * also honours `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL` by itself.
   */
  endpoint?: string;
  /** Credentials; with an endpoint and none in the environment, dummy ones. @default the SDK chain */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/**
 * The configuration object every SDK v3 client takes, for `options`. With an endpoint (an
 * emulator) and no credentials in the environment, dummy credentials are filled in.
 *
 * @example
 * ```ts
 * import { clientConfig } from "./aws.ts";
 * const config = clientConfig({ region: "eu-west-1", endpoint: "http://localhost:5000" });
 * console.assert(config.region === "eu-west-1" && config.endpoint === "http://localhost:5000");
 * // e.g. new CloudFormationClient(config)
 * ```
 */
export function clientConfig(options: AwsOptions): {
  region?: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
} {
  const env = process.env;
  const local = options.endpoint !== undefined;
  const region = options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ??
    (local ? "us-east-1" : undefined);
  const haveCreds = env.AWS_ACCESS_KEY_ID !== undefined || env.AWS_PROFILE !== undefined;
  const credentials = options.credentials ??
    (local && !haveCreds ? { accessKeyId: "local", secretAccessKey: "local" } : undefined);
  return {
    ...(region !== undefined ? { region } : {}),
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    ...(credentials !== undefined ? { credentials } : {}),
  };
}

/**
 * One line describing an AWS SDK error. Some emulators answer errors in a body the SDK cannot
 * parse; the body's `message` is used then.
 *
 * @example
 * ```ts
 * import { describeAwsError } from "./aws.ts";
 * const err = new Error("Requested resource not found");
 * err.name = "ResourceNotFoundException";
 * console.assert(describeAwsError(err) === "ResourceNotFoundException: Requested resource not found");
 * console.assert(describeAwsError("timeout") === "timeout");
 * ```
 */
export function describeAwsError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const body = (err as { $responseBodyText?: string }).$responseBodyText;
  if (body && /Deserialization error|parse error/i.test(err.message)) {
    try {
      const parsed = JSON.parse(body) as { message?: string; __type?: string };
      const type = parsed.__type?.split("#").pop();
      if (parsed.message) return type ? `${type}: ${parsed.message}` : parsed.message;
    } catch {
      const m = /<Message>([^<]*)<\/Message>/.exec(body);
      if (m) return m[1];
    }
  }
  return err.name && err.name !== "Error" ? `${err.name}: ${err.message}` : err.message;
}
