// A stored recording (or what a live session recorded so far) played by rrweb's own
// Replayer: play, pause, seek, speed and skip-inactive are its play(t), pause(t) and
// setConfig(); this class only keeps the state the controls show and scales the page
// into the stage as the live player does. Loaded with the player chunk, never on the
// live path.
import { Replayer } from "rrweb";
import { canvasPlugin } from "./canvas.js";
import { fitInto } from "./fit.js";
import { INACTIVE_THRESHOLD_MS, SPEEDS, clampTime, firstPageAt } from "./markers.js";

/** @enum {string} */
export const PlaybackState = Object.freeze({
  PAUSED: "paused",
  PLAYING: "playing",
  FINISHED: "finished", // paused at the end; play() starts over
});

const REPLAYER_CONFIG = {
  mouseTail: false,
  UNSAFE_replayCanvas: false,
  showWarning: false,
  triggerFocus: false,
  inactivePeriodThreshold: INACTIVE_THRESHOLD_MS,
};

/**
 * Events (EventTarget): "change" when the state, speed or skipping changed; "time" on
 * every animation frame while playing (and after a seek), detail {currentTime}.
 */
export class RecordingPlayer extends EventTarget {
  #stage;
  #layer;
  #replayer;
  #state = PlaybackState.PAUSED;
  #speed = 1;
  #skipInactive = false;
  #skipping = false;
  #size = null;
  #frame = null;
  #resizeObserver;
  #totalTime;
  #firstPage; // seeks land no earlier: before it, a paused replay would show a stale page

