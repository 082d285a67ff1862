/**
 * Parses a limits file (YAML, with positions) into a {@link LimitsFile}, or throws a
 * {@link LimitsFileError} naming the file, line and field of every problem found.
 *
 * @module
 */

import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { ValidationError } from "../error_base.ts";
import type { Limit } from "../limit.ts";
import {
  fieldKey,
  validateEntityId,
  validateLimitName,
  validateMetadata,
  validateResource,
} from "../validate.ts";
import { checkParentsInFile } from "./graph.ts";
import {
  type EntitySpec,
  type FileProblem,
  type LimitsFile,
  LimitsFileError,
  type LimitSpec,
  specToLimit,
} from "./model.ts";

/** The most problems one error lists. */
const MAX_PROBLEMS = 50;

type Raw = Node | null | undefined;

interface Entry {
  key: string;
  value: Raw;
  line: number;
  field: string;
}

/**
 * Parses and checks a limits file. Nothing is read from the table: rules that need it (a parent
 * the file does not declare) are checked by `planLimits`.
 *
 * @param text The YAML text.
 * @param path The file's name, as errors show it. @default "limits.yaml"
 *
 * @example
 * ```ts
 * import { LimitsFileError, parseLimitsFile } from "./mod.ts";
 * const file = parseLimitsFile(`
 * entities:
 *   key-1:
 *     limits:
 *       gpt-4: [{ name: tpm, rate: 10000, per: minute, burst: 15000 }]
 * `);
 * console.assert(file.entities.get("key-1")?.limits.get("gpt-4")?.[0].capacity === 15000);
 * try {
 *   parseLimitsFile("entities:\n  key-1:\n    cascde: true\n", "a.yaml");
 * } catch (err) {
 *   console.assert(err instanceof LimitsFileError && err.message.startsWith("a.yaml:3: "));
 * }
 * ```
 */
