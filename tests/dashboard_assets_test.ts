/**
 * The dashboard's browser assets: the committed module is a fresh build of src/dashboard/ui/,
 * the page loads only its own script and stylesheet (no inline script or style, nothing from a
 * CDN), and the pure helpers of the client (formatting, routes, error fields) do what the pages
 * rely on. The pages themselves are tested in a real browser by tests/dashboard_browser_test.ts.
 */
import assert from "node:assert/strict";
import { buildDashboardAssets } from "../scripts/build_dashboard.ts";
import { ASSETS } from "../src/dashboard/ui/assets_generated.ts";
import {
  formatNumber,
  formatUntilFull,
  formatWindow,
  numberField,
  percentAvailable,
} from "../src/dashboard/ui/format.ts";
import { COLOURS } from "../src/dashboard/ui/charts.ts";
import { fieldOf, namesThisLimit } from "../src/dashboard/ui/limit_form.ts";
import { entityHref, parseRoute } from "../src/dashboard/ui/router.ts";

Deno.test("the committed assets are a fresh build of src/dashboard/ui/", async () => {
  const fresh = await buildDashboardAssets();
  assert.deepEqual(Object.keys(ASSETS).sort(), ["/", "/app.css", "/app.js"]);
  for (const [path, asset] of Object.entries(fresh)) {
    assert.equal(
      ASSETS[path]?.body,
      asset.body,
      `src/dashboard/ui/assets_generated.ts is stale (${path}): run deno task build:dashboard`,
    );
    assert.equal(ASSETS[path].type, asset.type);
  }
  console.log(
    `dashboard assets: app.js ${ASSETS["/app.js"].body.length} B, app.css ${
      ASSETS["/app.css"].body.length
    } B`,
  );
});

Deno.test("the page loads its own script and stylesheet only: no inline code, no CDN", () => {
  const html = ASSETS["/"].body;
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1);
  assert.match(scripts[0][1], /src="\/app\.js\?v=[0-9a-f]{16}"/);
  assert.equal(scripts[0][2].trim(), "", "no inline script");
  assert.doesNotMatch(html, /<style\b/i, "no inline <style>");
  assert.doesNotMatch(html, /\sstyle=/i, "no style attributes");
  assert.doesNotMatch(html, /\son[a-z]+=/i, "no inline event handlers");
  assert.match(html, /<link rel="stylesheet" href="\/app\.css\?v=[0-9a-f]{16}">/);
  assert.doesNotMatch(html, /https?:\/\//, "nothing loaded from another origin");
  assert.doesNotMatch(ASSETS["/app.js"].body, /https?:\/\/(cdn|unpkg|jsdelivr)/);
  // uPlot is bundled (with its name and license), not fetched.
  assert.match(ASSETS["/app.js"].body, /^\/\*! uPlot 1\.6\.32 \| MIT License/);
  assert.match(ASSETS["/app.css"].body, /\.uplot/);
});

