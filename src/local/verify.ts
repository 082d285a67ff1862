/**
 * Checks the cached DynamoDB Local before every start: its files must hash to the pinned digest
 * (or, for another tarball, to the manifest recorded at install).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { msg } from "./_util.ts";
import { MARKER, RUNTIME_FILE } from "./cache_dir.ts";
import { LocalDynamoError } from "./errors.ts";
import type { EnsureOptions } from "./install_options.ts";
import { DYNAMODB_LOCAL_FILES_SHA256, DYNAMODB_LOCAL_INTEGRITY } from "./release.ts";

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

/** The sha256 of every file under `dir` but the marker, by path relative to `dir` (with `/`). */
export async function fileHashes(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (path === MARKER || path === RUNTIME_FILE) continue;
      if (entry.isDirectory()) await walk(path);
      // The install never creates links or special files: one found here was put there later.
      else files[path] = entry.isFile() ? await sha256File(join(dir, path)) : "not-a-file";
    }
  };
  await walk("");
  return files;
}

function digestOf(files: Record<string, string>): string {
  const lines = Object.keys(files).sort().map((path) => `${files[path]}  ${path}\n`);
  return createHash("sha256").update(lines.join("")).digest("hex");
}

/**
 * Checks the cached files before each start: against {@link DYNAMODB_LOCAL_FILES_SHA256} for the
 * pinned tarball, else against the manifest written at install. About 64 MB are hashed (0.3 s).
 */
export async function verifyInstall(dir: string, opts: EnsureOptions): Promise<void> {
  const expected = opts.integrity ?? DYNAMODB_LOCAL_INTEGRITY;
  const refuse = (why: string): never => {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Refusing to run the cached DynamoDB Local in ${dir}: ${why}. It may have been tampered ` +
        `with or damaged; delete that folder to download and verify it again.`,
    );
  };
  let marker: { integrity?: unknown; files?: unknown };
  try {
    marker = JSON.parse(await readFile(join(dir, MARKER), "utf8"));
  } catch (e) {
    return refuse(`its install record ${MARKER} is unreadable (${msg(e)})`);
  }
  if (marker.integrity !== expected) {
    return refuse(
      `it was installed from a tarball with integrity ${String(marker.integrity)}, ` +
        `not the expected ${expected}`,
    );
  }
  const recorded = typeof marker.files === "object" && marker.files !== null
    ? marker.files as Record<string, string>
    : undefined;
  let actual: Record<string, string>;
  try {
    actual = await fileHashes(dir);
  } catch (e) {
    return refuse(`its files cannot be read (${msg(e)})`);
  }
  const want = expected === DYNAMODB_LOCAL_INTEGRITY
    ? DYNAMODB_LOCAL_FILES_SHA256
    : recorded && digestOf(recorded);
  if (want === undefined) return refuse(`its install record has no file manifest`);
  if (digestOf(actual) === want) return;
  const changed = recorded
    ? [...new Set([...Object.keys(recorded), ...Object.keys(actual)])].sort()
      .filter((path) => recorded[path] !== actual[path])
    : [];
  return refuse(
    changed.length > 0
      ? `${changed.slice(0, 3).join(", ")}${changed.length > 3 ? ", …" : ""} changed since ` +
        `it was installed (sha256 differs, or the file was added or removed)`
      : `its files do not hash to the pinned sha256 ${want}`,
  );
}
