/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against DynamoDB
 * Local seeded through the library: every page loads, the numbers it shows are the API's, a limit
 * edited in the form is stored, a bad one is refused beside its field, a read-only dashboard
 * shows no edit control and refuses a PUT, and with a token the API refuses a request without it
 * while the page asks for it. Any console error or warning the test did not cause on purpose (a
 * CSP violation included) fails it.
 *
 * Without /usr/bin/chromium the test is skipped with a message, except on CI (`CI=true`), where
 * it fails: `.ci/run` installs Debian's chromium.
 */
import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { Limit, RateLimiter } from "../mod.ts";
import type {
  AuditView,
  BucketsView,
  LimitLevelsView,
  LimitsWriteResult,
  OverviewView,
  SeriesPoint,
  TreeNode,
  TreeView,
  UsageView,
} from "../src/dashboard/api_types.ts";
import { createDashboard } from "../src/dashboard/mod.ts";
import { formatUntilFull, formatWindow } from "../src/dashboard/ui/format.ts";
import { levelName } from "../src/dashboard/ui/pages/limits.ts";
import {
  CHROMIUM,
  ConsoleWatch,
  hasChromium,
  launchBrowser,
  readNumber,
  serve,
  type Served,
  tableRows,
} from "./_browser.ts";
import { seedDashboard } from "./_dashboard_seed.ts";
import { localClient, startTestDynamo, uniqueTableName } from "./_dynamo.ts";

const onCi = Deno.env.get("CI") === "true";
const skip = !hasChromium() && !onCi;
if (skip) {
  console.warn(`dashboard browser test skipped: no browser at ${CHROMIUM} (CI=true would fail)`);
}

const TOKEN = "browser-test-token-0123456789";

