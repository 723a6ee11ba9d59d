// The player's controls under the page: play/pause, the clock, a timeline with markers
// (navigations, clicks, errors) and the inactive stretches shaded, speeds 1x-8x, skip
// inactivity, "Find" (the recording's search: a hit seeks there), and "Back to live"
// for a rewound live session. It drives a RecordingPlayer and draws what it says; rrweb
// does the playing.
import { h } from "./dom.js";
import { INACTIVE_THRESHOLD_MS, SPEEDS, adjacentMarker, countMarkers, formatClock } from "./markers.js";
import { hitText } from "./search-panel.js";

const KIND_LABEL = { navigation: "Page", click: "Click", error: "Error" };
const SEARCH_KINDS = [["text", "Text"], ["url", "URL"], ["click", "Click"]];
const HIT_LABEL = { text: "text", url: "page", click: "click" };
const KEY_STEP_MS = 5000;

function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

export class Timeline {
  #root;
  #player;
  #markers;
  #playButton;
  #clock;
  #track;
  #fill;
  #handle;
  #speedButtons = new Map();
  #skip;
  #status;
  #dragging = false;
  #dragAt = 0;
  #keyboard;
  #listeners = [];

  /**
   * @param {HTMLElement} root an empty element the controls fill
   * @param {import("./recording-player.js").RecordingPlayer} player
   * @param {object} options
   * @param {Array<object>} options.markers from timelineMarkers()
   * @param {Array<{start: number, end: number}>} options.inactive from inactivePeriods()
   * @param {(() => void)|null} [options.onBackToLive] shown as "Back to live" when given
   * @param {string} [options.note] a word on what is played ("recorded so far")
   * @param {((kind: string, query: string) => Promise<{hits: object[], truncated: boolean}>)|null} [options.onSearch]
   *   the recording's search; shown as "Find" when given
   * @param {(offsetMs: number) => void} [options.seekToMoment] how a search hit is shown
   */
  constructor(root, player, { markers, inactive, onBackToLive = null, note = "", onSearch = null, seekToMoment = (ms) => player.seek(ms) }) {
    this.#root = root;
    this.#player = player;
    this.#markers = markers;
    const total = player.totalTime;
    const percent = (ms) => `${total > 0 ? Math.min(100, (100 * ms) / total) : 0}%`;

    this.#playButton = h("button", { type: "button", class: "button button--small playback-play", onclick: () => player.toggle() });
    this.#clock = h("span", { class: "playback-clock", "aria-live": "off" });
    this.#fill = h("div", { class: "timeline-fill" });
    this.#handle = h("div", { class: "timeline-handle" });
    const shading = inactive.map((p) => h("div", {
      class: "timeline-inactive",
      style: `left: ${percent(p.start)}; width: ${percent(p.end - p.start)}`,
      title: `No interaction for ${formatClock(p.end - p.start)} (skipped with "Skip inactivity")`,
    }));
    const ticks = markers.map((marker) => h("button", {
      type: "button",
      class: `timeline-marker timeline-marker--${marker.kind}`,
      style: `left: ${percent(marker.at)}`,
      title: `${KIND_LABEL[marker.kind]} at ${formatClock(marker.at)}: ${marker.label}`,
      "aria-label": `${KIND_LABEL[marker.kind]} at ${formatClock(marker.at)}: ${marker.label}`,
      dataset: { kind: marker.kind, at: String(marker.at) },
      onclick: (event) => {
        event.stopPropagation();
        player.seek(marker.at);
      },
    }));
    this.#track = h("div", {
      class: "timeline-track",
      role: "slider",
      tabindex: "0",
      "aria-label": "Playback position",
      "aria-valuemin": "0",
      "aria-valuemax": String(Math.round(total)),
      onpointerdown: (event) => this.#pointerDown(event),
      onkeydown: (event) => this.#key(event),
    }, h("div", { class: "timeline-rail" }), this.#fill, ...shading, ...ticks, this.#handle);

