/**
 * A small streaming tar reader: POSIX ustar (with the `prefix` field), GNU long names and long
 * link names (`L`/`K` entries), and pax extended headers (`x` per entry, `g` global; the `path`,
 * `linkpath` and `size` keys are honoured). Numeric fields may be octal or GNU base-256.
 *
 * It reads plain (already gunzipped) tar bytes from any async iterable of chunks, e.g. a
 * `node:zlib` gunzip stream, and holds one entry's contents in memory at a time.
 *
 * @module
 */

const BLOCK = 512;
const decoder = new TextDecoder();

/** The kind of a tar entry. */
export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "other";

/** One entry of a tar archive, with its contents. */
export interface TarEntry {
  /** The entry's path as stored (after long-name and pax records), e.g. `package/index.js`. */
  path: string;
  /** What the entry is. */
  type: TarEntryType;
  /** The raw type flag, e.g. `"0"` for a file, `"5"` for a directory. */
  typeflag: string;
  /** Permission bits, e.g. `0o644`. */
  mode: number;
  /** Size of `data` in bytes. */
  size: number;
  /** The target of a link (empty for other entries). */
  linkpath: string;
  /** The contents (empty for anything but a file). */
  data: Uint8Array;
}

/**
 * Thrown for a malformed or truncated archive.
 *
 * @example
 * ```ts
 * import { readTar, TarFormatError } from "./tar.ts";
 * try {
 *   for await (const entry of readTar([new Uint8Array(100)])) console.log(entry.path);
 * } catch (e) {
 *   console.assert(e instanceof TarFormatError); // truncated header
 * }
 * ```
 */
export class TarFormatError extends Error {
  /** @param message What is wrong with the archive. */
  constructor(message: string) {
    super(message);
    this.name = "TarFormatError";
  }
}

/** Reads exact byte counts out of a stream of chunks. */
class ChunkReader {
  #it: AsyncIterator<Uint8Array | string>;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #done = false;

  constructor(source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>) {
    if (Symbol.asyncIterator in source) {
      this.#it = (source as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]();
    } else {
      const sync = source as Iterable<Uint8Array>;
      this.#it = (async function* () {
        yield* sync;
      })();
    }
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffered < n && !this.#done) {
      const r = await this.#it.next();
      if (r.done) {
        this.#done = true;
        break;
      }
      if (typeof r.value === "string") {
        throw new TarFormatError("tar stream yielded text, not bytes");
      }
      if (r.value.byteLength > 0) {
        this.#chunks.push(r.value);
        this.#buffered += r.value.byteLength;
      }
    }
  }

  /** Exactly `n` bytes, or `null` at a clean end of stream; throws when it ends midway. */
  async read(n: number): Promise<Uint8Array | null> {
    await this.#fill(n);
    if (this.#buffered === 0 && n > 0) return null;
    if (this.#buffered < n) {
      throw new TarFormatError(
        `unexpected end of archive (wanted ${n} bytes, had ${this.#buffered})`,
      );
    }
    const first = this.#chunks[0];
    let out: Uint8Array;
    if (first.byteLength >= n) {
      out = first.subarray(0, n);
      if (first.byteLength === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = new Uint8Array(n);
      let off = 0;
      while (off < n) {
        const c = this.#chunks[0];
        const take = Math.min(c.byteLength, n - off);
        out.set(c.subarray(0, take), off);
        off += take;
        if (take === c.byteLength) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(take);
      }
    }
    this.#buffered -= n;
    return out;
  }

  async cancel(): Promise<void> {
    this.#done = true;
    this.#chunks = [];
    this.#buffered = 0;
    await this.#it.return?.();
  }
}

function cString(b: Uint8Array, start: number, len: number): string {
  const f = b.subarray(start, start + len);
  const nul = f.indexOf(0);
  return decoder.decode(nul === -1 ? f : f.subarray(0, nul));
}

function num(b: Uint8Array, start: number, len: number, field: string): number {
  const f = b.subarray(start, start + len);
  if (f[0] & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit of the first byte as marker.
    if (f[0] & 0x40) throw new TarFormatError(`negative ${field} in tar header`);
    let v = f[0] & 0x3f;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i];
    if (!Number.isSafeInteger(v)) throw new TarFormatError(`${field} too large in tar header`);
    return v;
  }
  const s = decoder.decode(f).replace(/[\0 ]+$/, "").replace(/^[\0 ]+/, "");
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) {
    throw new TarFormatError(`invalid ${field} ${JSON.stringify(s)} in tar header`);
  }
  return parseInt(s, 8);
}

