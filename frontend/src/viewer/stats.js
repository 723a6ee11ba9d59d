// The statistics panel: what arrives (rates, latency), what the server reports
// (status messages), and the stream's own bookkeeping.
import { h } from "./dom.js";
import { SlidingWindow } from "./meter.js";

const WINDOW_MS = 5000;

const FIELDS = [
  ["connection", "Connection"],
  ["state", "Session"],
  ["url", "Page URL"],
  ["viewers", "Viewers"],
  ["eventsPerS", "Events/s"],
  ["kBPerS", "kB/s in"],
  ["latency", "Latency page→viewer", "Median over 5 s of (viewer clock − page timestamp of a frame's last event), over frames that arrived live: the checkout and catch-up sent at a join or resume are history, not latency; an idle page shows –. The two clocks may differ."],
  ["lastSeq", "Last seq"],
  ["resets", "Resets"],
  ["segments", "Checkouts"],
  ["ratio", "Compression", "Raw ÷ compressed bytes, from the server's status."],
  ["step", "Workflow step"],
];

function formatNumber(value, digits = 0) {
  return value == null || Number.isNaN(value) ? "–" : value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export class StatsPanel {
  #values = new Map(); // field -> <dd>
  #events = new SlidingWindow({ windowMs: WINDOW_MS });
  #bytes = new SlidingWindow({ windowMs: WINDOW_MS });
  #latency = new SlidingWindow({ windowMs: WINDOW_MS });
  #replay = false;
  #status = null;
  #counters = null;
  #connection = "closed";
  #lastResetReason = "";

  /** @param {HTMLElement} root an empty element the panel fills */
  constructor(root) {
    const list = h("dl", { class: "stats-grid" });
    for (const [key, label, help] of FIELDS) {
      const value = h("dd", { class: `stat-value stat-${key}`, text: "–" });
      this.#values.set(key, value);
      list.append(h("div", { class: `stat stat--${key}`, title: help }, h("dt", { text: label }), value));
    }
    root.replaceChildren(list);
    setInterval(() => this.render(), 1000);
  }

  /**
   * A new session or recording: forget everything.
   * @param {{replay?: boolean}} [options] replay: a stored recording, whose events are
   *   as old as the recording, so there is no latency to show
   */
  reset({ replay = false } = {}) {
    this.#replay = replay;
    for (const window of [this.#events, this.#bytes, this.#latency]) window.reset();
    this.#status = this.#counters = null;
    this.#lastResetReason = "";
    this.render();
  }

  /**
   * An applied frame, with the stream's counters after it.
   * @param {boolean} live it was sent as it happened (LiveStream's "frame" detail)
   */
  onFrame(frame, events, counters, live) {
    this.#events.add(events);
    this.#bytes.add(frame.byteLength);
    if (live && !this.#replay) this.#latency.add(Date.now() - frame.lastTs);
    this.#counters = counters;
  }

  onMessage(message) {
    if (message.type === "status") this.#status = message;
    else if (message.type === "reset") this.#lastResetReason = message.reason ?? "";
    else if (message.type === "welcome" || message.type === "end") this.#status = { ...this.#status, state: message.state };
    this.render();
  }

  onConnection(state, counters) {
    this.#connection = state;
    this.#counters = counters;
    this.render();
  }

  render() {
    const status = this.#status ?? {};
    const counters = this.#counters ?? {};
    const latency = this.#latency.median();
    const ratio = status.bytes_compressed ? status.bytes_raw / status.bytes_compressed : null;
    this.#set("connection", this.#connection);
    this.#set("state", status.state ?? "–", status.error ? `error: ${status.error}` : "");
    this.#set("url", status.url ?? "–", status.url ?? "");
    this.#set("viewers", formatNumber(status.viewers));
    this.#set("eventsPerS", formatNumber(this.#events.rate(), 1));
    this.#set("kBPerS", formatNumber(this.#bytes.rate() / 1000, 1));
    this.#set("latency", this.#replay ? "– (replay)" : latency == null ? "–" : `${formatNumber(latency)} ms`);
    this.#set("lastSeq", counters.lastSeq == null ? "–" : String(counters.lastSeq));
    this.#set("resets", formatNumber(counters.resets), this.#lastResetReason ? `last: ${this.#lastResetReason}` : "");
    this.#set("segments", formatNumber(counters.segmentsStarted));
    this.#set("ratio", ratio == null ? "–" : `${formatNumber(ratio, 1)}×`);
    this.#set("step", status.steps_total ? `${status.step ?? "–"} / ${status.steps_total}` : "–");
  }

  #set(key, text, title = "") {
    const el = this.#values.get(key);
    if (el.textContent !== text) el.textContent = text;
    el.title = title || text;
    if (key === "connection" || key === "state") el.dataset.value = text;
  }
}
