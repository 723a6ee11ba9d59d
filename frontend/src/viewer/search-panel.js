// The sidebar's "Find": moments across recordings (GET /search) where a text appeared, a
// URL was visited or an element was clicked; a hit opens its recording at that moment.
import { searchRecordings } from "./api.js";
import { h } from "./dom.js";
import { formatClock } from "./markers.js";

const KINDS = [["text", "Text"], ["url", "URL"], ["click", "Click"]];

/** "#add-item “Add item”", "https://…", "some text": what a hit found, in a line. */
export function hitText(hit) {
  return hit.kind === "click" && hit.text ? `${hit.value} “${hit.text}”` : hit.value;
}

export class SearchPanel {
  #kind;
  #query;
  #results;
  #onOpen;
  #titleOf;
  #asked = 0;

  /**
   * @param {HTMLElement} root an empty element the form fills
   * @param {object} options
   * @param {(recordingId: string, offsetMs: number) => void} options.onOpen a hit was picked
   * @param {(recordingId: string) => string} [options.titleOf] a recording's name for the list
   */
  constructor(root, { onOpen, titleOf = (id) => id }) {
    this.#onOpen = onOpen;
    this.#titleOf = titleOf;
    this.#kind = h("select", { name: "find-kind", "aria-label": "Find what" }, ...KINDS.map(([value, label]) => h("option", { value }, label)));
    this.#query = h("input", { type: "search", name: "find", placeholder: "What to find…", autocomplete: "off" });
    this.#results = h("div", { class: "find-results", hidden: true, "aria-live": "polite" });
    const form = h("form", { class: "recording-filters find-form", role: "search", onsubmit: (event) => {
      event.preventDefault();
      this.#find();
    } }, this.#kind, this.#query, h("button", { type: "submit", class: "button button--small" }, "Find"));
    root.replaceChildren(form, this.#results);
  }

  async #find() {
    const query = this.#query.value.trim();
    const mine = ++this.#asked;
    if (!query) {
      this.#results.hidden = true;
      return;
    }
    this.#results.hidden = false;
    this.#results.replaceChildren(h("p", { class: "muted", text: "Searching…" }));
    try {
      const { hits, truncated } = await searchRecordings({ kind: this.#kind.value, query });
      if (mine !== this.#asked) return;
      if (!hits.length) {
        this.#results.replaceChildren(h("p", { class: "muted", text: `Nothing found for “${query}”.` }));
        return;
      }
      const items = hits.map((hit) => h("li", {}, h("button", {
        type: "button",
        class: "find-hit",
        dataset: { recording: hit.recording_id, offset: String(hit.offset_ms) },
        onclick: () => this.#onOpen(hit.recording_id, hit.offset_ms),
      },
      h("span", { class: "find-hit-where", text: `${this.#titleOf(hit.recording_id)} · ${formatClock(hit.offset_ms)}` }),
      h("span", { class: "find-hit-what", text: hitText(hit), title: hitText(hit) }))));
      this.#results.replaceChildren(h("ul", { class: "find-hit-list" }, ...items),
        truncated ? h("p", { class: "muted", text: `The first ${hits.length} hits; refine the search for others.` }) : "");
    } catch (error) {
      if (mine !== this.#asked) return;
      const why = error.status === 401 ? "searching needs an API key" : error.message;
      this.#results.replaceChildren(h("p", { class: "inline-error", role: "alert", text: `Could not search: ${why}` }));
    }
  }
}
