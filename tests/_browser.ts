/// <reference lib="dom" />
/**
 * A real browser for the dashboard's tests: Debian's Chromium (`/usr/bin/chromium`, installed by
 * `.ci/run`), driven by `playwright-core` with no browser download; a console watch that fails a
 * test on any console error or warning (a CSP violation included) the test did not expect; and
 * a local server for a fetch handler.
 *
 * @module
 */

import { type Browser, chromium, type ConsoleMessage, type Page } from "playwright-core";

/** Where the browser is expected. */
export const CHROMIUM: string = Deno.env.get("ZAE_TEST_CHROMIUM") ?? "/usr/bin/chromium";

/** Whether the browser is there. */
export function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** Launches Chromium headless (no sandbox: CI runs as root in a container). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], timeout: 60_000 });
}

/** An expected console error: a failed request the test made on purpose. */
interface Expected {
  status: number;
  urlPart: string;
}

/**
 * Watches a page's console: every `error` or `warning` message, uncaught exception and CSP
 * violation is kept, except the "Failed to load resource" of answers the test announced with
 * {@link ConsoleWatch.expectFailure}. {@link ConsoleWatch.assertClean} throws on any kept one.
 */
export class ConsoleWatch {
  readonly problems: string[] = [];
  readonly #expected: Expected[] = [];

  private constructor(page: Page) {
    page.on("console", (message) => this.#onConsole(message));
    page.on("pageerror", (err) => this.problems.push(`pageerror: ${err.message}`));
  }

  /** Starts watching `page`; call before its first navigation. */
  static async attach(page: Page): Promise<ConsoleWatch> {
    const watch = new ConsoleWatch(page);
    // A violation is also reported by the browser's console; this catches it with its details.
    await page.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (e) => {
        console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
      });
    });
    return watch;
  }

  /** Allows the console error of one failed answer: `status` for a URL containing `urlPart`. */
  expectFailure(status: number, urlPart: string): void {
    this.#expected.push({ status, urlPart });
  }

  #onConsole(message: ConsoleMessage): void {
    const type = message.type();
    if (type !== "error" && type !== "warning") return;
    const text = message.text();
    const url = message.location().url ?? "";
    const failed = /^Failed to load resource: the server responded with a status of (\d+)/.exec(
      text,
    );
    if (failed) {
      const i = this.#expected.findIndex((e) =>
        e.status === Number(failed[1]) && url.includes(e.urlPart)
      );
      if (i >= 0) {
        this.#expected.splice(i, 1);
        return;
      }
    }
    this.problems.push(`console ${type}: ${text}${url ? ` (${url})` : ""}`);
  }

  /** Waits (up to `ms`) for the expected failed answers still to be logged. */
  async settle(ms = 2_000): Promise<void> {
    const end = Date.now() + ms;
    while (this.#expected.length > 0 && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Throws when the page logged an unexpected error or warning, or an expected one is missing. */
  assertClean(): void {
    if (this.problems.length > 0) {
      throw new Error(`the page logged:\n${this.problems.join("\n")}`);
    }
    if (this.#expected.length > 0) {
      const missing = this.#expected.map((e) => `${e.status} for ${e.urlPart}`).join(", ");
      throw new Error(`expected failed answers never came: ${missing}`);
    }
  }
}

/** A fetch handler served on 127.0.0.1 at a free port. */
export interface Served {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Stops the server. */
  close(): Promise<void>;
}

/** Serves `handler` on a free loopback port. */
export function serve(handler: (request: Request) => Promise<Response>): Served {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}

/** The text of each cell of each body row of the table matched by `selector`. */
export function tableRows(page: Page, selector: string): Promise<string[][]> {
  return page.$$eval(
    `${selector} tbody tr`,
    (rows) =>
      rows.map((row) =>
        [...(row as HTMLTableRowElement).cells].map((cell) =>
          (cell.textContent ?? "").replace(/\s+/g, " ").trim()
        )
      ),
  );
}

/** A number as the page writes it (`12,500`) read back. */
export function readNumber(text: string): number {
  return Number(text.replaceAll(",", ""));
}
