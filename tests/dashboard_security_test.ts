/**
 * The dashboard's `Host` defence and input bounds on DynamoDB Local, through
 * `createDashboard(...).fetch` as `Deno.serve` hands it requests (the URL's host is the `Host`
 * header): with neither a token nor `allowedHosts` only loopback names are answered, so a
 * DNS-rebinding page can neither read nor write; `allowedHosts` replaces that list and a token
 * lifts it. Beside them, unit tests of the pure checks (`hostAllowed`, `loopbackHosts`), the
 * bounded read of a chunked body, and the limit form's number rule.
 */

import assert from "node:assert/strict";
import { Limit, RateLimiter } from "../mod.ts";
import type { ErrorView } from "../src/dashboard/api_types.ts";
import { createDashboard, type Dashboard } from "../src/dashboard/mod.ts";
import {
  hostAllowed,
  loopbackHostRequest,
  loopbackHosts,
  requestHost,
} from "../src/dashboard/security.ts";
import { numberField } from "../src/dashboard/ui/format.ts";
import { dynamoTest, uniqueTableName } from "./_dynamo.ts";

const TOKEN = "security-token-0123456789abcdef";

/** A request as `Deno.serve` builds it for a client that sent `Host: host`. */
function at(host: string, path = "/", init: RequestInit = {}): Request {
  const headers = new Headers(init.headers);
  headers.set("Host", host);
  return new Request(`http://${host}${path}`, { ...init, headers });
}

