/**
 * Downloads the pinned DynamoDB Local tarball from an npm registry, hashing it as it arrives and
 * refusing it unless it matches both the pinned integrity and the registry's `dist.integrity`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { env, msg } from "./_util.ts";
import { LocalDynamoError } from "./errors.ts";
import type { EnsureOptions } from "./install_options.ts";
import {
  DYNAMODB_LOCAL_INTEGRITY,
  DYNAMODB_LOCAL_PACKAGE,
  DYNAMODB_LOCAL_PACKAGE_VERSION,
} from "./release.ts";

const DEFAULT_REGISTRY = "https://registry.npmjs.org/";

function registryUrl(opts: EnsureOptions): string {
  const r = opts.registry ?? env("NPM_CONFIG_REGISTRY") ?? env("npm_config_registry") ??
    DEFAULT_REGISTRY;
  return r.endsWith("/") ? r : `${r}/`;
}

async function get(url: string, opts: EnsureOptions, accept: string): Promise<Response> {
  const f = opts.fetch ?? globalThis.fetch;
  let res: Response;
  try {
    res = await f(url, { headers: { accept }, signal: opts.signal, redirect: "follow" });
  } catch (e) {
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: GET ${url} failed: ${msg(e)}. ` +
        `Check your network, or point NPM_CONFIG_REGISTRY (or the registry option) at a reachable npm registry.`,
      { cause: e },
    );
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: GET ${url} answered ${res.status} ${res.statusText}`
        .trim(),
    );
  }
  return res;
}

interface Sri {
  algorithm: "sha512" | "sha384" | "sha256";
  digest: string;
}

/**
 * Picks the strongest supported hash (sha512, sha384, sha256) of a Subresource Integrity string
 * such as npm's `dist.integrity`; `undefined` when it has none.
 *
 * @example
 * ```ts
 * import { parseIntegrity } from "./install.ts";
 * parseIntegrity("sha1-abc= sha512-xTee+Q=="); // { algorithm: "sha512", digest: "xTee+Q==" }
 * ```
 */
export function parseIntegrity(integrity: string): Sri | undefined {
  const rank = { sha256: 1, sha384: 2, sha512: 3 } as const;
  let best: Sri | undefined;
  for (const token of integrity.trim().split(/\s+/)) {
    const m = /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(token);
    if (!m) continue;
    const algorithm = m[1] as Sri["algorithm"];
    if (!best || rank[algorithm] > rank[best.algorithm]) best = { algorithm, digest: m[2] };
  }
  return best;
}

/** Downloads the tarball to `dest`, hashing as it goes; returns the verified integrity. */
export async function download(opts: EnsureOptions, dest: string): Promise<string> {
  const registry = registryUrl(opts);
  const metaUrl = `${registry}${DYNAMODB_LOCAL_PACKAGE}/${DYNAMODB_LOCAL_PACKAGE_VERSION}`;
  const res = await get(metaUrl, opts, "application/json");
  let meta: { dist?: { tarball?: unknown; integrity?: unknown } };
  try {
    meta = await res.json();
  } catch (e) {
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: ${metaUrl} did not answer with JSON package metadata`,
      { cause: e },
    );
  }
  const tarball = meta?.dist?.tarball;
  const integrity = meta?.dist?.integrity;
  if (typeof tarball !== "string" || tarball === "") {
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: ${metaUrl} has no dist.tarball`,
    );
  }
  const sri = typeof integrity === "string" ? parseIntegrity(integrity) : undefined;
  if (!sri) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Refusing to use ${DYNAMODB_LOCAL_PACKAGE}@${DYNAMODB_LOCAL_PACKAGE_VERSION}: ${metaUrl} ` +
        `publishes no usable dist.integrity (sha256/384/512), so the download cannot be verified`,
    );
  }
  const pinnedText = opts.integrity ?? DYNAMODB_LOCAL_INTEGRITY;
  const pinned = parseIntegrity(pinnedText);
  if (!pinned) {
    throw new LocalDynamoError(
      "INVALID_OPTION",
      `Invalid integrity ${JSON.stringify(pinnedText)}: use a sha256, sha384 or sha512 SRI string`,
    );
  }
  if (pinned.algorithm === sri.algorithm && pinned.digest !== sri.digest) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Refusing to download ${DYNAMODB_LOCAL_PACKAGE}@${DYNAMODB_LOCAL_PACKAGE_VERSION}: ` +
        `${metaUrl} publishes ${sri.algorithm}-${sri.digest} but zae-limiter expects ` +
        `${pinnedText}. Check your registry or proxy.`,
    );
  }
  const tarballUrl = new URL(tarball, metaUrl).href;
  const body = await get(tarballUrl, opts, "application/octet-stream");
  const hash = createHash(sri.algorithm);
  const pinnedHash = createHash(pinned.algorithm);
  const totalBytes = Number(body.headers.get("content-length")) || undefined;
  let receivedBytes = 0;
  const fh = await open(dest, "w");
  try {
    if (body.body) {
      for await (const chunk of body.body) {
        hash.update(chunk);
        pinnedHash.update(chunk);
        await fh.write(chunk);
        receivedBytes += chunk.byteLength;
        opts.onProgress?.({ receivedBytes, totalBytes, done: false });
      }
    }
  } catch (e) {
    if (e instanceof LocalDynamoError) throw e;
    throw new LocalDynamoError(
      "DOWNLOAD_FAILED",
      `Could not download DynamoDB Local: reading ${tarballUrl} failed: ${msg(e)}`,
      { cause: e },
    );
  } finally {
    await fh.close();
  }
  const actual = hash.digest("base64");
  if (actual !== sri.digest) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Integrity check failed for ${tarballUrl}: the registry publishes ` +
        `${sri.algorithm}-${sri.digest} but the download hashes to ${sri.algorithm}-${actual}. ` +
        `Nothing was unpacked; retry, or check your registry or proxy.`,
    );
  }
  const pinnedActual = pinnedHash.digest("base64");
  if (pinnedActual !== pinned.digest) {
    throw new LocalDynamoError(
      "INTEGRITY_MISMATCH",
      `Integrity check failed for ${tarballUrl}: zae-limiter expects ${pinnedText} but the ` +
        `download hashes to ${pinned.algorithm}-${pinnedActual}. Nothing was unpacked; check ` +
        `your registry or proxy.`,
    );
  }
  opts.onProgress?.({ receivedBytes, totalBytes, done: true });
  return pinnedText;
}