    const speeds = h("div", { class: "playback-speeds", role: "group", "aria-label": "Speed" });
    for (const speed of SPEEDS) {
      const button = h("button", { type: "button", class: "button button--small playback-speed", dataset: { speed: String(speed) }, onclick: () => player.setSpeed(speed) }, `${speed}x`);
      this.#speedButtons.set(speed, button);
      speeds.append(button);
    }
    this.#skip = h("input", { type: "checkbox", class: "playback-skip-input", onchange: () => player.setSkipInactive(this.#skip.checked) });
    const skip = h("label", { class: "playback-skip", title: `Fast-forward through stretches of more than ${INACTIVE_THRESHOLD_MS / 1000} s without a click, key or scroll` }, this.#skip, "Skip inactivity");
    const counts = countMarkers(markers);
    const legend = h("div", { class: "playback-legend" },
      h("span", { class: "legend-item legend-item--navigation", text: plural(counts.navigation, "page") }),
      h("span", { class: "legend-item legend-item--click", text: plural(counts.click, "click") }),
      h("span", { class: "legend-item legend-item--error", text: plural(counts.error, "error") }),
      note ? h("span", { class: "playback-note", text: note }) : null);
    this.#status = h("span", { class: "playback-status", role: "status" });
    const back = onBackToLive
      ? h("button", { type: "button", class: "button button--small button--live playback-live", onclick: onBackToLive }, "Back to live")
      : null;

    const find = onSearch ? this.#searchForm(onSearch, seekToMoment) : null;
    root.replaceChildren(
      h("div", { class: "playback-row" }, this.#playButton, this.#clock, this.#track, back),
      h("div", { class: "playback-row playback-row--options" }, speeds, skip, this.#status, find?.form, legend),
      find?.results,
    );
    root.hidden = false;

    const on = (type, handler) => {
      player.addEventListener(type, handler);
      this.#listeners.push(() => player.removeEventListener(type, handler));
    };
    on("time", (event) => this.#drawTime(event.detail.currentTime));
    on("change", () => this.#drawState());
    this.#keyboard = (event) => this.#globalKey(event);
    document.addEventListener("keydown", this.#keyboard);
    this.#drawState();
    this.#drawTime(player.currentTime);
  }

  destroy() {
    for (const off of this.#listeners) off();
    this.#listeners = [];
    document.removeEventListener("keydown", this.#keyboard);
    this.#root.replaceChildren();
  }

  // "Find": one kind and a query; the hits listed under the controls, each a seek.
  #searchForm(onSearch, seekToMoment) {
    const kind = h("select", { name: "search-kind", class: "playback-search-kind", "aria-label": "Find what" },
      ...SEARCH_KINDS.map(([value, label]) => h("option", { value }, label)));
    const query = h("input", { type: "search", name: "search", class: "playback-search-input", placeholder: "Find in this recording…", autocomplete: "off" });
    const results = h("div", { class: "playback-hits", hidden: true, "aria-live": "polite" });
    let asked = 0;
    const form = h("form", { class: "playback-search", role: "search", onsubmit: async (event) => {
      event.preventDefault();
      const text = query.value.trim();
      const mine = ++asked;
      if (!text) {
        results.hidden = true;
        return;
      }
      results.hidden = false;
      results.replaceChildren(h("p", { class: "muted", text: "Searching…" }));
      try {
        const { hits, truncated } = await onSearch(kind.value, text);
        if (mine !== asked) return;
        results.replaceChildren(...this.#hitList(hits, truncated, text, seekToMoment));
      } catch (error) {
        if (mine !== asked) return;
        const why = error.status === 401 || error.status === 403 ? "searching needs an API key" : error.message;
        results.replaceChildren(h("p", { class: "inline-error", role: "alert", text: `Could not search: ${why}` }));
      }
    } }, kind, query, h("button", { type: "submit", class: "button button--small" }, "Find"));
    return { form, results };
  }

  #hitList(hits, truncated, text, seekToMoment) {
    if (!hits.length) return [h("p", { class: "muted", text: `Nothing found for “${text}”.` })];
    const items = hits.map((hit) => {
      const what = hitText(hit);
      return h("li", {}, h("button", {
        type: "button",
        class: "playback-hit",
        dataset: { offset: String(hit.offset_ms), kind: hit.kind },
        onclick: () => seekToMoment(hit.offset_ms),
      }, h("span", { class: "playback-hit-time", text: formatClock(hit.offset_ms) }),
      h("span", { class: "playback-hit-kind", text: HIT_LABEL[hit.kind] ?? hit.kind }),
      h("span", { class: "playback-hit-value", text: what, title: what })));
    });
    const list = [h("ul", { class: "playback-hit-list" }, ...items)];
    if (truncated) list.push(h("p", { class: "muted", text: `The first ${hits.length} hits; refine the search for others.` }));
    return list;
  }

  #drawState() {
    const player = this.#player;
    const playing = player.playing;
    this.#playButton.textContent = playing ? "Pause" : player.state === "finished" ? "Replay" : "Play";
    this.#playButton.setAttribute("aria-pressed", String(playing));
    this.#playButton.dataset.state = player.state;
    for (const [speed, button] of this.#speedButtons) {
      button.classList.toggle("active", speed === player.speed);
      button.setAttribute("aria-pressed", String(speed === player.speed));
    }
    this.#skip.checked = player.skipInactive;
    this.#status.textContent = player.skipping ? "Skipping inactivity…" : "";
    this.#root.dataset.state = player.state;
  }

  #drawTime(ms) {
    const total = this.#player.totalTime;
    const at = this.#dragging ? this.#dragAt : ms;
    const share = total > 0 ? Math.min(1, at / total) : 0;
    this.#fill.style.width = `${100 * share}%`;
    this.#handle.style.left = `${100 * share}%`;
    const text = `${formatClock(at)} / ${formatClock(total)}`;
    if (this.#clock.textContent !== text) this.#clock.textContent = text;
    this.#track.setAttribute("aria-valuenow", String(Math.round(at)));
    this.#track.setAttribute("aria-valuetext", text);
  }

  #timeAt(clientX) {
    const rect = this.#track.getBoundingClientRect();
    const share = rect.width > 0 ? Math.min(1, Math.max(0, (clientX - rect.left) / rect.width)) : 0;
    return share * this.#player.totalTime;
  }

  // Dragging shows where it would go; the seek itself happens once, on release (each
  // seek rebuilds the page from the checkout before it).
  #pointerDown(event) {
    if (event.button !== 0 || event.target.closest(".timeline-marker")) return;
    event.preventDefault();
    this.#track.focus();
    this.#track.setPointerCapture(event.pointerId);
    this.#dragging = true;
    this.#dragAt = this.#timeAt(event.clientX);
    this.#drawTime(this.#dragAt);
    const move = (e) => {
      this.#dragAt = this.#timeAt(e.clientX);
      this.#drawTime(this.#dragAt);
    };
    const up = (e) => {
      this.#track.removeEventListener("pointermove", move);
      this.#track.removeEventListener("pointerup", up);
      this.#track.removeEventListener("pointercancel", up);
      this.#dragging = false;
      if (e.type === "pointerup") this.#player.seek(this.#timeAt(e.clientX));
      else this.#drawTime(this.#player.currentTime);
    };
    this.#track.addEventListener("pointermove", move);
    this.#track.addEventListener("pointerup", up);
    this.#track.addEventListener("pointercancel", up);
  }

  #key(event) {
    const player = this.#player;
    const moves = {
      ArrowLeft: () => player.seek(player.currentTime - KEY_STEP_MS),
      ArrowRight: () => player.seek(player.currentTime + KEY_STEP_MS),
      Home: () => player.seek(0),
      End: () => player.seek(player.totalTime),
      PageUp: () => this.#jump(-1),
      PageDown: () => this.#jump(1),
    };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    move();
  }

  #jump(direction) {
    const marker = adjacentMarker(this.#markers, this.#player.currentTime, direction);
    if (marker) this.#player.seek(marker.at);
  }

  // Space plays and pauses from anywhere but a field or a button of the page.
  #globalKey(event) {
    if (event.key !== " " || event.defaultPrevented) return;
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, button, [contenteditable]")) return;
    event.preventDefault();
    this.#player.toggle();
  }
}
