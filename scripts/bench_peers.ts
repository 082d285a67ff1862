/**
 * The benchmark's other contenders on the same DynamoDB Local: the Python zae-limiter 0.17.0
 * (driven by `scripts/bench_python.py` in a venv the bench creates) and a plain conditional GCRA
 * write with the AWS SDK, the baseline of what one write costs the emulator.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { type DynamoDB, UpdateItemCommand } from "@aws-sdk/client-dynamodb";

/** The Python peer's version, pinned. */
export const PYTHON_PEER_VERSION = "0.17.0";

/** Where the bench keeps its venv (reused when it holds the pinned version). */
export const PYTHON_VENV = join(homedir(), ".cache", "zae-limiter", "bench-venv");

const DRIVER = new URL("./bench_python.py", import.meta.url).pathname;

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, out: text.trim() };
}

/**
 * The venv's Python with `zae-limiter==0.17.0` installed: reused when present, otherwise made
 * with `python3 -m venv` and `pip install` (about 20 s).
 *
 * @example
 * ```ts ignore
 * const python = await ensurePythonPeer({ log: console.error });
 * ```
 */
export async function ensurePythonPeer(
  options: { venv?: string; log?: (line: string) => void } = {},
): Promise<string> {
  const { venv = PYTHON_VENV, log = () => {} } = options;
  const python = join(venv, "bin", "python");
  const probe = ["-c", "import importlib.metadata as m; print(m.version('zae-limiter'))"];
  if (existsSync(python)) {
    const got = await run(python, probe);
    if (got.ok && got.out === PYTHON_PEER_VERSION) return python;
  }
  log(`creating ${venv} with zae-limiter==${PYTHON_PEER_VERSION} ...`);
  const made = await run("python3", ["-m", "venv", venv]);
  if (!made.ok) throw new Error(`python3 -m venv ${venv} failed: ${made.out}`);
  const pip = await run(python, [
    "-m",
    "pip",
    "install",
    "-q",
    "--disable-pip-version-check",
    `zae-limiter==${PYTHON_PEER_VERSION}`,
  ]);
  if (!pip.ok) {
    throw new Error(`pip install zae-limiter==${PYTHON_PEER_VERSION} failed: ${pip.out}`);
  }
  const got = await run(python, probe);
  if (got.out !== PYTHON_PEER_VERSION) {
    throw new Error(`the venv holds zae-limiter ${got.out}, not ${PYTHON_PEER_VERSION}`);
  }
  return python;
}

/** What the Python driver reports for one round. */
export interface PythonRound {
  /** Requests admitted. */
  requests: number;
  /** Requests that failed. */
  errors: number;
  /** Errors by kind. */
  errorKinds: Record<string, number>;
  /** Wall time of the round, s. */
  seconds: number;
  /** Requests per second. */
  perSecond: number;
  /** Median latency, ms. */
  p50Ms: number;
  /** 99th percentile latency, ms. */
  p99Ms: number;
  /** The Python process's CPU time per request, µs. */
  clientCpuUs: number;
}

/**
 * A running Python driver (`bench_python.py --serve`): its table set up and every key used once,
 * it runs one round per {@link PythonPeer.round} call.
 */
export class PythonPeer {
  #child: Deno.ChildProcess;
  #lines: AsyncIterator<string>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #stderr: Promise<string>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter())
      [Symbol.asyncIterator]();
    this.#writer = child.stdin.getWriter();
    this.#stderr = new Response(child.stderr).text();
  }

  /**
   * Starts the driver on `endpoint` (a local one: the driver refuses any other host) with its own
   * table, and waits until it is ready.
   *
   * @example
   * ```ts ignore
   * const peer = await PythonPeer.start({ python, endpoint, table: "bench-py-x", keys: 200 });
   * const r = await peer.round({ concurrency: 16, seconds: 2 });
   * await peer.close();
   * ```
   */
  static async start(
    options: { python: string; endpoint: string; table: string; keys: number },
  ): Promise<PythonPeer> {
    const { python, endpoint, table, keys } = options;
    const child = new Deno.Command(python, {
      args: [DRIVER, "--endpoint", endpoint, "--table", table, "--keys", String(keys), "--serve"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { PYTHONWARNINGS: "ignore::DeprecationWarning" },
    }).spawn();
    const peer = new PythonPeer(child);
    const first = await peer.#next();
    if (!(first as { ready?: boolean }).ready) {
      throw new Error(`the Python driver did not start: ${JSON.stringify(first)}`);
    }
    return peer;
  }

  async #next(): Promise<unknown> {
    const { value, done } = await this.#lines.next();
    if (done) {
      const status = await this.#child.status;
      throw new Error(
        `the Python driver exited (${status.code}): ${(await this.#stderr).slice(-2000)}`,
      );
    }
    return JSON.parse(value);
  }

  /** Runs one round: `concurrency` in flight for `seconds` (or `requests`), on the hot key or all. */
  async round(
    ask: { concurrency: number; seconds?: number; requests?: number; hot?: boolean },
  ): Promise<PythonRound> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(ask) + "\n"));
    return await this.#next() as PythonRound;
  }

  /** Ends the driver (EOF on its stdin) and waits for it. */
  async close(): Promise<void> {
    try {
      await this.#writer.close();
    } catch { /* already closed */ }
    const status = await this.#child.status;
    await this.#stderr;
    if (!status.success) throw new Error(`the Python driver exited with ${status.code}`);
  }
}

