/**
 * A lean HTTP/1.1 client for the lean transport's POSTs: keep-alive sockets of `node:net`
 * (`http:`) or `node:tls` (`https:`, SNI and the usual certificate checks), one request at a
 * time per socket, idle ones reused last-in first-out. It costs about half the client CPU of a
 * `fetch` a call (see "Client CPU" in docs/design.md); it does no HTTP/2, no proxy (the lean
 * transport keeps `fetch` when a proxy is configured) and never retries: a request that failed
 * after its first byte was written may have been applied, and the caller decides.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import net from "node:net";
import { clearTimeout as clearTimer, setTimeout as setTimer } from "node:timers";
import tls from "node:tls";
import { type Http1Answer, Http1AnswerParser } from "./http1_answer.ts";

/** One POST. */
export interface Http1Request {
  /** The URL: its origin picks the pool, its path and query are sent. */
  url: string;
  /** Request headers, without `host` and `content-length` (the client sets them). */
  headers: Record<string, string>;
  /** The body, sent as UTF-8. */
  body: string;
  /** Aborting destroys the socket and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A failure of the socket, with node's `code` when it has one; `sent` when bytes were written. */
export interface Http1Error extends Error {
  code?: string;
  /** Whether any byte of the request was written (it may then have been applied). */
  sent: boolean;
}

/** Options of {@link Http1Client}. */
export interface Http1ClientOptions {
  /** An idle socket older than this is closed, never reused (ms). @default 4000 */
  idleMs?: number;
}

interface Origin {
  key: string;
  secure: boolean;
  hostname: string;
  port: number;
  /** The `host` header. */
  host: string;
  /** The path and query sent. */
  path: string;
}

/** One socket and the request it is carrying, if any. */
interface Conn {
  socket: net.Socket;
  origin: Origin;
  parser: Http1AnswerParser;
  idleSince: number;
  call?: {
    resolve: (answer: Http1Answer) => void;
    fail: (err: Error) => void;
  };
}

/**
 * Keep-alive HTTP/1.1 POSTs over pooled sockets. Idle sockets are `unref()`ed (they keep no
 * process alive), leave the pool when their peer closes them, and are closed after
 * {@link Http1ClientOptions.idleMs}. {@link close} destroys every socket.
 *
 * @example
 * ```ts ignore
 * const client = new Http1Client();
 * const answer = await client.post({ url: "http://127.0.0.1:8000/", headers: {}, body: "{}" });
 * console.log(answer.status, answer.headers.get("content-type"), answer.text);
 * client.close();
 * ```
 */
export class Http1Client {
  readonly #idleMs: number;
  readonly #origins = new Map<string, Origin>();
  readonly #idle = new Map<string, Conn[]>();
  readonly #busy = new Set<Conn>();
  #sweeper: ReturnType<typeof setTimer> | undefined;
  #opened = 0;

  constructor(options: Http1ClientOptions = {}) {
    this.#idleMs = options.idleMs ?? 4_000;
  }

  /** Sockets opened so far (tests count them to see reuse). */
  get connections(): number {
    return this.#opened;
  }

