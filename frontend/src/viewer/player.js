// The replayed page: an rrweb Replayer in live mode per segment, scaled to fit.
//
// Each checkout (a segment start) gets a fresh Replayer so memory stays flat:
// rrweb keeps every event it was given. The new one builds in a hidden layer
// and takes over once its full snapshot is rebuilt, so the picture does not
// blank out for the start-up buffer at every checkout.
import { Replayer } from "rrweb";
import { canvasPlugin } from "./canvas.js";
import { fitInto } from "./fit.js";

const REPLAYER_CONFIG = {
  liveMode: true,
  mouseTail: false,
  UNSAFE_replayCanvas: false,
  // In live mode rrweb marks the document "paused", which would freeze CSS animations.
  pauseAnimation: false,
  // Node-not-found warnings are routine in live mode (we may join mid-mutation).
  showWarning: false,
  // A joining viewer's backlog is older than the clock's start and is applied at once
  // ("sync"). With the virtual DOM, rrweb collects sync mutations there and writes them
  // out only on a flush that live mode never does: the page froze at the checkout.
  useVirtualDom: false,
};

export class LivePlayer {
  #stage;
  #bufferMs;
  #swapTimeoutMs;
  #onChange;
  #active = null; // {layer, replayer, width, height}
  #pending = null; // the next segment's replayer, until its snapshot is built
  #resizeObserver;

  /**
   * @param {HTMLElement} stage the root element (#player); replayers live in layers inside it
   * @param {object} [options]
   * @param {number} [options.bufferMs] how far behind the page's own timeline to play
   * @param {() => void} [options.onChange] a replayer was shown or the page size changed
   */
  constructor(stage, { bufferMs = 200, swapTimeoutMs = 3000, onChange = () => {} } = {}) {
    this.#stage = stage;
    this.#bufferMs = bufferMs;
    this.#swapTimeoutMs = swapTimeoutMs;
    this.#onChange = onChange;
    this.#resizeObserver = new ResizeObserver(() => this.#fitAll());
    this.#resizeObserver.observe(stage);
  }

  /** True once a segment was started (something is or will be on screen). */
  get hasContent() {
    return this.#active !== null;
  }

  /** The page size from the latest Meta event, or null. */
  get pageSize() {
    return this.#active?.width ? { width: this.#active.width, height: this.#active.height } : null;
  }

  /** The visible replayer's iframe (the replayed page, scaled by fit.js), or null. */
  iframeElement() {
    return this.#active?.replayer.iframe ?? null;
  }

  /** The document rebuilt inside the visible replayer's iframe, or null. */
  iframeDocument() {
    return this.#active?.replayer.iframe?.contentDocument ?? null;
  }

  /**
   * A checkout begins: builds a new Replayer whose clock starts `bufferMs`
   * before the newest event of the frame that starts the segment. A live
   * checkout's frame is a few ms of events; a joining (or reset) viewer's frame
   * is the segment so far, up to `checkout_every_ms` of it, which then applies
   * at once instead of replaying in real time behind the page. The baseline
   * comes from the page's timestamps, never from this machine's clock, which
   * may differ.
   * @param {number} firstTimestamp the checkout's first event timestamp
   * @param {number} [newestTimestamp] the newest event timestamp in its frame
   */
  startSegment(firstTimestamp, newestTimestamp = firstTimestamp) {
    const entry = this.#create(Math.max(firstTimestamp, newestTimestamp) - this.#bufferMs);
    if (!this.#active) {
      this.#show(entry);
      return;
    }
    if (this.#pending) this.#discard(this.#pending);
    this.#pending = entry;
    entry.layer.classList.add("player-layer--pending");
    entry.replayer.on("fullsnapshot-rebuilded", () => this.#promote(entry));
    // Should the snapshot never build, show the new replayer anyway.
    entry.timer = setTimeout(() => this.#promote(entry), this.#bufferMs + this.#swapTimeoutMs);
  }

  /** Feeds an event to the current segment's replayer. */
  addEvent(event) {
    (this.#pending ?? this.#active)?.replayer.addEvent(event);
  }

  /** Removes every replayer (switching sessions). */
  clear() {
    if (this.#pending) this.#discard(this.#pending);
    if (this.#active) this.#discard(this.#active);
    this.#pending = this.#active = null;
    this.#onChange();
  }

  destroy() {
    this.clear();
    this.#resizeObserver.disconnect();
  }

  #create(baseline) {
    const layer = document.createElement("div");
    layer.className = "player-layer";
    this.#stage.append(layer);
    const replayer = new Replayer([], { ...REPLAYER_CONFIG, root: layer, plugins: [canvasPlugin()] });
    const entry = { layer, replayer, width: 0, height: 0, timer: null };
    // rrweb sizes the iframe from each Meta event; rescale after it did.
    replayer.on("resize", ({ width, height }) => {
      entry.width = width;
      entry.height = height;
      this.#fit(entry);
      if (entry === this.#active) this.#onChange();
    });
    replayer.startLive(baseline);
    return entry;
  }

  #show(entry) {
    this.#active = entry;
    this.#fit(entry);
    this.#onChange();
  }

  #promote(entry) {
    if (entry !== this.#pending) return;
    clearTimeout(entry.timer);
    this.#pending = null;
    entry.layer.classList.remove("player-layer--pending");
    if (this.#active) this.#discard(this.#active);
    this.#show(entry);
  }

  #discard(entry) {
    clearTimeout(entry.timer);
    const { replayer } = entry;
    try {
      // destroy() does not stop a live replayer's timer: stop it first so
      // queued events are not cast into a removed iframe.
      replayer.timer?.clear();
      replayer.destroy();
    } catch (error) {
      console.warn("rrstream: replayer teardown failed", error);
    }
    entry.layer.remove();
  }

  #fitAll() {
    for (const entry of [this.#active, this.#pending]) if (entry) this.#fit(entry);
  }

  #fit(entry) {
    if (!entry.width) return;
    const box = { width: this.#stage.clientWidth, height: this.#stage.clientHeight };
    const { scale, x, y } = fitInto(box, entry);
    const wrapper = entry.replayer.wrapper;
    wrapper.style.width = `${entry.width}px`;
    wrapper.style.height = `${entry.height}px`;
    wrapper.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
  }
}