Deno.test("client helpers", async (t) => {
  await t.step("time until full rounds seconds up and never says full early", () => {
    assert.equal(formatUntilFull(0), "full");
    assert.equal(formatUntilFull(-5), "full");
    assert.equal(formatUntilFull(1), "full in 1 s");
    assert.equal(formatUntilFull(12_000), "full in 12 s");
    assert.equal(formatUntilFull(12_001), "full in 13 s");
    assert.equal(formatUntilFull(60_000), "full in 1 min");
    assert.equal(formatUntilFull(185_000), "full in 3 min 5 s");
    assert.equal(formatUntilFull(2 * 3_600_000 + 600_000), "full in 2 h 10 min");
    assert.equal(formatUntilFull(50 * 3_600_000), "full in 2 d 2 h");
  });
  await t.step("numbers, windows and shares", () => {
    assert.equal(formatNumber(12500), "12,500");
    assert.equal(formatNumber(-400), "-400");
    assert.equal(formatWindow("2026-11-28T13:00:00Z", "hourly"), "2026-11-28 13:00");
    assert.equal(formatWindow("2026-11-28T00:00:00Z", "daily"), "2026-11-28");
    assert.equal(percentAvailable(3000, 15000), 20);
    assert.equal(percentAvailable(1, 3), 33);
    assert.equal(percentAvailable(-5, 10), 0);
    assert.equal(percentAvailable(5, 0), 0);
  });
  await t.step("a form field goes to the API as a number, null or the text typed", () => {
    assert.equal(numberField(" 150 "), 150);
    assert.equal(numberField("2.5"), 2.5);
    assert.equal(numberField(""), null);
    assert.equal(numberField("ten"), "ten");
  });
  await t.step("routes", () => {
    assert.deepEqual(parseRoute(""), { page: "overview" });
    assert.deepEqual(parseRoute("#/"), { page: "overview" });
    assert.deepEqual(parseRoute("#/entities"), { page: "entities", search: "" });
    assert.deepEqual(parseRoute("#/entities?search=acme%20x"), {
      page: "entities",
      search: "acme x",
    });
    assert.deepEqual(parseRoute(entityHref("a/b #1")), { page: "entity", entityId: "a/b #1" });
    assert.deepEqual(parseRoute("#/nope"), { page: "missing", hash: "#/nope" });
    assert.equal(parseRoute("#main"), null, "the skip link's fragment is not a route");
  });
  await t.step("an API error's field names the form's input", () => {
    assert.equal(fieldOf("limit rpm: capacity"), "capacity");
    assert.equal(fieldOf("limit rpm: refillPeriodSeconds"), "refillPeriodSeconds");
    assert.equal(fieldOf("limit tpm: refillAmount"), "refillAmount");
    assert.equal(fieldOf("limit.name"), "name");
    assert.equal(fieldOf("limit rpm: soft"), "soft");
    assert.equal(fieldOf("entityId"), undefined);
    assert.equal(fieldOf(undefined), undefined);
    assert.equal(namesThisLimit("limit rpm: capacity", "rpm"), true);
    assert.equal(namesThisLimit("limit tpm: capacity", "rpm"), false, "another limit's error");
    assert.equal(namesThisLimit("limit.name", ""), true);
    assert.equal(namesThisLimit(undefined, "rpm"), true);
  });
});

/** WCAG 2 contrast ratio of two `#rrggbb` colours. */
function contrast(a: string, b: string): number {
  const luminance = (hex: string) => {
    const [r, g, b] = [1, 3, 5].map((i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

Deno.test("text colours keep a contrast of at least 4.5:1 on their backgrounds", () => {
  const css = Deno.readTextFileSync(new URL("../src/dashboard/ui/styles.css", import.meta.url));
  const vars = Object.fromEntries(
    [...css.matchAll(/--([a-z]+): (#[0-9a-f]{6});/g)].map((m) => [m[1], m[2]]),
  );
  const white = "#ffffff";
  const pairs: [string, string, string][] = [
    ["text", vars.fg, vars.bg],
    ["text on the header", vars.fg, vars.panel],
    ["muted text", vars.muted, vars.bg],
    ["muted text on the header", vars.muted, vars.panel],
    ["links", vars.link, vars.bg],
    ["links on the header", vars.link, vars.panel],
    ["errors", vars.error, vars.bg],
    ["saved notes, the effective mark", vars.ok, vars.bg],
    ["button text", white, vars.link],
    ["remove button text", white, vars.error],
    ["focus outline", vars.focus, vars.bg],
    ...COLOURS.map((c, i): [string, string, string] => [`chart line ${i}`, c, white]),
  ];
  assert.equal(Object.keys(vars).length >= 9, true, JSON.stringify(vars));
  for (const [what, fg, bg] of pairs) {
    assert.ok(fg && bg, `${what}: colour defined`);
    const ratio = contrast(fg, bg);
    assert.ok(ratio >= 4.5, `${what}: ${fg} on ${bg} is ${ratio.toFixed(2)}:1`);
  }
});
