/**
 * Writes the README's screenshots of the dashboard: `docs/dashboard-overview.png` (the overview)
 * and `docs/dashboard-entity.png` (an API key's page), 1280×800. It starts a DynamoDB Local in
 * memory, seeds it as the browser tests do (tests/_dashboard_seed.ts: a project with three keys,
 * limits at every level, a week of traffic and its usage snapshots), serves the dashboard on a
 * free loopback port and photographs it with Debian's Chromium (playwright-core, no download).
 *
 * Run: `deno run -A scripts/dashboard_screenshots.ts` (needs Java 17 and /usr/bin/chromium).
 *
 * @module
 */

import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { fileURLToPath } from "node:url";
import { RateLimiter } from "../mod.ts";
import { createDashboard } from "../src/dashboard/mod.ts";
import { startDynamoDBLocal } from "../src/local/mod.ts";
import { ConsoleWatch, launchBrowser, serve } from "../tests/_browser.ts";
import { seedDashboard } from "../tests/_dashboard_seed.ts";

const DOCS = fileURLToPath(new URL("../docs/", import.meta.url));

if (import.meta.main) {
  const ddb = await startDynamoDBLocal({ startupTimeoutMs: 120_000 });
  const client = new DynamoDBClient({
    endpoint: ddb.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  const tableName = "rate_limits";
  const limiter = new RateLimiter({ tableName, client, timeoutMs: 20_000 });
  const served = serve(createDashboard({ limiter }).fetch);
  const browser = await launchBrowser();
  try {
    const seeded = await seedDashboard(client, tableName);
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const watch = await ConsoleWatch.attach(page);
    await page.goto(`${served.url}/#/`);
    await page.waitForSelector("[data-testid=close-to-limit]");
    await page.waitForTimeout(300);
    await page.screenshot({ path: `${DOCS}dashboard-overview.png` });
    await page.goto(`${served.url}/#/entity/${encodeURIComponent(seeded.key)}`);
    await page.waitForSelector("[data-testid=buckets-table]");
    await page.waitForSelector("[data-testid=levels-gpt-4]");
    await page.waitForTimeout(300);
    await page.screenshot({ path: `${DOCS}dashboard-entity.png` });
    watch.assertClean();
    console.log("wrote docs/dashboard-overview.png and docs/dashboard-entity.png");
  } finally {
    await browser.close();
    await served.close();
    await limiter.close();
    client.destroy();
    await ddb.stop();
  }
}
