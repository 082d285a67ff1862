/**
 * The key schema of one namespace. The default namespace writes the keys of src/keys.ts as they
 * are; a named namespace prefixes every partition key and every GSI partition key with
 * `NS#{namespace}#` (`NS#billing#ENTITY#key-1`, GSI1 `NS#billing#PARENT#p`, GSI2
 * `NS#billing#RESOURCE#r`, GSI3 `NS#billing#ENTITIES`, `NS#billing#SYSTEM`, `NS#billing#AUDIT`).
 * Sort keys are the same in every namespace.
 *
 * A namespace name has no `#`, and no id, resource or limit name has one either, so a partition
 * key tells its namespace and its item apart, and no input of one namespace can address another's
 * items. No default-namespace key starts with `NS#`.
 *
 * @module
 */

import { ValidationError } from "./error_base.ts";
import * as keys from "./keys.ts";

/** A namespace name: a lower-case letter, then lower-case letters, digits, `-`, `_`; ≤ 64. */
const NAME = /^[a-z][a-z0-9_-]{0,63}$/;

/** The name that denotes the default namespace (un-prefixed keys). */
export const DEFAULT_NAMESPACE = "default";

/** Prefix of every namespaced partition key. */
export const NAMESPACE_PREFIX = "NS#";

/** Partition key of the namespace registry (default key space): `SK = {name}`. */
export const NAMESPACES_PK = "NAMESPACES";

/**
 * Checks a namespace name: a lower-case letter, then lower-case letters, digits, `-` or `_`, at
 * most 64 characters. `undefined` and `"default"` are the default namespace.
 *
 * @example
 * ```ts
 * import { validateNamespace } from "./keyspace.ts";
 * console.assert(validateNamespace("billing") === "billing");
 * try {
 *   validateNamespace("Billing#1");
 * } catch (err) {
 *   console.assert((err as Error).name === "ValidationError");
 * }
 * ```
 */
export function validateNamespace(value: unknown, field = "namespace"): string {
  if (typeof value !== "string" || !NAME.test(value)) {
    throw new ValidationError(
      field,
      value,
      "must be a lower-case letter followed by lower-case letters, digits, - or _, " +
        "at most 64 characters",
    );
  }
  return value;
}

/**
 * The keys of one namespace: every partition key (and GSI partition key) the library writes or
 * reads is built here. Methods are named like the functions of src/keys.ts, so a call
 * `keys.entityPk(x)` becomes `space.entityPk(x)`.
 *
 * @example
 * ```ts
 * import { KeySpace } from "./keyspace.ts";
 * const billing = KeySpace.of("billing");
 * console.assert(billing.entityPk("key-1") === "NS#billing#ENTITY#key-1");
 * console.assert(KeySpace.DEFAULT.entityPk("key-1") === "ENTITY#key-1");
 * console.assert(billing.entityIdOf("ENTITY#key-1") === undefined);
 * console.assert(KeySpace.parse("NS#billing#ENTITY#key-1")?.space.namespace === "billing");
 * ```
 */
export class KeySpace {
  /** The default namespace: today's keys, un-prefixed. */
  static readonly DEFAULT: KeySpace = new KeySpace(undefined);

  /** The namespace's name; `undefined` for the default namespace. */
  readonly namespace: string | undefined;
  /** What every partition key of the namespace starts with (`""` for the default one). */
  readonly prefix: string;

  private constructor(namespace: string | undefined) {
    this.namespace = namespace;
    this.prefix = namespace === undefined ? "" : `${NAMESPACE_PREFIX}${namespace}#`;
  }

  /**
   * The key space of a namespace; `undefined` or `"default"` gives {@link KeySpace.DEFAULT}.
   * @throws {ValidationError} When the name breaks the rule of {@link validateNamespace}.
   */
  static of(namespace?: string, field = "namespace"): KeySpace {
    if (namespace === undefined) return KeySpace.DEFAULT;
    validateNamespace(namespace, field);
    return namespace === DEFAULT_NAMESPACE ? KeySpace.DEFAULT : new KeySpace(namespace);
  }

  /**
   * The key space a partition key belongs to and the key within it (`NS#billing#ENTITY#k` →
   * billing, `ENTITY#k`); `undefined` when the key names a malformed namespace.
   */
  static parse(pk: string): { space: KeySpace; local: string } | undefined {
    if (!pk.startsWith(NAMESPACE_PREFIX)) return { space: KeySpace.DEFAULT, local: pk };
    const end = pk.indexOf("#", NAMESPACE_PREFIX.length);
    if (end < 0) return undefined;
    const name = pk.slice(NAMESPACE_PREFIX.length, end);
    if (!NAME.test(name) || name === DEFAULT_NAMESPACE) return undefined;
    return { space: new KeySpace(name), local: pk.slice(end + 1) };
  }

  /** The namespace's name as shown (`"default"` for the default one). */
  get name(): string {
    return this.namespace ?? DEFAULT_NAMESPACE;
  }

  /** Partition key of an entity's items. */
  entityPk(entityId: string): string {
    return this.prefix + keys.entityPk(entityId);
  }

  /** Entity id of one of this namespace's partition keys, or `undefined`. */
  entityIdOf(pk: string): string | undefined {
    if (!pk.startsWith(this.prefix)) return undefined;
    const local = pk.slice(this.prefix.length);
    // The default space's keys never start with NS# (a namespaced key is not the default's).
    if (this.prefix === "" && local.startsWith(NAMESPACE_PREFIX)) return undefined;
    return keys.entityIdOf(local);
  }

  /** The key of an entity's item: `PK` of `entityId`, and `sk`. */
  itemKey(entityId: string, sk: string): { PK: { S: string }; SK: { S: string } } {
    return { PK: { S: this.entityPk(entityId) }, SK: { S: sk } };
  }

  /** GSI1 partition key of a parent's children. */
  parentKey(parentId: string): string {
    return this.prefix + keys.parentKey(parentId);
  }

  /** GSI2 partition key of a resource's buckets. */
  resourceKey(resource: string): string {
    return this.prefix + keys.resourceKey(resource);
  }

  /** Partition key of the system items (defaults, controls). */
  systemPk(): string {
    return `${this.prefix}SYSTEM`;
  }

  /** The key of a system item: the system partition and `sk`. */
  systemKey(sk: string): { PK: { S: string }; SK: { S: string } } {
    return { PK: { S: this.systemPk() }, SK: { S: sk } };
  }

  /** Partition key of the audit events. */
  auditPk(): string {
    return `${this.prefix}AUDIT`;
  }

  /** GSI1 partition key of the audit events of a scope (`AUDIT#ENTITY#id`, …). */
  auditScopePk(scopeKey: string): string {
    return `${this.prefix}AUDIT#${scopeKey}`;
  }

  /** GSI3 partition key of the entity listing. */
  entitiesKey(): string {
    return `${this.prefix}ENTITIES`;
  }

  // Sort keys are the same in every namespace; here too, so that a conversion is mechanical.

  /** Sort key of a bucket (as `keys.bucketSk`). */
  bucketSk(resource: string): string {
    return keys.bucketSk(resource);
  }

  /** Sort key of stored limits (as `keys.limitSk`). */
  limitSk(resource?: string): string {
    return keys.limitSk(resource);
  }

  /** GSI1 sort key of a child (as `keys.childKey`). */
  childKey(entityId: string): string {
    return keys.childKey(entityId);
  }
}