function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) if (p.trim()) controller.enqueue(p);
    },
    flush(controller) {
      if (rest.trim()) controller.enqueue(rest);
    },
  });
}

/** One limit of the plain write: `rate` tokens per `periodMs`, a bucket of `rate`; `cost` tokens. */
interface PlainLimit {
  attr: string;
  rate: bigint;
  periodMs: bigint;
  cost: bigint;
}

/** The request was refused: a limit has no room. */
export class PlainRefused extends Error {
  override name = "PlainRefused";
}

/**
 * A plain conditional GCRA write: one `UpdateItem` per request on `PK = PLAIN#key`, with the same
 * two limits as the others and nothing else (no idempotency, no counters). Time is kept as
 * `ms × rate`, so a token costs `periodMs` units and every figure is an exact integer. The first
 * write guesses the bucket idle (`tat ≤ now`, the steady state of these rounds) and sets
 * `tat = now + cost`; when the guess is wrong, the failed write returns the item
 * (`ReturnValuesOnConditionCheckFailure`) and the next write sets `max(tat, now) + cost` on
 * the condition that the item is unchanged, or refuses when that passes `now + tolerance`.
 *
 * @example
 * ```ts ignore
 * const send = plainWrite(client, "bench_tp_x");
 * await send("key-1");
 * ```
 */
export function plainWrite(
  client: DynamoDB,
  tableName: string,
  options: { clock?: () => number; rpm?: number; tpm?: number; maxAttempts?: number } = {},
): (key: string) => Promise<void> {
  const { clock = Date.now, rpm = 10_000_000, tpm = 10_000_000_000, maxAttempts = 5 } = options;
  const limits: PlainLimit[] = [
    { attr: "t_rpm", rate: BigInt(rpm), periodMs: 60_000n, cost: 1n },
    { attr: "t_tpm", rate: BigInt(tpm), periodMs: 60_000n, cost: 500n },
  ];
  const names = { "#a": limits[0].attr, "#b": limits[1].attr };
  return async (key) => {
    const now = BigInt(clock());
    const scaled = limits.map((l) => now * l.rate);
    const Key = { PK: { S: `PLAIN#${key}` }, SK: { S: "#PLAIN" } };
    // The guess: both buckets idle.
    let seen: (bigint | undefined)[] | undefined;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const next: bigint[] = [];
      limits.forEach((l, i) => {
        const tat = seen?.[i];
        const base = tat !== undefined && tat > scaled[i] ? tat : scaled[i];
        next.push(base + l.cost * l.periodMs);
      });
      if (limits.some((l, i) => next[i] - scaled[i] > l.rate * l.periodMs)) {
        throw new PlainRefused(`no room for ${key}`);
      }
      const cond = (alias: "#a" | "#b", i: number) => {
        if (seen === undefined) return `(attribute_not_exists(${alias}) OR ${alias} <= :n${i})`;
        const tat = seen[i];
        return tat === undefined ? `attribute_not_exists(${alias})` : `${alias} = :o${i}`;
      };
      const values: Record<string, { N: string }> = {
        ":t0": { N: String(next[0]) },
        ":t1": { N: String(next[1]) },
      };
      limits.forEach((_, i) => {
        const tat = seen?.[i];
        if (seen === undefined) values[`:n${i}`] = { N: String(scaled[i]) };
        else if (tat !== undefined) values[`:o${i}`] = { N: String(tat) };
      });
      try {
        await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key,
            UpdateExpression: "SET #a = :t0, #b = :t1",
            ConditionExpression: `${cond("#a", 0)} AND ${cond("#b", 1)}`,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
            ReturnValuesOnConditionCheckFailure: "ALL_OLD",
          }),
        );
        return;
      } catch (err) {
        if ((err as Error).name !== "ConditionalCheckFailedException") throw err;
        const item = (err as { Item?: Record<string, { N?: string }> }).Item ?? {};
        seen = limits.map((l) =>
          item[l.attr]?.N === undefined ? undefined : BigInt(item[l.attr].N!)
        );
      }
    }
    throw new Error(`plain write on ${key}: still contended after ${maxAttempts} attempts`);
  };
}
