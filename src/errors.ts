/**
 * Errors thrown by zae-limiter. Every error extends {@link ZaeLimiterError}.
 *
 * @module
 */

import { showValue, ValidationError, ZaeLimiterError } from "./error_base.ts";

export { showValue, ValidationError, ZaeLimiterError };
export {
  type LimitStatus,
  type LimitStatusBody,
  RateLimitExceeded,
  type RateLimitExceededBody,
} from "./exceeded.ts";

/**
 * DynamoDB could not be reached, timed out or throttled past the retries within the deadline,
 * and the call's failure mode is FAIL_CLOSED. `cause` holds the last underlying error.
 *
 * @example
 * ```ts
 * import { RateLimiterUnavailable } from "./errors.ts";
 * const e = new RateLimiterUnavailable("acquire", new Error("ECONNREFUSED"));
 * console.assert(e.message.includes("acquire"));
 * ```
 */
export class RateLimiterUnavailable extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "RateLimiterUnavailable";
  /**
   * Builds the error for an operation that could not reach DynamoDB.
   *
   * @param operation What was being done, e.g. `"acquire"`.
   * @param cause The underlying error, kept as `cause`.
   */
  constructor(operation: string, cause?: unknown) {
    const why = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause ?? "");
    super(`Rate limiter unavailable during ${operation}${why ? ` (${why})` : ""}`, { cause });
  }
}

/**
 * The limiter is set up wrong: the table does not exist or has other keys, access is denied, the
 * credentials are refused, the region is missing, DynamoDB refused the request as invalid, or the
 * table's schema version is older than an operation needs (`schema-outdated`: run `zae-limiter
 * upgrade`) or newer than this library knows (`schema-newer`). This
 * is not an outage: it is raised at once, in both failure modes, and never turned into a pass.
 * `kind` names what is wrong; the message also says what to do.
 *
 * @example
 * ```ts
 * import { ConfigurationError } from "./errors.ts";
 * const e = new ConfigurationError("table-not-found", 'Table "t" does not exist');
 * console.assert(e.kind === "table-not-found");
 * ```
 */
export class ConfigurationError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "ConfigurationError";
  /** What is wrong, as a stable word a program can test. */
  readonly kind: ConfigurationErrorKind;

  /**
   * Builds the error.
   *
   * @param kind What is wrong.
   * @param message What is wrong and what to do, on one line.
   * @param cause The underlying SDK error, kept as `cause`.
   */
  constructor(kind: ConfigurationErrorKind, message: string, cause?: unknown) {
    super(message, { cause });
    this.kind = kind;
  }
}

/** The kinds of {@link ConfigurationError}. */
export type ConfigurationErrorKind =
  | "table-not-found"
  | "table-schema"
  | "access-denied"
  | "bad-credentials"
  | "region-missing"
  | "invalid-request"
  | "schema-outdated"
  | "schema-newer";

/**
 * A lease was used after `commit` or `rollback`.
 *
 * @example
 * ```ts
 * import { LeaseClosedError } from "./errors.ts";
 * console.assert(new LeaseClosedError("committed").message.includes("committed"));
 * ```
 */
export class LeaseClosedError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LeaseClosedError";
  /**
   * Builds the error for a lease closed in the given way.
   *
   * @param state How the lease was closed.
   * @param action What was asked of it (`adjusted`, `consumed from`, `released`).
   */
  constructor(state: "committed" | "rolled back", action = "adjusted") {
    super(`The lease is already ${state}; it cannot be ${action}`);
  }
}

/**
 * A lease held a slot of a concurrent limit (`Limit.concurrent`) longer than its
 * `leaseTimeoutMs`, and another acquire reclaimed the slot as a crashed process's. Thrown by
 * `commit` after its token adjustments were written all the same (the usage happened); the lease
 * is closed. A rollback of such a lease throws nothing.
 *
 * @example
 * ```ts
 * import { LeaseExpiredError } from "./errors.ts";
 * const err = new LeaseExpiredError("key-1", "llm", ["streams"]);
 * console.assert(err.limitNames[0] === "streams" && err.message.includes("leaseTimeoutMs"));
 * ```
 */