Deno.test({
  name: "dashboard in a real browser, on DynamoDB Local",
  ignore: skip,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    assert.ok(hasChromium(), `no browser at ${CHROMIUM}: .ci/run installs Debian's chromium`);
    const ddb = await startTestDynamo();
    const client = localClient(ddb.endpoint);
    const tableName = uniqueTableName("dashboard_ui");
    const servers: Served[] = [];
    let browser: Browser | undefined;
    let limiter: RateLimiter | undefined;
    const cleanUp = async () => {
      await browser?.close().catch(() => {});
      for (const s of servers) await s.close().catch(() => {});
      await limiter?.close().catch(() => {});
      client.destroy();
      await ddb.stop();
    };
    const onTerm = () => void cleanUp().finally(() => Deno.exit(143));
    Deno.addSignalListener("SIGTERM", onTerm);
    try {
      const seeded = await seedDashboard(client, tableName);
      limiter = new RateLimiter({ tableName, client, timeoutMs: 20_000 });
      const open = serve(createDashboard({ limiter }).fetch);
      const readOnly = serve(createDashboard({ limiter, readOnly: true }).fetch);
      const guarded = serve(createDashboard({ limiter, token: TOKEN }).fetch);
      servers.push(open, readOnly, guarded);
      browser = await launchBrowser();
      const apiGet = async <T>(path: string, base = open.url): Promise<T> => {
        const res = await fetch(`${base}/api/${path}`);
        assert.equal(res.status, 200, `GET /api/${path}: ${res.status}`);
        return await res.json() as T;
      };
      /** A fresh page with a console watch; the watch is checked when `body` returns. */
      const withPage = async (body: (page: Page, watch: ConsoleWatch) => Promise<void>) => {
        const context: BrowserContext = await browser!.newContext({
          viewport: { width: 1280, height: 800 },
        });
        try {
          const page = await context.newPage();
          const watch = await ConsoleWatch.attach(page);
          await body(page, watch);
          await watch.settle();
          watch.assertClean();
        } finally {
          await context.close();
        }
      };
      const key = seeded.key;
      const keyPage = `${open.url}/#/entity/${encodeURIComponent(key)}`;

      await t.step("overview: charts' tables and lists show the API's numbers", async () => {
        await withPage(async (page, watch) => {
          const answer = page.waitForResponse((r) => r.url().endsWith("/api/overview"));
          await page.goto(`${open.url}/#/`);
          const shown = await (await answer).json() as OverviewView;
          await page.waitForSelector("[data-testid=close-to-limit]");
          // The snapshots do not move: a second read gives the same series.
          const api = await apiGet<OverviewView>("overview");
          assert.deepEqual(shown.hourly, api.hourly);
          assert.deepEqual(shown.daily, api.daily);
          assert.deepEqual(shown.mostRefused, api.mostRefused);
          assert.ok(api.hourly.length >= 20, `hourly points: ${api.hourly.length}`);
          assert.ok(api.daily.length >= 6, `daily points: ${api.daily.length}`);
          assert.ok(api.closeToLimit.length > 0, "buckets close to their limits");

          const series = async (
            testId: string,
            points: SeriesPoint[],
            window: "hourly" | "daily",
          ) => {
            const rows = await tableRows(page, `[data-testid=${testId}] details table`);
            // Per hour: admitted and refused; per day admitted only (no refusals in daily windows).
            assert.deepEqual(
              rows.map((r) => [r[0], ...r.slice(1).map(readNumber)]),
              points.map((p) => [
                formatWindow(p.windowStart, window),
                p.requests,
                ...(window === "hourly" ? [p.refused] : []),
              ]),
              testId,
            );
          };
          await series("requests-hourly", api.hourly, "hourly");
          await series("requests-daily", api.daily, "daily");
          const tokens = await page.$$eval(
            "[data-testid=tokens-hourly] details table thead th",
            (ths) => ths.map((th) => th.textContent),
          );
          const names = tokens.slice(1) as string[];
          assert.deepEqual(names, ["rpm", "tpm"]);
          assert.deepEqual(
            (await tableRows(page, "[data-testid=tokens-hourly] details table")).map((r) =>
              r.slice(1).map(readNumber)
            ),
            api.hourly.map((p) => names.map((n) => p.consumed[n] ?? 0)),
          );
          // "Show as table" opens the chart's table.
          const firstTable = page.locator("[data-testid=requests-hourly] details table");
          assert.equal(await firstTable.isVisible(), false);
          await page.locator("[data-testid=requests-hourly] summary").click();
          assert.equal(await firstTable.isVisible(), true);
          // Each chart is drawn (a canvas) and followed by its table.
          assert.equal(await page.locator("figure.chart canvas").count(), 4);
          assert.equal(await page.locator("figure.chart details table").count(), 4);

          // The seed's refused acquires (over the production key's own tpm on gpt-4).
          assert.deepEqual(
            (await tableRows(page, "[data-testid=most-refused]")).map((r) => [
              r[0],
              readNumber(r[1]),
              readNumber(r[2]),
            ]),
            api.mostRefused.map((r) => [r.entityId, r.refused, r.requests]),
          );
          const prod = api.mostRefused.find((r) => r.entityId === seeded.key);
          assert.equal(prod?.refused, seeded.refusals, JSON.stringify(api.mostRefused));
          // The key cascades to its project, which counts its requests; its refusals are its
          // own and still reach the hourly series.
          assert.equal(api.hourly.reduce((n, p) => n + p.refused, 0), seeded.refusals);
          assert.deepEqual(
            await tableRows(page, "[data-testid=close-to-limit]"),
            shown.closeToLimit.map((b) => [
              b.entityId,
              b.resource,
              b.limit,
              `${b.available.toLocaleString("en-US")} / ${b.capacity.toLocaleString("en-US")}`,
            ]),
          );
          watch.assertClean();
        });
      });

      await t.step("entity tree: projects and keys, search, keyboard navigation", async () => {
        await withPage(async (page) => {
          await page.goto(`${open.url}/#/entities`);
          await page.waitForSelector("[data-testid=tree]");
          const shownTree = () =>
            page.$$eval("[data-testid=tree] li", (lis) =>
              lis.map((li) => {
                let depth = 0;
                for (
                  let p = li.parentElement;
                  p && !p.matches("[data-testid=tree]");
                  p = p.parentElement
                ) {
                  if (p.tagName === "LI") depth++;
                }
                return `${depth}:${li.getAttribute("data-entity")}`;
              }));
          const flat = (nodes: TreeNode[], depth = 0): string[] =>
            nodes.flatMap((n) => [`${depth}:${n.entityId}`, ...flat(n.children, depth + 1)]);
          const all = await apiGet<TreeView>("tree");
          assert.deepEqual(await shownTree(), flat(all.roots));
          for (const k of seeded.keys) assert.ok(flat(all.roots).includes(`1:${k}`), k);

          // Search with the keyboard only: the labelled box, Enter.
          await page.getByLabel("Search entities (id or name)").focus();
          await page.keyboard.type("staging");
          const answer = page.waitForResponse((r) => r.url().includes("/api/tree?search=staging"));
          await page.keyboard.press("Enter");
          await answer;
          await page.waitForFunction(() =>
            document.querySelector("[data-testid=tree-count]")?.textContent?.includes("staging")
          );
          const found = await apiGet<TreeView>("tree?search=staging");
          assert.deepEqual(await shownTree(), flat(found.roots));
          assert.ok(flat(found.roots).includes("1:acme-staging"));

          // Tab to the key's link and open it with Enter.
          let focused = "";
          for (let i = 0; i < 20 && focused !== "acme-staging"; i++) {
            await page.keyboard.press("Tab");
            focused = await page.evaluate(() => document.activeElement?.textContent ?? "");
          }
          assert.equal(focused, "acme-staging", "the key's link is reachable by Tab");
          await page.keyboard.press("Enter");
          await page.waitForFunction(() => location.hash === "#/entity/acme-staging");
          await page.waitForSelector("[data-testid=entity-facts]");
        });
      });

      await t.step("entity page: live buckets, levels, usage and audit are the API's", async () => {
        await withPage(async (page) => {
          const first = page.waitForResponse((r) => r.url().endsWith("/buckets"));
          await page.goto(keyPage);
          const view = await (await first).json() as BucketsView;
          await page.waitForSelector("[data-testid=buckets-table]");
          const bucketRows = (v: BucketsView) =>
            v.buckets.map((b) => [
              b.resource,
              b.fromLastWrite ? `${b.limit} (limits of its last write)` : b.limit,
              `${b.available.toLocaleString("en-US")} / ${b.capacity.toLocaleString("en-US")}`,
              formatUntilFull(b.msUntilFull),
            ]);
          assert.deepEqual(await tableRows(page, "[data-testid=buckets-table]"), bucketRows(view));
          assert.ok(view.buckets.some((b) => b.limit === "tpm" && b.available < b.capacity));

          // Refreshed with no page reload: the next read arrives within about 3 s.
          await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 7));
          const second = await page.waitForResponse((r) => r.url().endsWith("/buckets"), {
            timeout: 8_000,
          });
          const next = await second.json() as BucketsView;
          assert.ok(next.now > view.now);
          await page.waitForTimeout(200);
          assert.deepEqual(await tableRows(page, "[data-testid=buckets-table]"), bucketRows(next));
          assert.equal(
            await page.evaluate(() => (globalThis as unknown as { marker: number }).marker),
            7,
          );

          // Stored limits at every level, the effective one marked in words.
          const levels = await apiGet<LimitLevelsView>(`entities/${key}/limits?resource=gpt-4`);
          await page.waitForSelector("[data-testid=levels-gpt-4]");
          assert.deepEqual(
            await tableRows(page, "[data-testid=levels-gpt-4]"),
            levels.levels.map((l) => [
              levelName(l.level, "gpt-4"),
              l.limits === null ? "none stored" : l.limits.map((x) => x.text).join(""),
              l.effective ? "effective" : "",
            ]),
          );
          assert.equal(levels.levels.length, 4);
          assert.ok(levels.levels.every((l) => l.limits !== null), "the seed stores every level");
          assert.equal(levels.levels.find((l) => l.effective)?.level, "entity-resource");

          // Usage: requests and one chart per limit, as the API's hourly series.
          const usage = await apiGet<UsageView>(
            `entities/${key}/usage?window=hourly&resource=gpt-4`,
          );
          const points = usage.series.find((s) => s.resource === "gpt-4")!.points;
          assert.ok(points.length >= 20);
          await page.waitForSelector("[data-testid=requests-gpt-4-hourly] details table", {
            state: "attached",
          });
          assert.deepEqual(
            (await tableRows(page, "[data-testid=requests-gpt-4-hourly] details table")).map((
              r,
            ) => [
              r[0],
              readNumber(r[1]),
            ]),
            points.map((p) => [formatWindow(p.windowStart, "hourly"), p.requests]),
          );
          assert.deepEqual(
            (await tableRows(page, "[data-testid=tokens-gpt-4-hourly-tpm] details table")).map((
              r,
            ) => readNumber(r[1])),
            points.map((p) => p.consumed.tpm ?? 0),
          );

          // Accessible: landmarks, and every control named by a label (or its text).
          assert.equal(await page.locator("main#main").count(), 1);
          assert.equal(await page.locator("nav[aria-label=Pages]").count(), 1);
          await page.$$eval(
            "details.edit",
            (ds) => ds.forEach((d) => (d as HTMLDetailsElement).open = true),
          );
          const unnamed = await page.$$eval(
            "input, select, textarea, button",
            (els) =>
              els.filter((e) => {
                const el = e as HTMLInputElement;
                const text = el.tagName === "BUTTON" ? el.textContent?.trim() : "";
                return !(el.labels?.length || el.getAttribute("aria-label") || text);
              }).map((e) => e.outerHTML),
          );
          assert.deepEqual(unnamed, []);
          assert.ok(await page.locator("details.edit input").count() >= 10, "the forms are there");

          // Audit events (the seed's admin changes).
          const audit = await apiGet<AuditView>(`entities/${key}/audit`);
          assert.ok(audit.available && audit.events.length > 0);
          await page.waitForSelector("[data-testid=audit-table]");
          const auditRows = await tableRows(page, "[data-testid=audit-table]");
          assert.deepEqual(
            auditRows.map((r) => r.slice(1)),
            audit.events.map((e) => [e.principal, e.action, e.scope, e.summary]),
          );

          // Leaving the page stops its refresh: no bucket read after the overview shows.
          let reads = 0;
          page.on("request", (r) => void (r.url().endsWith("/buckets") && reads++));
          await page.getByRole("link", { name: "Overview" }).click();
          await page.waitForSelector("[data-testid=close-to-limit]");
          reads = 0;
          await page.waitForTimeout(3_500);
          assert.equal(reads, 0, "bucket reads after leaving the entity page");
        });
      });

      await t.step("live buckets: no reads while the tab is hidden, one on return", async () => {
        await withPage(async (page) => {
          const reads: number[] = [];
          page.on("request", (r) => {
            if (r.url().endsWith("/buckets")) reads.push(Date.now());
          });
          await page.goto(keyPage);
          await page.waitForSelector("[data-testid=buckets-table]");
          const setHidden = (hidden: boolean) =>
            page.evaluate((h) => {
              Object.defineProperty(document, "visibilityState", {
                configurable: true,
                get: () => (h ? "hidden" : "visible"),
              });
              document.dispatchEvent(new Event("visibilitychange"));
            }, hidden);
          await setHidden(true);
          const hiddenAt = Date.now();
          await page.waitForTimeout(4_000); // more than one 3-second period
          assert.deepEqual(reads.filter((t) => t > hiddenAt + 100), [], "no read while hidden");
          const back = page.waitForRequest((r) => r.url().endsWith("/buckets"), {
            timeout: 1_500,
          });
          await setHidden(false);
          await back; // at once, not after the next period
        });
      });

      await t.step("editing: a limit changed in the form is stored and read back", async () => {
        await withPage(async (page) => {
          await page.goto(keyPage);
          await page.getByText("Edit: This entity, for gpt-4").click();
          const form = page.locator("details[data-level=entity-resource] form[data-limit=rpm]");
          await form.getByLabel("Capacity (tokens)").fill("90");
          await form.getByLabel("Refill amount (tokens)").fill("90");
          const put = page.waitForResponse((r) => r.request().method() === "PUT");
          await form.getByRole("button", { name: "Save rpm" }).click();
          const answer = await put;
          assert.equal(answer.status(), 200);
          const written = await answer.json() as LimitsWriteResult;
          const saved = page.locator("details[data-level=entity-resource] [data-testid=saved]");
          await saved.waitFor();
          assert.ok(await saved.isVisible(), "the edit panel stays open with the notice");
          const fresh = new RateLimiter({ tableName, client });
          try {
            const stored = await fresh.getLimits({ entityId: key, resource: "gpt-4" });
            const rpm = stored.find((l) => l.name === "rpm");
            assert.equal(rpm?.capacity, 90);
            assert.equal(rpm?.refillAmount, 90);
            assert.equal(stored.find((l) => l.name === "tpm")?.capacity, 15_000, "tpm kept");
          } finally {
            await fresh.close();
          }
          // The page shows what was read back, and its table is read again.
          const levels = await apiGet<LimitLevelsView>(`entities/${key}/limits?resource=gpt-4`);
          const texts = levels.levels[0].limits!.map((l) => l.text);
          assert.ok(texts.some((x) => x.includes("90")), texts.join("; "));
          assert.deepEqual(written.limits?.map((l) => l.text), texts);
          assert.equal(await saved.locator(".stored").textContent(), texts.join("; "));
          await page.waitForFunction(
            (text) =>
              document.querySelector("[data-testid=levels-gpt-4] tbody tr")?.textContent?.includes(
                text,
              ),
            texts[0],
          );
        });
      });

      await t.step("editing: a bad limit is refused beside its field, nothing stored", async () => {
        await withPage(async (page, watch) => {
          await page.goto(keyPage);
          await page.getByText("Edit: This entity, for gpt-4").click();
          const form = page.locator("details[data-level=entity-resource] form[data-limit=rpm]");
          const capacity = form.getByLabel("Capacity (tokens)");
          await capacity.fill("-5");
          watch.expectFailure(400, "/limits");
          const put = page.waitForResponse((r) => r.request().method() === "PUT");
          await form.getByRole("button", { name: "Save rpm" }).click();
          const answer = await put;
          assert.equal(answer.status(), 400);
          const { error } = await answer.json() as { error: { field: string; rule: string } };
          assert.match(error.field, /capacity$/);
          await page.waitForSelector("form[data-limit=rpm] input[aria-invalid=true]");
          assert.equal(await capacity.getAttribute("aria-invalid"), "true");
          const describedBy = await capacity.getAttribute("aria-describedby");
          assert.ok(describedBy);
          const message = await page.locator(`#${describedBy}`).textContent();
          assert.ok(message?.includes(error.rule), `${message} names the rule "${error.rule}"`);
          assert.ok(message?.includes("-5"), message ?? "");
          assert.ok(await page.locator(`#${describedBy}`).isVisible());
          // The error sits in the capacity field's own block, beside the input.
          assert.equal(
            await page.evaluate(
              (id) => document.getElementById(id!)?.parentElement?.querySelector("input")?.name,
              describedBy,
            ),
            "capacity",
          );
          assert.equal(
            await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.name),
            "capacity",
            "focus moves to the field at fault",
          );
          const stored = await limiter!.getLimits({ entityId: key, resource: "gpt-4" });
          assert.equal(stored.find((l) => l.name === "rpm")?.capacity, 90, "nothing written");

          // A number the page could read some other way (hex: 16) is sent as typed and refused.
          await capacity.fill("0x10");
          watch.expectFailure(400, "/limits");
          const hexPut = page.waitForResponse((r) => r.request().method() === "PUT");
          await form.getByRole("button", { name: "Save rpm" }).click();
          const hex = await hexPut;
          assert.equal(hex.status(), 400);
          assert.equal(JSON.parse(hex.request().postData()!).limits[0].capacity, "0x10");
          await page.waitForFunction(
            (id) => document.getElementById(id)?.textContent?.includes("0x10"),
            describedBy,
          );
          const again = await limiter!.getLimits({ entityId: key, resource: "gpt-4" });
          assert.equal(again.find((l) => l.name === "rpm")?.capacity, 90, "nothing written");
        });
      });

      await t.step("editing: a limit added through the form, then the level removed", async () => {
        await withPage(async (page) => {
          const other = seeded.keys[1]; // no entity-wide limits of its own
          assert.deepEqual(await limiter!.getLimits({ entityId: other }), []);
          await page.goto(`${open.url}/#/entity/${other}`);
          const panel = page.locator("details[data-level=entity]");
          await page.getByText("Edit: This entity, every resource").click();
          const add = panel.locator("form[data-limit='']");
          await add.getByLabel("Name").fill("rpd");
          await add.getByLabel("Capacity (tokens)").fill("1000");
          await add.getByLabel("Refill amount (tokens)").fill("1000");
          await add.getByLabel("Refill period (seconds)").fill("86400");
          await add.getByRole("button", { name: "Add limit" }).click();
          await panel.locator("[data-testid=saved]").waitFor();
          const stored = await limiter!.getLimits({ entityId: other });
          assert.deepEqual(stored.map((l) => l.toJSON()), [
            { name: "rpd", capacity: 1000, refillAmount: 1000, refillPeriodSeconds: 86400 },
          ]);
          // Now a form edits it, and the level can be removed (after the confirmation).
          await panel.locator("form[data-limit=rpd]").waitFor();
          page.once("dialog", (dialog) => void dialog.accept());
          const removed = page.waitForResponse((r) => r.request().method() === "DELETE");
          await panel.getByRole("button", { name: "Remove these limits" }).click();
          assert.equal((await removed).status(), 200);
          await page.waitForFunction(() =>
            document.querySelectorAll("details[data-level=entity] form[data-limit=rpd]").length ===
              0
          );
          assert.deepEqual(await limiter!.getLimits({ entityId: other }), []);
        });
      });

      await t.step("an unknown entity: a message and a way back, not a blank page", async () => {
        await withPage(async (page, watch) => {
          watch.expectFailure(404, "/api/entities/no-such-key");
          await page.goto(`${open.url}/#/entity/no-such-key`);
          await page.getByText('No entity "no-such-key".').waitFor();
          assert.equal(await page.getByRole("link", { name: "See every entity" }).count(), 1);
        });
      });

      await t.step("read-only: no edit control, and a PUT is refused with 403", async () => {
        await withPage(async (page, watch) => {
          await page.goto(`${readOnly.url}/#/entity/${key}`);
          await page.waitForSelector("[data-testid=read-only-note]");
          await page.waitForSelector("[data-testid=levels-gpt-4]");
          assert.equal(await page.locator("form.limit-form").count(), 0);
          assert.equal(await page.locator("details.edit").count(), 0);
          assert.equal(
            await page.getByRole("button", { name: /Save|Add limit|Remove/ }).count(),
            0,
          );
          watch.expectFailure(403, "/limits");
          const status = await page.evaluate(async (id) => {
            const res = await fetch(`/api/entities/${id}/limits`, {
              method: "PUT",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({
                resource: "gpt-4",
                limits: [{ name: "rpm", capacity: 1, refillAmount: 1, refillPeriodSeconds: 60 }],
              }),
            });
            return res.status;
          }, key);
          assert.equal(status, 403);
          const stored = await limiter!.getLimits({ entityId: key, resource: "gpt-4" });
          assert.equal(stored.find((l) => l.name === "rpm")?.capacity, 90, "nothing written");
        });
      });

      await t.step("audit: a double click on Load more reads the next page once", async () => {
        const many = "audit-many";
        await limiter!.createEntity({ entityId: many });
        for (let i = 1; i <= 55; i++) {
          await limiter!.setLimits({ entityId: many, limits: [Limit.perMinute("rpm", i)] });
        }
        let total = 0;
        let cursor: string | undefined;
        do {
          const view = await apiGet<AuditView>(
            `entities/${many}/audit${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`,
          );
          total += view.events.length;
          cursor = view.cursor;
        } while (cursor);
        assert.ok(total > 50, `${total} events: more than one page`);
        await withPage(async (page) => {
          await page.goto(`${open.url}/#/entity/${many}`);
          await page.waitForSelector("[data-testid=audit-table]");
          const rows = () => page.locator("[data-testid=audit-table] tbody tr").count();
          assert.equal(await rows(), 50);
          const pages: string[] = [];
          page.on("request", (r) => {
            if (r.url().includes("/audit?cursor=")) pages.push(r.url());
          });
          await page.getByRole("button", { name: "Load more" }).dblclick();
          await page.waitForFunction(
            (n) => document.querySelectorAll("[data-testid=audit-table] tbody tr").length >= n,
            total,
          );
          await page.waitForTimeout(500); // a second page read would land by now
          assert.equal(await rows(), total);
          assert.equal(pages.length, 1, pages.join("\n"));
        });
      });

      await t.step("the console watch catches an error and a CSP violation", async () => {
        const context = await browser!.newContext();
        try {
          const page = await context.newPage();
          const watch = await ConsoleWatch.attach(page);
          await page.goto(`${open.url}/#/`);
          await page.waitForSelector("[data-testid=close-to-limit]");
          assert.equal(watch.problems.length, 0, watch.problems.join("\n"));
          await page.evaluate(() => {
            const div = document.createElement("div");
            div.setAttribute("style", "color: red"); // an inline style: refused by the CSP
            document.body.append(div);
            console.error("boom");
          });
          await page.waitForTimeout(300);
          const all = watch.problems.join("\n");
          assert.ok(watch.problems.some((p) => p.includes("boom")), all);
          assert.ok(watch.problems.some((p) => /CSP violation: style-src/.test(p)), all);
          assert.throws(() => watch.assertClean(), /the page logged/);
        } finally {
          await context.close();
        }
      });

      await t.step(
        "token: the API refuses a request without it; the page asks for it",
        async () => {
          assert.equal((await fetch(`${guarded.url}/api/info`)).status, 401);
          assert.equal((await fetch(`${guarded.url}/api/overview`)).status, 401);
          const withToken = await fetch(`${guarded.url}/api/info`, {
            headers: { authorization: `Bearer ${TOKEN}` },
          });
          assert.equal(withToken.status, 200);
          assert.equal((await withToken.json()).tokenRequired, true);

          await withPage(async (page, watch) => {
            watch.expectFailure(401, "/api/info");
            await page.goto(`${guarded.url}/#/`);
            const input = page.getByLabel("Dashboard token");
            await input.waitFor();
            watch.expectFailure(401, "/api/info");
            await input.fill("wrong-token-0123456789");
            await page.getByRole("button", { name: "Open the dashboard" }).click();
            await page.getByText("That token was refused").waitFor();
            await page.getByLabel("Dashboard token").fill(TOKEN);
            await page.getByRole("button", { name: "Open the dashboard" }).click();
            await page.waitForSelector("[data-testid=close-to-limit]");
            assert.equal(await page.evaluate(() => sessionStorage.length), 1);
          });
          await withPage(async (page) => {
            // A #token= link: taken once, then gone from the address bar.
            await page.goto(`${guarded.url}/#token=${TOKEN}`);
            await page.waitForSelector("[data-testid=close-to-limit]");
            assert.equal(await page.evaluate(() => location.hash), "#/");
            assert.doesNotMatch(page.url(), new RegExp(TOKEN));
          });
          await withPage(async (page, watch) => {
            // A malformed one (`%` alone) does not stop the page: it asks for the token.
            watch.expectFailure(401, "/api/info");
            await page.goto(`${guarded.url}/#token=%`);
            await page.getByText("The token in the address could not be read").waitFor();
            await page.getByLabel("Dashboard token").waitFor();
            assert.equal(await page.evaluate(() => location.hash), "#/");
            assert.equal(await page.evaluate(() => sessionStorage.length), 0);
          });
        },
      );
    } finally {
      Deno.removeSignalListener("SIGTERM", onTerm);
      await cleanUp();
    }
  },
});
