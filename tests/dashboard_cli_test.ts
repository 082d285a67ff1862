/**
 * `zae-limiter dashboard` as a process: it refuses a non-loopback address without a token (exit
 * 2, one line, before any connection), serves the page and the API against DynamoDB Local on a
 * free port, answers only to loopback host names there, and stops cleanly on SIGTERM.
 */

import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { RateLimiter } from "../mod.ts";
import { freePort } from "../src/local/mod.ts";
import { cli, runCli } from "./_cli.ts";
import { startDashboard } from "./_dashboard.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const main = new URL("../cli/main.ts", import.meta.url).pathname;
/** `zae-limiter dashboard <args>` as its own process. */
const dashboardArgv = (
  ...args: string[]
) => [Deno.execPath(), "run", "-A", "--no-check", main, "dashboard", ...args];
/** Credentials and region for DynamoDB Local. */
const AWS_LOCAL = {
  AWS_ACCESS_KEY_ID: "local",
  AWS_SECRET_ACCESS_KEY: "local",
  AWS_REGION: "us-east-1",
};

/** A GET with a chosen Host header (fetch will not send one). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { Host: host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

Deno.test("dashboard refuses a non-loopback address without a token (exit 2)", async () => {
  const r = await cli(["dashboard", "--host", "0.0.0.0", "--table-name", "t_any"], {});
  assert.equal(r.code, 2);
  assert.equal(r.out, "");
  assert.match(r.err, /not a loopback address, without a token/);
  assert.equal(r.err.trim().split("\n").length, 1);
  // A token too short for the rule is refused too, naming the field (never echoing it).
  const weak = await cli([
    "dashboard",
    "--host",
    "0.0.0.0",
    "--token",
    "short",
    "--table-name",
    "t_any",
  ], {});
  assert.equal(weak.code, 2);
  assert.match(weak.err, /token/);
  assert.doesNotMatch(weak.err, /short/);
});

dynamoTest("dashboard serves the page and the API on DynamoDB Local, stops on SIGTERM", async (
  t,
  { ddb, client },
) => {
  const tableName = uniqueTableName("dash_cli");
  const limiter = new RateLimiter({ tableName, client, createTable: true });
  await limiter.createEntity({ entityId: "proj-cli" });
  await limiter.close();
  const port = await freePort();
  const server = await startDashboard(
    dashboardArgv(
      "--port",
      String(port),
      "--table-name",
      tableName,
      "--endpoint-url",
      ddb.endpoint,
    ),
    AWS_LOCAL,
  );
  let stopped = false;
  try {
    await t.step("it prints its loopback URL", () => {
      assert.equal(server.url, `http://127.0.0.1:${port}/`);
    });
    await t.step("/api/info and /api/tree answer from the table", async () => {
      const info = await (await fetch(`${server.url}api/info`)).json();
      assert.deepEqual(info, {
        version: "0.1.0",
        table: tableName,
        readOnly: false,
        tokenRequired: false,
      });
      const tree = await (await fetch(`${server.url}api/tree`)).json();
      assert.deepEqual(tree.roots.map((r: { entityId: string }) => r.entityId), ["proj-cli"]);
    });
    await t.step("the page is HTML with the Content-Security-Policy", async () => {
      const page = await fetch(server.url);
      assert.equal(page.status, 200);
      assert.match(page.headers.get("Content-Type") ?? "", /^text\/html/);
      assert.match(page.headers.get("Content-Security-Policy") ?? "", /script-src 'self'/);
      assert.match(await page.text(), /^<!doctype html>/i);
    });
    await t.step("another Host name (DNS rebinding) gets 403", async () => {
      assert.equal(await getWithHost(`${server.url}api/info`, `localhost:${port}`), 200);
      assert.equal(await getWithHost(`${server.url}api/info`, `evil.example:${port}`), 403);
    });
    await t.step("bound to another loopback address, its own URL is served", async () => {
      const other = await startDashboard(
        dashboardArgv(
          "--host",
          "127.0.0.2",
          "--port",
          "0",
          "--read-only",
          "--table-name",
          tableName,
          "--endpoint-url",
          ddb.endpoint,
        ),
        AWS_LOCAL,
      );
      try {
        const url = new URL(other.url);
        assert.equal(url.hostname, "127.0.0.2");
        const info = await fetch(`${other.url}api/info`);
        assert.equal(info.status, 200, await info.text());
        assert.equal(await getWithHost(`${other.url}api/info`, `localhost:${url.port}`), 200);
        assert.equal(await getWithHost(`${other.url}api/info`, `evil.example:${url.port}`), 403);
      } finally {
        other.child.kill("SIGTERM");
        await other.child.status;
      }
    });
    await t.step("SIGTERM stops it with exit code 0", async () => {
      server.child.kill("SIGTERM");
      const status = await server.child.status;
      stopped = true;
      assert.equal(status.code, 0, server.stderr());
      assert.match(server.stderr(), /Dashboard stopped/);
      await assert.rejects(fetch(`${server.url}api/info`));
    });
  } finally {
    if (!stopped) {
      server.child.kill("SIGKILL");
      await server.child.status;
    }
  }
});

Deno.test("dashboard --help lists its options", async () => {
  const help = await runCli(["dashboard", "--help"], {});
  assert.equal(help.code, 0, help.err);
  for (const option of ["--port", "--host", "--read-only", "--token", "--endpoint-url"]) {
    assert.ok(help.out.includes(option), option);
  }
});