export class LeaseExpiredError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "LeaseExpiredError";
  /** The entity of the bucket. */
  readonly entityId: string;
  /** The resource of the bucket. */
  readonly resource: string;
  /** The concurrent limits whose slot was gone. */
  readonly limitNames: string[];
  /**
   * Builds the error.
   *
   * @param entityId The entity of the bucket.
   * @param resource The resource of the bucket.
   * @param limitNames The concurrent limits whose slot was gone.
   */
  constructor(entityId: string, resource: string, limitNames: string[]) {
    super(
      `The lease on ${entityId}/${resource} outlived its leaseTimeoutMs: its slot of ` +
        `${limitNames.join(", ")} had expired and was taken back (its tokens were still written)`,
    );
    this.entityId = entityId;
    this.resource = resource;
    this.limitNames = limitNames;
  }
}

/**
 * The entity does not exist.
 *
 * @example
 * ```ts
 * import { EntityNotFoundError } from "./errors.ts";
 * console.assert(new EntityNotFoundError("proj-1").entityId === "proj-1");
 * ```
 */
export class EntityNotFoundError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "EntityNotFoundError";
  /** The id that was not found. */
  readonly entityId: string;
  /**
   * Builds the error for a missing entity.
   *
   * @param entityId The id that was not found.
   */
  constructor(entityId: string) {
    super(`Entity not found: ${showValue(entityId)}`);
    this.entityId = entityId;
  }
}

/**
 * An entity with this id exists already.
 *
 * @example
 * ```ts
 * import { EntityExistsError } from "./errors.ts";
 * console.assert(new EntityExistsError("key-1").entityId === "key-1");
 * ```
 */
export class EntityExistsError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "EntityExistsError";
  /** The id that exists. */
  readonly entityId: string;
  /**
   * Builds the error for an entity id already taken.
   *
   * @param entityId The id that exists.
   */
  constructor(entityId: string) {
    super(`Entity already exists: ${showValue(entityId)}`);
    this.entityId = entityId;
  }
}

/**
 * An acquire (or `available` / `timeUntilAvailable`) on a switched-off entity or resource: an
 * operator's decision, not a lack of tokens. Thrown before any bucket write, in both failure
 * modes, and never retried; the HTTP helpers answer 403. `disabled` says what is switched off:
 * the entity itself, its parent (a disabled parent switches off its children), or the resource.
 *
 * @example
 * ```ts
 * import { EntityDisabledError } from "./errors.ts";
 * const e = new EntityDisabledError("key-1", "gpt-4", "parent", "proj-1");
 * console.assert(e.disabledId === "proj-1" && e.message.includes("parent"));
 * console.assert(e.asDict().error === "entity_disabled");
 * ```
 */
export class EntityDisabledError extends ZaeLimiterError {
  /** The class name, kept in minified bundles. */
  override readonly name: string = "EntityDisabledError";
  /** The entity of the call. */
  readonly entityId: string;
  /** The resource of the call (its primary one, when it names `also`). */
  readonly resource: string;
  /** What is switched off. */
  readonly disabled: "entity" | "parent" | "resource";
  /** The id of what is switched off: the entity's, its parent's, or the resource. */
  readonly disabledId: string;

  /**
   * Builds the error.
   *
   * @param entityId The entity of the call.
   * @param resource The resource of the call.
   * @param disabled What is switched off.
   * @param disabledId Its id (the entity's, the parent's, or the resource: the call's, or one
   *   of its `also` resources).
   */
  constructor(
    entityId: string,
    resource: string,
    disabled: "entity" | "parent" | "resource",
    disabledId: string,
  ) {
    const what = disabled === "resource"
      ? `resource ${showValue(disabledId)} is disabled`
      : disabled === "parent"
      ? `parent ${showValue(disabledId)} of entity ${showValue(entityId)} is disabled`
      : `entity ${showValue(entityId)} is disabled`;
    super(`Refused: ${what}`);
    this.entityId = entityId;
    this.resource = resource;
    this.disabled = disabled;
    this.disabledId = disabledId;
  }

  /** The JSON body of the 403 response. */
  asDict(): {
    error: "entity_disabled";
    message: string;
    entity_id: string;
    resource: string;
    disabled: "entity" | "parent" | "resource";
    disabled_id: string;
  } {
    return {
      error: "entity_disabled",
      message: this.message,
      entity_id: this.entityId,
      resource: this.resource,
      disabled: this.disabled,
      disabled_id: this.disabledId,
    };
  }
}