/** A change as a page served from `host` sends it: its own origin, JSON. */
function put(host: string, path: string, body: unknown, headers: HeadersInit = {}): Request {
  return at(host, path, {
    method: "PUT",
    headers: {
      Origin: `http://${host}`,
      "Content-Type": "application/json",
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

async function status(dashboard: Dashboard, request: Request): Promise<number> {
  const r = await dashboard.fetch(request);
  await r.body?.cancel();
  return r.status;
}

async function errorOf(response: Promise<Response>, expected: number): Promise<ErrorView> {
  const r = await response;
  const body = await r.json() as { error: ErrorView };
  assert.equal(r.status, expected, JSON.stringify(body));
  return body.error;
}

Deno.test("Host checks: requestHost, hostAllowed, loopbackHosts (pure)", async (t) => {
  const host = (h: string, url = "http://x/") =>
    requestHost(new Request(url, { headers: { Host: h } }));
  await t.step("requestHost: name and port; the scheme's port when none is sent", () => {
    assert.deepEqual(host("LOCALHOST:8787"), { name: "localhost", port: 8787 });
    assert.deepEqual(host("localhost"), { name: "localhost", port: 80 });
    assert.deepEqual(host("localhost", "https://x/"), { name: "localhost", port: 443 });
    assert.deepEqual(host("[::1]:9000"), { name: "[::1]", port: 9000 });
    assert.deepEqual(host("[::1]"), { name: "[::1]", port: 80 });
    for (const bad of ["::1", "a:b", "a:99999", "[::1", "x:1:2", ""]) {
      assert.equal(host(bad), undefined, bad);
    }
  });
  await t.step("hostAllowed: host:port exactly, a name alone on any port", () => {
    const allowed = ["127.0.0.1:8787", "Localhost:8787", "dash.internal", "[::1]:8787"];
    const ok = (h: string) => hostAllowed(at(h), allowed);
    assert.ok(ok("127.0.0.1:8787") && ok("localhost:8787") && ok("LOCALHOST:8787"));
    assert.ok(ok("[::1]:8787") && ok("dash.internal:1") && ok("dash.internal"));
    assert.ok(!ok("127.0.0.1:8788") && !ok("localhost") && !ok("evil.example:8787"));
    assert.ok(!ok("127.0.0.1.evil.example:8787") && !ok("dash.internal.evil.example"));
    // Port 80: the browser sends no port.
    assert.ok(hostAllowed(at("localhost"), ["localhost:80"]));
    assert.ok(hostAllowed(at("localhost:80"), ["localhost:80"]));
    assert.ok(!hostAllowed(at("localhost"), ["localhost:8080"]));
    assert.ok(!hostAllowed(at("localhost"), []));
  });
  await t.step("loopbackHosts: the loopback names and the address bound", () => {
    assert.deepEqual(loopbackHosts("127.0.0.1", 8787), [
      "127.0.0.1:8787",
      "localhost:8787",
      "[::1]:8787",
    ]);
    assert.deepEqual(loopbackHosts("127.0.0.2", 8787), [
      "127.0.0.1:8787",
      "localhost:8787",
      "[::1]:8787",
      "127.0.0.2:8787",
    ]);
    assert.deepEqual(loopbackHosts("::1", 5000), [
      "127.0.0.1:5000",
      "localhost:5000",
      "[::1]:5000",
    ]);
    assert.equal(loopbackHosts("0.0.0.0", 8787), undefined);
    assert.equal(loopbackHosts("192.168.1.4", 8787), undefined);
    // The server's own URL is served, on port 80 too (where the browser sends no port).
    const bound = loopbackHosts("127.0.0.2", 8787)!;
    assert.ok(hostAllowed(at("127.0.0.2:8787"), bound));
    const on80 = loopbackHosts("127.0.0.1", 80)!;
    assert.ok(hostAllowed(at("127.0.0.1"), on80) && hostAllowed(at("localhost"), on80));
    assert.ok(!hostAllowed(at("evil.example"), on80));
  });
  await t.step("loopbackHostRequest: loopback names on any port, nothing else", () => {
    for (const h of ["localhost", "localhost:3000", "127.0.0.1:8787", "127.9.8.7:1", "[::1]:80"]) {
      assert.ok(loopbackHostRequest(at(h)), h);
    }
    for (const h of ["evil.example:8787", "127.0.0.1.nip.io:8787", "0.0.0.0:8787", "[::2]:8787"]) {
      assert.ok(!loopbackHostRequest(at(h)), h);
    }
  });
});

Deno.test("the limit form sends plain decimals as numbers, anything else as text", () => {
  assert.equal(numberField(" 150 "), 150);
  assert.equal(numberField("2.5"), 2.5);
  assert.equal(numberField("007"), 7);
  assert.equal(numberField(""), null);
  for (const text of ["0x10", "0b11", "0o7", "1e3", "-5", "+5", "1,000", "1.", ".5", "Infinity"]) {
    assert.equal(numberField(text), text, text);
  }
});

dynamoTest("dashboard Host defence and body bound on DynamoDB Local", async (t, { client }) => {
  const tableName = uniqueTableName("dash_sec");
  const limiter = new RateLimiter({ tableName, client, createTable: true, timeoutMs: 10_000 });
  const rpm = (n: number) => Limit.perMinute("rpm", n);
  const limitsOf = async () =>
    (await limiter.getLimits({ entityId: "key-1" })).map((l) => l.capacity);
  try {
    await limiter.createEntity({ entityId: "key-1" });
    await limiter.setLimits({ entityId: "key-1", limits: [rpm(10)] });

    await t.step("by default a rebinding Host reads nothing and writes nothing", async () => {
      const dashboard = createDashboard({ limiter, log: () => {} });
      const evil = "evil.example:8787";
      for (const path of ["/", "/app.js", "/api/info", "/api/tree", "/api/entities/key-1"]) {
        assert.equal(await status(dashboard, at(evil, path)), 403, path);
      }
      const write = await errorOf(
        dashboard.fetch(put(evil, "/api/entities/key-1/limits", {
          resource: "*",
          limits: [rpm(999).toJSON()],
        })),
        403,
      );
      assert.match(write.message, /host name/);
      // The same names the Host check knows but with an attacker's suffix, or no name at all.
      for (const h of ["localhost.evil.example:8787", "127.0.0.1.nip.io:8787", "0.0.0.0:8787"]) {
        assert.equal(await status(dashboard, at(h, "/api/info")), 403, h);
      }
      assert.deepEqual(await limitsOf(), [10]);
      // Read-only changes nothing: the host is refused before anything else.
      const readOnly = createDashboard({ limiter, readOnly: true, log: () => {} });
      assert.equal(await status(readOnly, at(evil, "/api/entities/key-1")), 403);
    });

    await t.step("by default loopback names are served, on any port", async () => {
      const dashboard = createDashboard({ limiter, log: () => {} });
      for (
        const h of ["127.0.0.1:8787", "localhost:3000", "[::1]:8787", "127.0.0.2:9", "localhost"]
      ) {
        assert.equal(await status(dashboard, at(h, "/api/info")), 200, h);
        assert.equal(await status(dashboard, at(h, "/")), 200, h);
      }
      const stored = await dashboard.fetch(
        put("localhost:8787", "/api/entities/key-1/limits", {
          resource: "*",
          limits: [rpm(20).toJSON()],
        }),
      );
      assert.equal(stored.status, 200, await stored.text());
      assert.deepEqual(await limitsOf(), [20]);
    });

    await t.step("allowedHosts replaces the default list", async () => {
      const dashboard = createDashboard({
        limiter,
        allowedHosts: ["dash.internal", "127.0.0.1:8787"],
        log: () => {},
      });
      assert.equal(await status(dashboard, at("dash.internal:9000", "/api/info")), 200);
      assert.equal(await status(dashboard, at("dash.internal", "/api/info")), 200);
      assert.equal(await status(dashboard, at("127.0.0.1:8787", "/api/info")), 200);
      assert.equal(await status(dashboard, at("127.0.0.1:8788", "/api/info")), 403);
      assert.equal(await status(dashboard, at("localhost:8787", "/api/info")), 403);
      assert.equal(await status(dashboard, at("evil.example:8787", "/api/info")), 403);
      const stored = await dashboard.fetch(
        put("dash.internal:9000", "/api/entities/key-1/limits", {
          resource: "*",
          limits: [rpm(30).toJSON()],
        }),
      );
      assert.equal(stored.status, 200, await stored.text());
      assert.deepEqual(await limitsOf(), [30]);
    });

    await t.step("a token lifts the default: any Host, but only with the token", async () => {
      const dashboard = createDashboard({ limiter, token: TOKEN, log: () => {} });
      const bearer = { Authorization: `Bearer ${TOKEN}` };
      const host = "dash.example.com";
      assert.equal(await status(dashboard, at(host, "/api/info")), 401);
      assert.equal(await status(dashboard, at(host, "/api/info", { headers: bearer })), 200);
      const body = { resource: "*", limits: [rpm(40).toJSON()] };
      const path = "/api/entities/key-1/limits";
      assert.equal(await status(dashboard, put(host, path, body)), 401);
      assert.deepEqual(await limitsOf(), [30]);
      assert.equal(await status(dashboard, put(host, path, body, bearer)), 200);
      assert.deepEqual(await limitsOf(), [40]);
      // With both, the list still holds.
      const both = createDashboard({
        limiter,
        token: TOKEN,
        allowedHosts: ["dash.example.com"],
        log: () => {},
      });
      assert.equal(await status(both, at(host, "/api/info", { headers: bearer })), 200);
      assert.equal(await status(both, at("evil.example", "/api/info", { headers: bearer })), 403);
    });

    await t.step("a chunked body is read no further than 64 KB", async () => {
      const dashboard = createDashboard({ limiter, log: () => {} });
      let pulled = 0;
      const chunk = new TextEncoder().encode(" ".repeat(16 * 1024));
      const endless = new ReadableStream<Uint8Array>({
        pull(controller) {
          pulled++;
          controller.enqueue(chunk);
        },
      });
      const error = await errorOf(
        dashboard.fetch(
          at("127.0.0.1:8787", "/api/entities/key-1/limits", {
            method: "PUT",
            headers: { Origin: "http://127.0.0.1:8787", "Content-Type": "application/json" },
            body: endless,
          }),
        ),
        400,
      );
      assert.equal(error.field, "body");
      assert.equal(error.rule, "must be at most 64 KB");
      assert.ok(pulled <= 8, `read ${pulled} chunks of 16 KB`);
      // A chunked body under the bound is read whole.
      const text = JSON.stringify({ resource: "*", limits: [rpm(50).toJSON()] });
      const small = new ReadableStream<Uint8Array>({
        start(controller) {
          const bytes = new TextEncoder().encode(text);
          controller.enqueue(bytes.slice(0, 10));
          controller.enqueue(bytes.slice(10));
          controller.close();
        },
      });
      const stored = await dashboard.fetch(
        at("127.0.0.1:8787", "/api/entities/key-1/limits", {
          method: "PUT",
          headers: { Origin: "http://127.0.0.1:8787", "Content-Type": "application/json" },
          body: small,
        }),
      );
      assert.equal(stored.status, 200, await stored.text());
      assert.deepEqual(await limitsOf(), [50]);
    });

    await t.step("a capacity the form sends as text (0x10) is refused naming it", async () => {
      const dashboard = createDashboard({ limiter, log: () => {} });
      const limit = { ...rpm(5).toJSON(), capacity: numberField("0x10") };
      const error = await errorOf(
        dashboard.fetch(
          put("127.0.0.1:8787", "/api/entities/key-1/limits", { resource: "*", limits: [limit] }),
        ),
        400,
      );
      assert.match(error.field ?? "", /capacity/);
      assert.equal(error.value, '"0x10"'); // a string, shown quoted
      assert.match(error.message, /capacity.*0x10/);
      assert.deepEqual(await limitsOf(), [50]);
    });
  } finally {
    await limiter.close();
  }
});
