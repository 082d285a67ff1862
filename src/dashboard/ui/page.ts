/// <reference lib="dom" />
/**
 * What every page's render function gets and returns.
 *
 * @module
 */

import type { InfoView } from "../api_types.ts";

/** What a page is rendered with. */
export interface PageContext {
  /** `GET /api/info`'s answer (read-only, token). */
  info: InfoView;
  /** The `<main>` element the page fills. */
  main: HTMLElement;
}

/** Stops a page's timers when it is left. */
export type Cleanup = () => void;

/** Sets the document's title: "`page` · zae-limiter dashboard". */
export function setTitle(page: string): void {
  document.title = `${page} · zae-limiter dashboard`;
}
