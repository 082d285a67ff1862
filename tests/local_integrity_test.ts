/**
 * The cached DynamoDB Local is checked before every start against the sha256 of its files pinned
 * in the code: a copy of the real cache is accepted as is, and refused once its jar is replaced.
 */

import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DYNAMODB_LOCAL_INTEGRITY,
  dynamoDBLocalDir,
  ensureDynamoDBLocal,
  LocalDynamoError,
  startDynamoDBLocal,
} from "../src/local/mod.ts";

Deno.test({
  name: "a tampered copy of the real DynamoDB Local cache is refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const real = await ensureDynamoDBLocal(); // downloads on first use, verified
    const cacheDir = mkdtempSync(join(tmpdir(), "zl-integrity-"));
    const dir = dynamoDBLocalDir({ cacheDir });
    try {
      cpSync(real.dir, dir, { recursive: true });
      const marker = join(dir, ".zae-limiter-complete");
      assert.equal(JSON.parse(readFileSync(marker, "utf8")).integrity, DYNAMODB_LOCAL_INTEGRITY);

      await t.step("an intact copy is accepted, and runs", async () => {
        assert.equal((await ensureDynamoDBLocal({ cacheDir })).downloaded, false);
        // A record without a manifest (older installs) is still checked against the pinned hash.
        const record = JSON.parse(readFileSync(marker, "utf8"));
        delete record.files;
        writeFileSync(marker, JSON.stringify(record));
        await using ddb = await startDynamoDBLocal({ cacheDir });
        assert.ok(ddb.pid > 0);
      });

      await t.step("a replaced DynamoDBLocal.jar is refused before java runs", async () => {
        const jar = join(dir, "DynamoDBLocal.jar");
        const original = readFileSync(jar);
        const evil = new Uint8Array(original);
        evil[evil.length - 100] ^= 1; // one bit
        writeFileSync(jar, evil);
        try {
          await assert.rejects(startDynamoDBLocal({ cacheDir }), (e: unknown) => {
            assert.ok(e instanceof LocalDynamoError);
            assert.equal(e.code, "INTEGRITY_MISMATCH");
            assert.ok(
              e.message.startsWith(`Refusing to run the cached DynamoDB Local in ${dir}: `),
              e.message,
            );
            assert.match(e.message, /delete that folder to download and verify it again/);
            return true;
          });
        } finally {
          writeFileSync(jar, original);
        }
        assert.equal((await ensureDynamoDBLocal({ cacheDir })).downloaded, false);
      });

      await t.step("a forged install record does not help", async () => {
        const jar = join(dir, "DynamoDBLocal.jar");
        writeFileSync(jar, "forged");
        // Claims another tarball (so that its own manifest would be trusted): refused.
        const record = JSON.parse(readFileSync(marker, "utf8"));
        writeFileSync(marker, JSON.stringify({ ...record, integrity: "sha512-Zm9yZ2Vk" }));
        await assert.rejects(
          ensureDynamoDBLocal({ cacheDir }),
          (e: unknown) =>
            e instanceof LocalDynamoError && e.code === "INTEGRITY_MISMATCH" &&
            e.message.includes(`not the expected ${DYNAMODB_LOCAL_INTEGRITY}`),
        );
      });
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  },
});
