/// <reference lib="dom" />
/**
 * The entity page's live buckets: each limit's available tokens against its capacity and the
 * time until full, read from `GET /api/entities/:id/buckets` every 3 seconds with no reload,
 * paused while the tab is hidden.
 *
 * @module
 */

import type { BucketsView } from "../../api_types.ts";
import { api, seg } from "../api.ts";
import { h, replaceChildren } from "../dom.ts";
import { formatInstant, formatUntilFull } from "../format.ts";
import { meterCell } from "../meters.ts";
import type { Cleanup } from "../page.ts";
import { errorBox } from "../status.ts";
import { empty, table } from "../tables.ts";

/** How often the buckets are read again. */
export const BUCKETS_REFRESH_MS = 3000;

/** The live buckets section; the returned cleanup stops its refresh. */
export function bucketsSection(entityId: string): { section: HTMLElement; stop: Cleanup } {
  const body = h("div", { "data-testid": "buckets" });
  const stamp = h("p", { class: "note", "data-testid": "buckets-read" }, "Read every 3 seconds.");
  const section = h(
    "section",
    { "aria-labelledby": "buckets-title" },
    h("h2", { id: "buckets-title" }, "Live buckets"),
    stamp,
    body,
  );
  let inFlight = false;
  let stopped = false;
  const load = async () => {
    if (inFlight || stopped) return;
    inFlight = true;
    try {
      const view = await api<BucketsView>(`entities/${seg(entityId)}/buckets`);
      if (stopped) return;
      stamp.textContent = `Read every 3 seconds; last read ${
        formatInstant(new Date(view.now).toISOString())
      }.`;
      replaceChildren(body, bucketsTable(view));
    } catch (err) {
      if (!stopped) replaceChildren(body, errorBox(err));
    } finally {
      inFlight = false;
    }
  };
  // No reads while the tab is hidden; one as soon as it is shown again, then every 3 seconds.
  const hidden = () => document.visibilityState === "hidden";
  let timer: ReturnType<typeof setInterval> | undefined;
  const resume = () => {
    if (stopped || timer !== undefined) return;
    void load();
    timer = setInterval(() => void load(), BUCKETS_REFRESH_MS);
  };
  const pause = () => {
    clearInterval(timer);
    timer = undefined;
  };
  const onVisibility = () => hidden() ? pause() : resume();
  document.addEventListener("visibilitychange", onVisibility);
  if (hidden()) void load(); // a page opened in a background tab still shows its buckets once
  else resume();
  return {
    section,
    stop: () => {
      stopped = true;
      pause();
      document.removeEventListener("visibilitychange", onVisibility);
    },
  };
}

function bucketsTable(view: BucketsView): HTMLElement {
  if (view.buckets.length === 0) return empty("No buckets yet: this entity has made no request.");
  return table(
    "Available tokens of each limit",
    [{ label: "Resource" }, { label: "Limit" }, { label: "Available / capacity" }, {
      label: "Until full",
    }],
    view.buckets.map((b) => [
      b.resource,
      b.fromLastWrite ? `${b.limit} (limits of its last write)` : b.limit,
      meterCell(b.available, b.capacity, `${b.resource} ${b.limit}`),
      formatUntilFull(b.msUntilFull),
    ]),
    { "data-testid": "buckets-table" },
  );
}