  /** Sends one POST and resolves with its answer; never retries. */
  post(request: Http1Request): Promise<Http1Answer> {
    const { signal } = request;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    let origin: Origin, payload: string;
    try {
      origin = this.#origin(request.url);
      payload = requestText(origin, request);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Http1Answer>((resolve, reject) => {
      let conn = this.#take(origin);
      let sent = false;
      let done = false;
      const finish = () => {
        done = true;
        signal?.removeEventListener("abort", onAbort);
        if (conn) conn.call = undefined;
      };
      const fail = (err: Error) => {
        if (done) return;
        finish();
        reject(Object.assign(err, { sent }));
      };
      const onAbort = () => {
        if (done) return;
        finish();
        if (conn) this.#drop(conn);
        reject(abortReason(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const write = (c: Conn) => {
        c.call = {
          resolve: (answer) => {
            if (done) return;
            finish();
            resolve(answer);
          },
          fail,
        };
        this.#busy.add(c);
        c.socket.ref();
        sent = true;
        c.socket.write(payload);
      };
      if (conn) return write(conn);
      conn = this.#open(origin);
      const fresh = conn;
      // Until it connects, a failure means nothing was written; an answer cannot come.
      fresh.call = {
        resolve: () => {
          fail(new Error("an answer before the request"));
          this.#drop(fresh);
        },
        fail,
      };
      this.#busy.add(fresh);
      fresh.socket.once(origin.secure ? "secureConnect" : "connect", () => {
        if (!done) write(fresh);
      });
    });
  }

  /** Destroys every socket, busy or idle; calls in flight fail. A later call opens a new one. */
  close(): void {
    if (this.#sweeper) clearTimer(this.#sweeper);
    this.#sweeper = undefined;
    for (const conns of this.#idle.values()) for (const c of conns) c.socket.destroy();
    this.#idle.clear();
    for (const c of [...this.#busy]) {
      c.call?.fail(Object.assign(new Error("the HTTP client was closed"), { code: "ECONNRESET" }));
      this.#drop(c);
    }
  }

  #origin(url: string): Origin {
    const known = this.#origins.get(url);
    if (known) return known;
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw unsent(new TypeError(`an HTTP client for http: and https: URLs, not ${u.protocol}`));
    }
    const secure = u.protocol === "https:";
    const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    const origin = {
      key: u.origin,
      secure,
      hostname,
      port: Number(u.port) || (secure ? 443 : 80),
      host: u.host,
      path: `${u.pathname}${u.search}`,
    };
    if (this.#origins.size < 64) this.#origins.set(url, origin);
    return origin;
  }

  /** The most recently idle socket of the origin that is still fresh, if any. */
  #take(origin: Origin): Conn | undefined {
    const conns = this.#idle.get(origin.key);
    const now = Date.now();
    while (conns && conns.length > 0) {
      const c = conns.pop()!;
      if (now - c.idleSince < this.#idleMs && !c.socket.destroyed) return c;
      c.socket.destroy();
    }
    return undefined;
  }

  #open(origin: Origin): Conn {
    const socket = origin.secure
      ? tls.connect({
        host: origin.hostname,
        port: origin.port,
        servername: net.isIP(origin.hostname) ? undefined : origin.hostname,
        ALPNProtocols: ["http/1.1"],
      })
      : net.connect({ host: origin.hostname, port: origin.port });
    this.#opened++;
    socket.setNoDelay(true);
    const conn: Conn = { socket, origin, parser: new Http1AnswerParser(), idleSince: 0 };
    socket.on("data", (chunk: Buffer) => this.#data(conn, chunk));
    socket.on("error", (err: Error) => {
      conn.call?.fail(err);
      this.#drop(conn);
    });
    socket.on("close", () => {
      const answer = conn.call ? conn.parser.end() : undefined;
      if (answer) conn.call?.resolve(answer);
      else {
        conn.call?.fail(
          Object.assign(new Error(`socket hang up: ${origin.host} closed the connection`), {
            code: "ECONNRESET",
          }),
        );
      }
      this.#drop(conn);
    });
    return conn;
  }

  #data(conn: Conn, chunk: Buffer): void {
    if (!conn.call) {
      // Bytes while idle: not an answer to anything; the connection cannot be trusted.
      this.#drop(conn);
      return;
    }
    let answer: Http1Answer | undefined;
    try {
      answer = conn.parser.push(chunk);
    } catch (err) {
      conn.call.fail(err as Error);
      this.#drop(conn);
      return;
    }
    if (!answer) return;
    conn.call.resolve(answer);
    if (answer.keepAlive && conn.parser.extra === 0 && !conn.socket.destroyed) {
      this.#release(conn);
    } else this.#drop(conn);
  }

  #release(conn: Conn): void {
    this.#busy.delete(conn);
    conn.idleSince = Date.now();
    conn.socket.unref();
    const conns = this.#idle.get(conn.origin.key);
    if (conns) conns.push(conn);
    else this.#idle.set(conn.origin.key, [conn]);
    this.#sweeper ??= this.#sweep();
  }

  #drop(conn: Conn): void {
    this.#busy.delete(conn);
    conn.call = undefined;
    const conns = this.#idle.get(conn.origin.key);
    const at = conns ? conns.indexOf(conn) : -1;
    if (at >= 0) conns!.splice(at, 1);
    if (!conn.socket.destroyed) conn.socket.destroy();
  }

  /** Closes the sockets idle too long, every second while there are idle ones. */
  #sweep(): ReturnType<typeof setTimer> {
    const timer = setTimer(() => {
      this.#sweeper = undefined;
      const now = Date.now();
      let left = 0;
      for (const conns of this.#idle.values()) {
        // Oldest first: the pool is last-in first-out.
        while (conns.length > 0 && now - conns[0].idleSince >= this.#idleMs) {
          conns.shift()!.socket.destroy();
        }
        left += conns.length;
      }
      if (left > 0) this.#sweeper = this.#sweep();
    }, Math.min(1_000, this.#idleMs));
    timer.unref();
    return timer;
  }
}

/** The bytes of one request: the head and the body, written at once. */
function requestText(origin: Origin, request: Http1Request): string {
  const { body } = request;
  let head = `POST ${origin.path} HTTP/1.1\r\nhost: ${origin.host}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n`;
  for (const name in request.headers) {
    const value = request.headers[name];
    if (UNSAFE.test(name) || UNSAFE.test(value)) {
      throw unsent(new TypeError(`a header with a line break or NUL: ${JSON.stringify(name)}`));
    }
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n${body}`;
}

const UNSAFE = /[\r\n\0]/;

function unsent(err: Error): Error {
  return Object.assign(err, { sent: false });
}

/** What `fetch` rejects with on an abort: the reason when it is an abort or timeout error. */
export function abortReason(signal: AbortSignal): Error {
  const reason = signal.reason as { name?: unknown } | undefined;
  if (
    reason instanceof Error && (reason.name === "AbortError" || reason.name === "TimeoutError")
  ) {
    return reason;
  }
  return new DOMException("The signal has been aborted", "AbortError");
}
