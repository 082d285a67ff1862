/**
 * The Java runtime DynamoDB Local runs on: which `java` to run, with which JVM options, and what
 * a failure to run it means.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { env, exists } from "./_util.ts";
import { LocalDynamoError } from "./errors.ts";

/** The JVM options used when `javaOptions` is not given: they start faster on small machines. */
export const DEFAULT_JAVA_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"];

const JAVA_HINT = "DynamoDB Local needs a Java runtime (17 or newer): install one " +
  "(e.g. `apt-get install openjdk-17-jre-headless` or `brew install openjdk`), " +
  "set JAVA_HOME, or pass javaPath.";

/** The `java` to run: `javaPath`, else `$JAVA_HOME/bin/java`, else `java` on the PATH. */
export async function resolveJava(javaPath: string | undefined): Promise<string> {
  if (javaPath !== undefined) {
    if ((javaPath.includes("/") || javaPath.includes("\\")) && !(await exists(javaPath))) {
      throw new LocalDynamoError("JAVA_NOT_FOUND", `Java not found at ${javaPath}. ${JAVA_HINT}`);
    }
    return javaPath;
  }
  const home = env("JAVA_HOME");
  if (home) {
    const java = join(home, "bin", process.platform === "win32" ? "java.exe" : "java");
    if (!(await exists(java))) {
      throw new LocalDynamoError(
        "JAVA_NOT_FOUND",
        `JAVA_HOME is ${home} but ${java} does not exist: fix or unset JAVA_HOME. ${JAVA_HINT}`,
      );
    }
    return java;
  }
  return "java";
}

/** The error for a `java` that could not be run. */
export function javaSpawnError(java: string, e: unknown): LocalDynamoError {
  const code = (e as { code?: string }).code;
  if (code === "ENOENT") {
    return new LocalDynamoError(
      "JAVA_NOT_FOUND",
      java === "java"
        ? `Java was not found on the PATH. ${JAVA_HINT}`
        : `Java not found at ${java}. ${JAVA_HINT}`,
      { cause: e },
    );
  }
  if (code === "EACCES") {
    return new LocalDynamoError(
      "JAVA_NOT_FOUND",
      `Java at ${java} is not executable. ${JAVA_HINT}`,
      { cause: e },
    );
  }
  return new LocalDynamoError(
    "EARLY_EXIT",
    `Could not start ${java}: ${e instanceof Error ? e.message : String(e)}`,
    { cause: e },
  );
}