function checksumOk(h: Uint8Array): boolean {
  const stored = num(h, 148, 8, "checksum");
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 32 : h[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

/** Parses pax extended header records (`"<len> <key>=<value>\n"`, len counting bytes). */
function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.byteLength) {
    if (data[pos] === 0) break; // NUL padding
    const space = data.indexOf(0x20, pos);
    if (space === -1) throw new TarFormatError("malformed pax header record");
    const len = Number(decoder.decode(data.subarray(pos, space)));
    if (!Number.isInteger(len) || len <= space - pos || pos + len > data.byteLength) {
      throw new TarFormatError("malformed pax header record length");
    }
    const record = decoder.decode(data.subarray(space + 1, pos + len - 1)); // drop trailing \n
    const eq = record.indexOf("=");
    if (eq === -1) throw new TarFormatError("malformed pax header record (no '=')");
    out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

function typeOf(flag: string): TarEntryType {
  switch (flag) {
    case "0":
    case "\0":
    case "":
    case "7": // contiguous file
      return "file";
    case "5":
      return "directory";
    case "2":
      return "symlink";
    case "1":
      return "hardlink";
    default:
      return "other";
  }
}

/**
 * Reads the entries of an uncompressed tar archive. Metadata entries (GNU `L`/`K`, pax `x`/`g`)
 * are applied to the entry that follows and not yielded themselves. Stops at the end-of-archive
 * zero block (or a clean end of input).
 *
 * @param source The tar bytes, in chunks of any size (a `node:stream` Readable, a gunzip stream,
 *   a `ReadableStream<Uint8Array>` or an array of `Uint8Array`).
 * @throws {TarFormatError} When the archive is truncated or a header is corrupt.
 *
 * @example
 * ```ts
 * import { createReadStream } from "node:fs";
 * import { createGunzip } from "node:zlib";
 * import { readTar } from "./tar.ts";
 *
 * // Lists the files of a .tgz, e.g. an npm package.
 * async function listFiles(tgzPath: string): Promise<string[]> {
 *   const paths: string[] = [];
 *   for await (const entry of readTar(createReadStream(tgzPath).pipe(createGunzip()))) {
 *     if (entry.type === "file") paths.push(entry.path);
 *   }
 *   return paths;
 * }
 * // Two zero blocks end an archive: an empty one has no entries.
 * const entries = [];
 * for await (const entry of readTar([new Uint8Array(1024)])) entries.push(entry);
 * console.assert(entries.length === 0 && typeof listFiles === "function");
 * ```
 */
export async function* readTar(
  source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>,
): AsyncGenerator<TarEntry, void, undefined> {
  const reader = new ChunkReader(source);
  let globalPax: Record<string, string> = {};
  let pax: Record<string, string> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    while (true) {
      const h = await reader.read(BLOCK);
      if (h === null) return; // end of input without end-of-archive blocks: tolerated
      if (h.every((b) => b === 0)) return; // end-of-archive marker
      if (!checksumOk(h)) throw new TarFormatError("tar header checksum mismatch");

      const typeflag = String.fromCharCode(h[156]).replace("\0", "");
      const magic = decoder.decode(h.subarray(257, 263));
      let size = num(h, 124, 12, "size");
      const attrs = { ...globalPax, ...pax };
      if (attrs.size !== undefined && /^[0-9]+$/.test(attrs.size)) size = Number(attrs.size);

      const padded = Math.ceil(size / BLOCK) * BLOCK;
      const raw = padded > 0 ? await reader.read(padded) : new Uint8Array(0);
      if (raw === null) throw new TarFormatError("unexpected end of archive in entry data");
      const data = raw.subarray(0, size);

      if (typeflag === "L" || typeflag === "K") {
        const text = cString(data, 0, data.byteLength);
        if (typeflag === "L") longName = text;
        else longLink = text;
        continue;
      }
      if (typeflag === "x") {
        pax = { ...pax, ...parsePax(data) };
        continue;
      }
      if (typeflag === "g") {
        globalPax = { ...globalPax, ...parsePax(data) };
        continue;
      }

      let path = cString(h, 0, 100);
      if (magic === "ustar\0") {
        const prefix = cString(h, 345, 155);
        if (prefix) path = `${prefix}/${path}`;
      }
      if (longName !== undefined) path = longName;
      if (attrs.path !== undefined) path = attrs.path;
      let linkpath = cString(h, 157, 100);
      if (longLink !== undefined) linkpath = longLink;
      if (attrs.linkpath !== undefined) linkpath = attrs.linkpath;
      pax = longName = longLink = undefined;

      const type = typeOf(typeflag);
      yield {
        path,
        type,
        typeflag: typeflag === "" ? "0" : typeflag,
        mode: num(h, 100, 8, "mode") & 0o7777,
        size: type === "file" ? size : 0,
        linkpath,
        data: type === "file" ? data : new Uint8Array(0),
      };
    }
  } finally {
    await reader.cancel();
  }
}
