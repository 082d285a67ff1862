/**
 * Test helper: a real moto server (`moto_server`, pip `moto[server]`) on a free port, for the
 * CloudFormation, Lambda, DynamoDB, SQS and IAM APIs. Stop it in `finally`.
 *
 * @module
 */

/** A running moto server. */
export interface Moto {
  /** `http://127.0.0.1:PORT`. */
  endpoint: string;
  /** AWS options pointing every client at it (dummy credentials, us-east-1). */
  aws: {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** Stops the server. */
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts moto_server and waits until it answers (30 s at most). */
export async function startMoto(): Promise<Moto> {
  const port = freePort();
  const child = new Deno.Command("moto_server", {
    args: ["-H", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
  };
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(`${endpoint}/moto-api/`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not yet */ }
    if (Date.now() > until) {
      await stop();
      throw new Error(`moto_server did not answer on ${endpoint} within 30 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    endpoint,
    aws: {
      endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
    },
    stop,
  };
}
