/** Test helpers of the dashboard: the `zae-limiter dashboard` process. */

/** Starts the CLI in the background; resolves once it printed its URL. */
export async function startDashboard(
  command: string[],
  env: Record<string, string>,
): Promise<{ child: Deno.ChildProcess; url: string; output: () => string; stderr: () => string }> {
  const [exe, ...args] = command;
  const child = new Deno.Command(exe, { args, env, stdout: "piped", stderr: "piped" }).spawn();
  let out = "";
  let err = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>, into: (t: string) => void) => {
    for await (const chunk of stream) into(decoder.decode(chunk));
  };
  void pump(child.stdout, (t) => (out += t));
  void pump(child.stderr, (t) => (err += t));
  const until = Date.now() + 60_000;
  while (!/at (http:\S+\/)/.test(out)) {
    if (Date.now() > until) {
      child.kill("SIGKILL");
      throw new Error(`the dashboard did not start:\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    url: /at (http:\S+\/)/.exec(out)![1],
    output: () => out,
    stderr: () => err,
  };
}
