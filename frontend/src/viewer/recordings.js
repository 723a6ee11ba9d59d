// The sidebar's recordings list: GET /recordings a page at a time (its `next_cursor`
// asks for the next), the first page polled every 10 s while the tab is seen, filters by
// URL and errors; click to play.
import { listRecordings } from "./api.js";
import { h } from "./dom.js";
import { formatDuration } from "./markers.js";
import { formatAge } from "./sessions.js";

const PAGE_SIZE = 20;

/** The line a recording is known by: its name, else where it began, else its id. */
export function recordingTitle(recording) {
  if (recording.name) return recording.name;
  const first = recording.urls?.[0];
  if (first) {
    try {
      const url = new URL(first);
      return url.host + (url.pathname === "/" ? "" : url.pathname);
    } catch {
      return first;
    }
  }
  return recording.id;
}

/** "3 pages · 1 min 5 s · 12 min ago" (a recording still being written says so). */
export function recordingSummary(recording, nowS = Date.now() / 1000) {
  const pages = recording.page_count;
  const parts = [];
  if (recording.ended_at == null) parts.push("recording now");
  else if (Number.isFinite(recording.duration_ms)) parts.push(formatDuration(recording.duration_ms));
  if (Number.isFinite(pages)) parts.push(`${pages.toLocaleString()} page${pages === 1 ? "" : "s"}`);
  parts.push(formatAge(recording, nowS));
  return parts.filter(Boolean).join(" · ");
}

/**
 * Pages in the order they were loaded, first page refreshed in place: an id the new
 * first page holds is dropped from the later ones, so nothing shows twice.
 */
export function mergePages(pages) {
  const seen = new Set();
  const out = [];
  for (const page of pages) {
    for (const item of page) {
      if (seen.has(item.id)) continue;
      seen.add(item.id);
      out.push(item);
    }
  }
  return out;
}

export class RecordingList {
  #list;
  #error;
  #empty;
  #more;
  #url;
  #errorsOnly;
  #onSelect;
  #refreshMs;
  #pages = [];
  #cursor = null; // the next page's, after the last page loaded
  #items = new Map(); // id -> {li, title, url, meta, errors}
  #selected = null;
  #timer = null;
  #generation = 0; // a new filter drops answers to the old one

