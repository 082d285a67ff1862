/**
 * Small helpers shared by the DynamoDB Local modules; not part of the public API.
 *
 * @module
 */

import { access } from "node:fs/promises";
import process from "node:process";

/** The environment variable `name`, or `undefined` when it is unset or empty. */
export function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** Whether `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The message of an error, with its cause's message when it has one. */
export function msg(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? ` (${e.cause.message})` : "";
    return e.message + cause;
  }
  return String(e);
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether `p` settles within `ms` (the timer is cleared either way, so nothing lingers). */
export function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((done) => {
    const timer = setTimeout(() => done(false), ms);
    p.then(() => {
      clearTimeout(timer);
      done(true);
    });
  });
}