export function parseLimitsFile(text: string, path = "limits.yaml"): LimitsFile {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: false });
  const problems: FileProblem[] = [];
  const lines = new Map<string, number>();
  const lineAt = (offset: number) => lc.linePos(offset).line;
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      problems.push({ line: lineAt(e.pos[0]), field: "(yaml)", value: e.code, rule: e.message });
    }
    throw new LimitsFileError(path, problems.slice(0, MAX_PROBLEMS));
  }
  const problem = (line: number, field: string, value: unknown, rule: string) => {
    problems.push({ line, field, value, rule });
  };
  const resolve = (node: Raw): Raw => (isAlias(node) ? resolve(node.resolve(doc) as Raw) : node);
  const lineOf = (node: Raw, fallback: number) => node?.range ? lineAt(node.range[0]) : fallback;
  const scalar = (node: Raw): unknown => {
    const n = resolve(node);
    if (n === null || n === undefined) return null;
    return isScalar(n) ? n.value : n.toJSON();
  };

  /** A mapping's entries; `null` when `node` is not a mapping (reported). */
  const entries = (
    node: Raw,
    field: string,
    line: number,
    allowed: string[] | undefined,
    what = "key",
  ): Entry[] | null => {
    const n = resolve(node);
    if (!isMap(n)) {
      problem(lineOf(n, line), field, scalar(n), "must be a mapping");
      return null;
    }
    const out: Entry[] = [];
    const seen = new Map<string, number>();
    for (const pair of n.items) {
      const keyNode = resolve(pair.key as Raw);
      const keyLine = lineOf(keyNode, line);
      const key = scalar(keyNode);
      if (typeof key !== "string") {
        problem(keyLine, field, key, `${what}s must be strings`);
        continue;
      }
      const at = field ? `${field}.${fieldKey(key)}` : fieldKey(key);
      if (seen.has(key)) {
        problem(keyLine, at, key, `duplicate ${what} (first at line ${seen.get(key)})`);
        continue;
      }
      seen.set(key, keyLine);
      if (allowed && !allowed.includes(key)) {
        problem(keyLine, at, key, `unknown key (expected one of: ${allowed.join(", ")})`);
        continue;
      }
      lines.set(at, keyLine);
      out.push({ key, value: pair.value as Raw, line: keyLine, field: at });
    }
    return out;
  };

  /** Runs a check that throws a ValidationError, as a problem of `field`. */
  const check = <T>(line: number, field: string, value: unknown, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      problem(line, field, value, err.rule);
      return undefined;
    }
  };

  const limitList = (node: Raw, field: string, line: number): Limit[] | undefined => {
    const n = resolve(node);
    if (!isSeq(n)) {
      problem(lineOf(n, line), field, scalar(n), "must be a list of limits");
      return undefined;
    }
    if (n.items.length === 0) {
      problem(lineOf(n, line), field, [], "must hold at least one limit (omit it to have none)");
      return undefined;
    }
    if (n.items.length > 32) {
      problem(lineOf(n, line), field, n.items.length, "must hold at most 32 limits");
      return undefined;
    }
    const out: Limit[] = [];
    const names = new Map<string, number>();
    let bad = false;
    n.items.forEach((item, i) => {
      const at = `${field}[${i}]`;
      const itemLine = lineOf(resolve(item as Raw), line);
      const fields = entries(item as Raw, at, itemLine, [
        "name",
        "rate",
        "per",
        "burst",
        "soft",
        "schedule",
        "quota",
        "reset",
        "resetAfter",
        "concurrent",
      ]);
      if (!fields) return void (bad = true);
      const raw: Record<string, unknown> = {};
      const lineOfField: Record<string, number> = {};
      for (const e of fields) {
        raw[e.key] = scalar(e.value);
        lineOfField[e.key] = e.line;
      }
      let ok = true;
      // A quota (`quota`, `reset` or `resetAfter`), a concurrent limit (`concurrent`) or a token
      // bucket (`rate` per `per`).
      const required = "quota" in raw || "concurrent" in raw ? ["name"] : ["name", "rate", "per"];
      for (const key of required) {
        if (!(key in raw)) {
          problem(itemLine, `${at}.${key}`, undefined, "is required");
          ok = false;
        }
      }
      if (!ok) return void (bad = true);
      if (typeof raw.name === "string" && names.has(raw.name)) {
        problem(
          lineOfField.name,
          `${at}.name`,
          raw.name,
          `must be unique in the list (also at line ${names.get(raw.name)})`,
        );
        return void (bad = true);
      }
      const spec = raw as unknown as LimitSpec;
      const limit = check(lineOfField.name, `${at}.name`, raw.name, () =>
        validateLimitName(raw.name)) &&
        checkSpec(spec, at, lineOfField);
      if (!limit) return void (bad = true);
      names.set(limit.name, lineOfField.name);
      out.push(limit);
    });
    return bad ? undefined : out;
  };

  const checkSpec = (spec: LimitSpec, at: string, lineOf: Record<string, number>) => {
    try {
      return specToLimit(spec);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      // A schedule's problem names its path inside it (`schedule.windows[0].rate`).
      const top = err.field.split(/[.[]/)[0];
      const key = top in lineOf
        ? top
        : "quota" in lineOf
        ? "quota"
        : "concurrent" in lineOf
        ? "concurrent"
        : "rate";
      const raw = spec as unknown as Record<string, unknown>;
      // A field the spec leaves out (a quota's missing reset) is shown as such, on the name's line.
      const value = key === top ? valueAt(raw, err.field) : "quota" in raw ? undefined : raw[key];
      problem(lineOf[key], `${at}.${err.field}`, value, err.rule);
      return undefined;
    }
  };

  const file: LimitsFile = { path, resources: new Map(), entities: new Map(), lines };
  const root = resolve(doc.contents as Raw);
  const top = root === null || (isScalar(root) && root.value === null)
    ? []
    : entries(root, "", 1, ["version", "system", "resources", "entities"]);
  for (const e of top ?? []) {
    if (e.key === "version") {
      const v = scalar(e.value);
      if (v !== 1) problem(e.line, "version", v, "must be 1 (the file format's version)");
    } else if (e.key === "system") {
      const fields = entries(e.value, "system", e.line, ["limits"]);
      const limits = fields?.find((f) => f.key === "limits");
      if (fields && !limits) problem(e.line, "system.limits", undefined, "is required");
      if (limits) file.system = limitList(limits.value, limits.field, limits.line);
    } else if (e.key === "resources") {
      for (const r of entries(e.value, "resources", e.line, undefined, "resource") ?? []) {
        if (!check(r.line, r.field, r.key, () => validateResource(r.key, r.field))) continue;
        const fields = entries(r.value, r.field, r.line, ["limits"]);
        const limits = fields?.find((f) => f.key === "limits");
        if (fields && !limits) problem(r.line, `${r.field}.limits`, undefined, "is required");
        const list = limits && limitList(limits.value, limits.field, limits.line);
        if (list) file.resources.set(r.key, list);
      }
    } else {
      for (const x of entries(e.value, "entities", e.line, undefined, "entity") ?? []) {
        if (!check(x.line, x.field, x.key, () => validateEntityId(x.key, x.field))) continue;
        const spec = entity(x);
        if (spec) file.entities.set(x.key, spec);
      }
    }
  }

  function entity(x: Entry): EntitySpec | undefined {
    const spec: EntitySpec = { cascade: false, limits: new Map() };
    const value = resolve(x.value);
    if (value === null || value === undefined || (isScalar(value) && value.value === null)) {
      return spec; // `key-1:` alone: an entity with no parent and no limits
    }
    const allowed = ["name", "parent", "cascade", "metadata", "limits"];
    const fields = entries(value, x.field, x.line, allowed);
    if (!fields) return undefined;
    for (const f of fields) {
      const v = scalar(f.value);
      if (f.key === "name") {
        if (typeof v !== "string" || v.length > 1024) {
          problem(f.line, f.field, v, "must be a string of at most 1024 characters");
        } else spec.name = v;
      } else if (f.key === "parent") {
        const parent = check(f.line, f.field, v, () => validateEntityId(v, f.field));
        if (parent !== undefined) spec.parentId = parent;
      } else if (f.key === "cascade") {
        if (typeof v !== "boolean") problem(f.line, f.field, v, "must be true or false");
        else spec.cascade = v;
      } else if (f.key === "metadata") {
        const m = check(f.line, f.field, v, () => validateMetadata(v));
        if (m) spec.metadata = m;
      } else {
        for (const r of entries(f.value, f.field, f.line, undefined, "resource") ?? []) {
          const ok = r.key === "*" ||
            check(r.line, r.field, r.key, () => validateResource(r.key, r.field)) !== undefined;
          const list = ok ? limitList(r.value, r.field, r.line) : undefined;
          if (list) spec.limits.set(r.key, list);
        }
      }
    }
    return spec;
  }

  problems.push(...checkParentsInFile(file));
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line);
    throw new LimitsFileError(path, problems.slice(0, MAX_PROBLEMS));
  }
  return file;
}

/** The value at a path such as `schedule.windows[0].rate` inside `root` (undefined: none). */
function valueAt(root: unknown, path: string): unknown {
  let at = root;
  for (const step of path.split(/[.[\]]+/).filter((x) => x !== "")) {
    if (typeof at !== "object" || at === null) return undefined;
    at = (at as Record<string, unknown>)[step];
  }
  return at;
}