  /**
   * @param {HTMLElement} stage an element the player fills (absolutely positioned layers)
   * @param {Array<object>} events rrweb events, at least a Meta and a FullSnapshot
   * @param {{speed?: number, skipInactive?: boolean}} [options]
   */
  constructor(stage, events, { speed = 1, skipInactive = false } = {}) {
    super();
    if (events.length < 2) throw new Error("the recording has fewer than 2 events: nothing to play yet");
    this.#stage = stage;
    this.#speed = speed;
    this.#skipInactive = skipInactive;
    this.#layer = document.createElement("div");
    this.#layer.className = "player-layer";
    stage.append(this.#layer);
    this.#replayer = new Replayer(events, {
      ...REPLAYER_CONFIG, root: this.#layer, speed, skipInactive, plugins: [canvasPlugin()],
    });
    this.#totalTime = this.#replayer.getMetaData().totalTime;
    this.#firstPage = Math.min(firstPageAt(events), this.#totalTime + 1);
    this.#replayer.on("resize", ({ width, height }) => {
      this.#size = { width, height };
      this.#fit();
    });
    this.#replayer.on("finish", () => {
      this.#stopClock();
      this.#skipping = false;
      this.#setState(PlaybackState.FINISHED);
      this.#emit("time", { currentTime: this.#totalTime });
    });
    this.#replayer.on("skip-start", () => this.#setSkipping(true));
    this.#replayer.on("skip-end", () => this.#setSkipping(false));
    this.#resizeObserver = new ResizeObserver(() => this.#fit());
    this.#resizeObserver.observe(stage);
  }

  get state() {
    return this.#state;
  }

  get playing() {
    return this.#state === PlaybackState.PLAYING;
  }

  /** The recording's length in ms (first event to last). */
  get totalTime() {
    return this.#totalTime;
  }

  /** Where playback is, in ms from the first event. */
  get currentTime() {
    if (this.#state === PlaybackState.FINISHED) return this.#totalTime;
    return clampTime(this.#replayer.getCurrentTime(), this.#totalTime);
  }

  get speed() {
    return this.#speed;
  }

  get skipInactive() {
    return this.#skipInactive;
  }

  /** rrweb is fast-forwarding through an inactive stretch right now. */
  get skipping() {
    return this.#skipping;
  }

  get pageSize() {
    return this.#size;
  }

  /** The document rebuilt in the replay's iframe. */
  iframeDocument() {
    return this.#replayer.iframe?.contentDocument ?? null;
  }

  play() {
    if (this.playing) return;
    const from = this.#state === PlaybackState.FINISHED || this.currentTime >= this.#totalTime ? 0 : this.currentTime;
    this.#replayer.play(from);
    this.#setState(PlaybackState.PLAYING);
    this.#startClock();
  }

  pause() {
    if (!this.playing) return;
    const at = this.currentTime;
    this.#endSkip();
    this.#replayer.pause(at);
    this.#stopClock();
    this.#setState(PlaybackState.PAUSED);
    this.#emit("time", { currentTime: at });
  }

  toggle() {
    if (this.playing) this.pause();
    else this.play();
  }

  /**
   * Goes to `ms` (no earlier than the first page) and goes on playing if it was. The
   * Replayer applies at a seek what happened strictly before it, so the end is 1 ms past
   * the last event: a navigation at the very end is shown too.
   */
  seek(ms) {
    const at = Math.max(this.#firstPage, clampTime(ms, this.#totalTime + 1));
    this.#endSkip();
    if (this.playing) {
      this.#replayer.play(at);
    } else {
      this.#replayer.pause(at);
      this.#setState(PlaybackState.PAUSED);
    }
    this.#emit("time", { currentTime: Math.min(at, this.#totalTime) });
  }

  setSpeed(speed) {
    if (!SPEEDS.includes(speed)) throw new RangeError(`speed ${speed} is not one of ${SPEEDS.join(", ")}`);
    if (speed === this.#speed) return;
    this.#speed = speed;
    // The Replayer's timer takes a new speed reliably only from a fresh play().
    const wasPlaying = this.playing;
    const at = this.currentTime;
    if (wasPlaying) this.#replayer.pause();
    this.#replayer.setConfig({ speed });
    if (wasPlaying) this.#replayer.play(at);
    this.#emit("change");
  }

  setSkipInactive(on) {
    if (on === this.#skipInactive) return;
    this.#skipInactive = on;
    this.#replayer.setConfig({ skipInactive: on });
    if (!on) this.#setSkipping(false);
    this.#emit("change");
  }

  destroy() {
    this.#stopClock();
    this.#resizeObserver.disconnect();
    try {
      this.#replayer.pause();
      this.#replayer.destroy();
    } catch (error) {
      console.warn("rrstream: replayer teardown failed", error);
    }
    this.#layer.remove();
  }

  #startClock() {
    this.#stopClock();
    const tick = () => {
      this.#frame = requestAnimationFrame(tick);
      this.#emit("time", { currentTime: this.currentTime });
    };
    this.#frame = requestAnimationFrame(tick);
  }

  #stopClock() {
    if (this.#frame !== null) cancelAnimationFrame(this.#frame);
    this.#frame = null;
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("change");
  }

  // A skip under way ends at a pause or a seek. rrweb keeps fast-forwarding across a
  // seek otherwise (its next interaction stays the one it skips to) and says nothing;
  // turning skipInactive off and on again is its public way back to normal speed.
  #endSkip() {
    if (this.#skipInactive && this.#replayer.speedService.state.matches("skipping")) {
      this.#replayer.setConfig({ skipInactive: false });
      this.#replayer.setConfig({ skipInactive: true });
    }
    this.#setSkipping(false);
  }

  #setSkipping(on) {
    if (on === this.#skipping) return;
    this.#skipping = on;
    this.#emit("change");
  }

  #fit() {
    if (!this.#size?.width) return;
    const box = { width: this.#stage.clientWidth, height: this.#stage.clientHeight };
    const { scale, x, y } = fitInto(box, this.#size);
    const wrapper = this.#replayer.wrapper;
    wrapper.style.width = `${this.#size.width}px`;
    wrapper.style.height = `${this.#size.height}px`;
    wrapper.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
