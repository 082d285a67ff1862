/**
 * Unpacks the emulator's files from the downloaded tarball, refusing any path that would land
 * outside the target folder.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { createGunzip } from "node:zlib";
import { msg } from "./_util.ts";
import { LocalDynamoError } from "./errors.ts";
import { readTar } from "./tar.ts";

const ARCHIVE_PREFIX = "package/emulator/";

/** Unpacks `package/emulator/**` of the tarball into `out` (prefix stripped). */
export async function extract(tgz: string, out: string): Promise<void> {
  const base = resolve(out);
  await mkdir(base, { recursive: true });
  const input = createReadStream(tgz);
  const gunzip = createGunzip();
  input.on("error", (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  let sawJar = false;
  try {
    for await (const entry of readTar(gunzip)) {
      const path = entry.path.replace(/^\.\//, "");
      if (!path.startsWith(ARCHIVE_PREFIX)) continue;
      const rel = path.slice(ARCHIVE_PREFIX.length).replace(/\/+$/, "");
      if (rel === "") continue;
      const parts = rel.split("/");
      if (parts.some((p) => p === ".." || p === "" || p === ".") || rel.includes("\\")) {
        throw new Error(`unsafe path in archive: ${JSON.stringify(entry.path)}`);
      }
      const target = join(base, ...parts);
      if (!target.startsWith(base + sep)) {
        throw new Error(`unsafe path in archive: ${JSON.stringify(entry.path)}`);
      }
      if (entry.type === "directory") {
        await mkdir(target, { recursive: true });
      } else if (entry.type === "file") {
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, entry.data, { mode: (entry.mode & 0o777) | 0o600 });
        if (rel === "DynamoDBLocal.jar") sawJar = true;
      } // links and special files are not needed and not created
    }
  } catch (e) {
    throw new LocalDynamoError(
      "EXTRACT_FAILED",
      `Could not unpack DynamoDB Local: ${msg(e)}`,
      { cause: e },
    );
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  if (!sawJar) {
    throw new LocalDynamoError(
      "EXTRACT_FAILED",
      `Could not unpack DynamoDB Local: the tarball has no ${ARCHIVE_PREFIX}DynamoDBLocal.jar`,
    );
  }
}
