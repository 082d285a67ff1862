/**
 * A tiny tar writer for tests: it builds the archives (ustar, GNU long names, pax records,
 * base-256 sizes, links, hostile paths) that the DynamoDB Local unpacker must read or refuse. It
 * writes any bytes it is told to, which is why it is hand-written rather than a library's packer.
 */

/** UTF-8 bytes of a string. */
export const enc = new TextEncoder();

function putString(b: Uint8Array, off: number, len: number, s: string): void {
  b.set(enc.encode(s).subarray(0, len), off);
}

function putOctal(b: Uint8Array, off: number, len: number, n: number): void {
  putString(b, off, len, n.toString(8).padStart(len - 1, "0") + "\0");
}

/** The fields of one header block; the rest are zero. */
export interface HeaderSpec {
  name: string;
  size?: number;
  type?: string;
  mode?: number;
  prefix?: string;
  linkname?: string;
  gnu?: boolean;
  base256Size?: boolean;
}

/** One 512-byte header block, its checksum computed (ustar, or GNU with `gnu`). */
export function header(h: HeaderSpec): Uint8Array {
  const b = new Uint8Array(512);
  putString(b, 0, 100, h.name);
  putOctal(b, 100, 8, h.mode ?? 0o644);
  putOctal(b, 108, 8, 0);
  putOctal(b, 116, 8, 0);
  if (h.base256Size) {
    b[124] = 0x80;
    let n = h.size ?? 0;
    for (let i = 135; i > 124; i--) {
      b[i] = n % 256;
      n = Math.floor(n / 256);
    }
  } else putOctal(b, 124, 12, h.size ?? 0);
  putOctal(b, 136, 12, 0);
  b.fill(32, 148, 156);
  putString(b, 156, 1, h.type ?? "0");
  putString(b, 157, 100, h.linkname ?? "");
  if (h.gnu) putString(b, 257, 8, "ustar  \0");
  else {
    putString(b, 257, 6, "ustar\0");
    putString(b, 263, 2, "00");
    putString(b, 345, 155, h.prefix ?? "");
  }
  const sum = b.reduce((a, c) => a + c, 0);
  putString(b, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return b;
}

/** A header followed by its data, padded to whole blocks. */
export function withData(h: Uint8Array, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(512 + Math.ceil(data.byteLength / 512) * 512);
  out.set(h);
  out.set(data, 512);
  return out;
}

/** A regular file entry. */
export function file(name: string, content: string | Uint8Array, extra: Partial<HeaderSpec> = {}) {
  const data = typeof content === "string" ? enc.encode(content) : content;
  return withData(header({ name, size: data.byteLength, ...extra }), data);
}

/** A GNU `L` record and the file entry whose long name it holds. */
export function gnuLongName(name: string, content: string): Uint8Array[] {
  const n = enc.encode(name + "\0");
  return [
    withData(header({ name: "././@LongLink", type: "L", size: n.byteLength, gnu: true }), n),
    file(name.slice(0, 99), content, { gnu: true }),
  ];
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = enc.encode(body).byteLength;
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len++;
  return `${len}${body}`;
}

/** A pax `x` record setting `path`, and the file entry it applies to. */
export function paxPath(path: string, content: string): Uint8Array[] {
  const records = enc.encode(paxRecord("path", path) + paxRecord("mtime", "1.5"));
  return [
    withData(header({ name: "PaxHeader/x", type: "x", size: records.byteLength }), records),
    file("short-name-overridden", content),
  ];
}

/** The parts one after another, closed by the two zero blocks that end an archive. */
export function tar(...parts: (Uint8Array | Uint8Array[])[]): Uint8Array {
  const blocks = [...parts.flat(), new Uint8Array(1024)];
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.byteLength, 0));
  let off = 0;
  for (const b of blocks) {
    out.set(b, off);
    off += b.byteLength;
  }
  return out;
}