  /**
   * @param {HTMLElement} root an empty element the list fills
   * @param {{onSelect: (recording: object) => void, refreshMs?: number}} options
   */
  constructor(root, { onSelect, refreshMs = 10_000 }) {
    this.#onSelect = onSelect;
    this.#refreshMs = refreshMs;
    this.#url = h("input", { type: "search", name: "recording-url", placeholder: "URL contains…", autocomplete: "off" });
    this.#errorsOnly = h("input", { type: "checkbox", name: "recording-errors" });
    const filters = h("form", { class: "recording-filters", onsubmit: (event) => {
      event.preventDefault();
      this.#restart();
    } }, this.#url, h("label", { class: "recording-filter-errors" }, this.#errorsOnly, "with errors"));
    this.#url.addEventListener("change", () => this.#restart());
    this.#errorsOnly.addEventListener("change", () => this.#restart());
    this.#error = h("p", { class: "inline-error", role: "alert", hidden: true });
    this.#list = h("ul", { class: "session-list recording-list" });
    this.#empty = h("p", { class: "muted", text: "No recordings yet.", hidden: true });
    this.#more = h("button", { type: "button", class: "button button--small recording-more", hidden: true, onclick: () => this.#loadMore() }, "Show more");
    root.replaceChildren(filters, this.#error, this.#list, this.#empty, this.#more);
  }

  start() {
    this.refresh();
  }

  /** Reloads the first page now; the next poll follows `refreshMs` after it. */
  async refresh() {
    clearTimeout(this.#timer);
    const generation = this.#generation;
    // A tab out of sight asks nothing: every open viewer polls the same gateway.
    if (globalThis.document?.hidden && this.#pages.length) {
      this.#timer = setTimeout(() => this.refresh(), this.#refreshMs);
      return;
    }
    try {
      const { items, nextCursor } = await listRecordings(this.#query());
      if (generation !== this.#generation) return;
      this.#pages[0] = items;
      if (this.#pages.length === 1) this.#cursor = nextCursor;
      this.#showError("");
      this.#render();
    } catch (error) {
      if (generation === this.#generation) this.#showError(error.status === 401 ? "" : `Could not load recordings: ${error.message}`);
    } finally {
      if (generation === this.#generation) {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.refresh(), this.#refreshMs);
      }
    }
  }

  /** Highlights the recording being played (null: none). */
  select(id) {
    this.#selected = id;
    for (const [itemId, item] of this.#items) item.li.classList.toggle("selected", itemId === id);
  }

  /** The recording's info as last listed, or null. */
  get(id) {
    for (const page of this.#pages) {
      const found = page.find((item) => item.id === id);
      if (found) return found;
    }
    return null;
  }

  #query() {
    return { limit: PAGE_SIZE, url: this.#url.value.trim(), hasErrors: this.#errorsOnly.checked };
  }

  #restart() {
    this.#generation += 1;
    this.#pages = [];
    this.#cursor = null;
    this.#render();
    this.refresh();
  }

  async #loadMore() {
    const cursor = this.#cursor;
    if (!cursor) return;
    const generation = this.#generation;
    this.#more.disabled = true;
    try {
      const { items, nextCursor } = await listRecordings({ ...this.#query(), cursor });
      if (generation !== this.#generation) return;
      this.#pages.push(items);
      this.#cursor = nextCursor;
      this.#showError("");
      this.#render();
    } catch (error) {
      if (generation === this.#generation) this.#showError(`Could not load more recordings: ${error.message}`);
    } finally {
      this.#more.disabled = false;
    }
  }

  #render() {
    const recordings = mergePages(this.#pages);
    const seen = new Set();
    recordings.forEach((recording, index) => {
      seen.add(recording.id);
      const item = this.#items.get(recording.id) ?? this.#createItem(recording.id);
      this.#update(item, recording);
      if (this.#list.children[index] !== item.li) this.#list.insertBefore(item.li, this.#list.children[index] ?? null);
    });
    for (const [id, item] of this.#items) {
      if (!seen.has(id)) {
        item.li.remove();
        this.#items.delete(id);
      }
    }
    this.#empty.hidden = recordings.length > 0 || this.#pages.length === 0;
    this.#more.hidden = !this.#cursor;
  }

  #createItem(id) {
    const item = {
      title: h("span", { class: "session-title" }),
      url: h("span", { class: "session-url" }),
      live: h("span", { class: "state-pill", dataset: { state: "running" }, text: "live" }),
      errors: h("span", { class: "state-pill", dataset: { state: "failed" }, text: "errors" }),
      meta: h("span", { class: "session-meta-text" }),
    };
    const main = h(
      "button",
      { type: "button", class: "session-main", onclick: () => this.#onSelect(this.get(id) ?? { id }) },
      item.title,
      item.url,
      h("span", { class: "session-meta" }, item.live, item.errors, item.meta),
    );
    item.li = h("li", { class: "recording-item", dataset: { id } }, main);
    this.#items.set(id, item);
    return item;
  }

  #update(item, recording) {
    const urls = recording.urls ?? [];
    const last = urls.at(-1) ?? "";
    setText(item.title, recordingTitle(recording));
    setText(item.url, last);
    item.url.title = urls.join("\n");
    item.live.hidden = recording.ended_at != null;
    item.errors.hidden = !recording.has_errors;
    item.errors.title = recording.error ?? "";
    setText(item.meta, recordingSummary(recording));
    item.li.classList.toggle("selected", recording.id === this.#selected);
  }

  #showError(message) {
    this.#error.textContent = message;
    this.#error.hidden = !message;
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
