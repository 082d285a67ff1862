/**
 * The library's version: one constant for the CLI's `--version`, the stack tag a deploy sets and
 * the dashboard's `GET /api/info`; a test keeps it in step with deno.json.
 *
 * @module
 */

/**
 * This release's version, as deno.json and package.json give it.
 *
 * @example
 * ```ts
 * import { LIBRARY_VERSION } from "./version.ts";
 * console.assert(/^\d+\.\d+\.\d+/.test(LIBRARY_VERSION));
 * ```
 */
export const LIBRARY_VERSION = "0.1.0";
