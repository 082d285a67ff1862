/**
 * The answer side of the HTTP/1.1 client (`http1.ts`): an incremental parser fed the socket's
 * chunks as they arrive. It reads the status line, the headers (names lower-cased) and the body,
 * delimited by `Content-Length`, by `Transfer-Encoding: chunked`, or by the end of the
 * connection; it skips interim (1xx) answers. Pure: no I/O, so its edge cases are unit-tested.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** One complete answer. */
export interface Http1Answer {
  /** The status code. */
  status: number;
  /** The headers, names lower-cased; repeated ones joined with ", ". */
  headers: Map<string, string>;
  /** The body, decoded as UTF-8. */
  text: string;
  /** Whether the connection may carry another request (HTTP/1.1 without `Connection: close`). */
  keepAlive: boolean;
}

/** A malformed answer: the connection cannot be trusted after it. */
export class Http1ParseError extends Error {
  /** Names the error. */
  override name = "Http1ParseError";
}

const CRLF2 = Buffer.from("\r\n\r\n");
const CRLF = Buffer.from("\r\n");
/** Bounds on what a DynamoDB answer can need, so that a broken peer cannot grow the buffer. */
const MAX_HEAD = 64 * 1024;
const MAX_CHUNK_LINE = 1024;

type Body = "length" | "chunk-size" | "chunk-data" | "chunk-end" | "trailers" | "until-close";

/**
 * Parses one answer at a time: {@link push} each chunk; it returns the answer once complete, and
 * throws {@link Http1ParseError} on a malformed one. Bytes after a complete answer (which a
 * client without pipelining never expects) are kept in {@link extra}.
 */
export class Http1AnswerParser {
  #pending: Buffer | undefined; // unparsed bytes of the head or a chunk-size line
  #status = 0;
  #headers = new Map<string, string>();
  #keepAlive = true;
  #body: Body | undefined; // undefined while the head is being read
  #left = 0; // bytes of the body (or of the current chunk) still to come
  #parts: Buffer[] = [];
  /** Bytes received after the last complete answer. */
  extra = 0;

  /** Whether part of an answer has arrived. */
  get started(): boolean {
    return this.#body !== undefined || this.#pending !== undefined;
  }

  /** Feeds one chunk; returns the answer when this chunk completes it. */
  push(chunk: Buffer): Http1Answer | undefined {
    let data = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = undefined;
    while (data.length > 0) {
      if (this.#body === undefined) {
        const end = data.indexOf(CRLF2);
        if (end < 0) return this.#keep(data, MAX_HEAD, "head");
        this.#head(data.toString("latin1", 0, end));
        data = data.subarray(end + 4);
        if (this.#body === undefined) continue; // an interim answer: the real one follows
        if (this.#body === "length" && this.#left === 0) return this.#finish(data);
        continue;
      }
      switch (this.#body) {
        case "until-close":
          this.#parts.push(data);
          return undefined;
        case "length":
        case "chunk-data": {
          const n = Math.min(this.#left, data.length);
          this.#parts.push(data.subarray(0, n));
          this.#left -= n;
          data = data.subarray(n);
          if (this.#left > 0) return undefined;
          if (this.#body === "length") return this.#finish(data);
          this.#body = "chunk-end";
          continue;
        }
        case "chunk-end":
        case "chunk-size":
        case "trailers": {
          const end = data.indexOf(CRLF);
          if (end < 0) return this.#keep(data, MAX_CHUNK_LINE, "chunk line");
          const line = data.toString("latin1", 0, end);
          data = data.subarray(end + 2);
          if (this.#body === "chunk-end") {
            if (line !== "") throw new Http1ParseError("a chunk longer than its size");
            this.#body = "chunk-size";
          } else if (this.#body === "trailers") {
            if (line === "") return this.#finish(data);
          } else {
            const size = line.split(";", 1)[0].trim();
            if (!/^[0-9a-fA-F]{1,8}$/.test(size)) {
              throw new Http1ParseError(`a bad chunk size: ${JSON.stringify(line.slice(0, 40))}`);
            }
            this.#left = parseInt(size, 16);
            this.#body = this.#left === 0 ? "trailers" : "chunk-data";
          }
          continue;
        }
      }
    }
    return undefined;
  }

  /**
   * The connection ended: the answer when its body runs to the end of the connection, else
   * undefined (nothing, or a truncated answer, arrived).
   */
  end(): Http1Answer | undefined {
    if (this.#body !== "until-close") return undefined;
    return this.#finish(Buffer.alloc(0));
  }

  #keep(data: Buffer, max: number, what: string): undefined {
    if (data.length > max) throw new Http1ParseError(`a ${what} over ${max} bytes`);
    this.#pending = Buffer.from(data); // a copy: the socket may reuse its chunk
    return undefined;
  }

  #head(head: string): void {
    const lines = head.split("\r\n");
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0]);
    if (!m) throw new Http1ParseError(`not an HTTP/1 answer: ${JSON.stringify(lines[0])}`);
    const status = Number(m[2]);
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(":");
      // A folded line (obs-fold, starting with a space or tab) is refused, as RFC 9112 allows.
      if (colon <= 0 || line[0] === " " || line[0] === "\t") {
        throw new Http1ParseError(`a bad header line: ${JSON.stringify(line)}`);
      }
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const had = headers.get(name);
      headers.set(name, had === undefined ? value : `${had}, ${value}`);
    }
    if (status < 200) return; // 100 Continue and the like: the final answer follows
    this.#status = status;
    this.#headers = headers;
    const connection = headers.get("connection")?.toLowerCase() ?? "";
    this.#keepAlive = m[1] === "1" ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(
      connection,
    );
    const coding = headers.get("transfer-encoding")?.toLowerCase();
    const length = headers.get("content-length");
    if (status === 204 || status === 304) {
      this.#body = "length";
      this.#left = 0;
    } else if (coding !== undefined && coding !== "identity") {
      if (!/(?:^|,)\s*chunked\s*$/.test(coding)) {
        throw new Http1ParseError(`an unsupported transfer-encoding: ${coding}`);
      }
      this.#body = "chunk-size";
      // Chunked with a Content-Length too, or from an HTTP/1.0 server: the framing is in doubt,
      // so the connection is not reused (RFC 9112, 6.1 and 6.3).
      if (length !== undefined || m[1] === "0") this.#keepAlive = false;
    } else if (length !== undefined) {
      if (!/^\d{1,15}$/.test(length)) {
        throw new Http1ParseError(`a bad content-length: ${JSON.stringify(length)}`);
      }
      this.#body = "length";
      this.#left = Number(length);
    } else {
      this.#body = "until-close";
      this.#keepAlive = false;
    }
  }

  #finish(rest: Buffer): Http1Answer {
    const parts = this.#parts;
    const text = parts.length === 1
      ? parts[0].toString("utf8")
      : parts.length === 0
      ? ""
      : Buffer.concat(parts).toString("utf8");
    const answer = {
      status: this.#status,
      headers: this.#headers,
      text,
      keepAlive: this.#keepAlive,
    };
    this.#parts = [];
    this.#body = undefined;
    this.#left = 0;
    this.extra = rest.length;
    return answer;
  }
}
