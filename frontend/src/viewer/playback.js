// The player chunk's entry (main.js imports it only when a recording is played or a
// live session rewound): rrweb events → a RecordingPlayer on the stage, paused at the
// start, and its Timeline in the controls, markers read from the same events.
import { inactivePeriods, momentTarget, timelineMarkers } from "./markers.js";
import { RecordingPlayer } from "./recording-player.js";
import { Timeline } from "./timeline.js";

export class Playback {
  #player;
  #timeline;
  #markers;
  #inactive;
  #events;

  /**
   * @param {HTMLElement} stage where the replayed page goes
   * @param {HTMLElement} controls where the timeline goes
   * @param {Array<object>} events the recording's rrweb events
   * @param {object} [options]
   * @param {(() => void)|null} [options.onBackToLive] a rewound live session's way back
   * @param {string} [options.note] shown beside the legend
   * @param {() => void} [options.onChange] the player's state changed
   * @param {((kind: string, query: string) => Promise<object>)|null} [options.onSearch] the
   *   recording's search (GET /recordings/{id}/search), for "Find"
   */
  constructor(stage, controls, events, { onBackToLive = null, note = "", onChange = () => {}, onSearch = null } = {}) {
    this.#events = events;
    this.#markers = timelineMarkers(events);
    this.#inactive = inactivePeriods(events);
    this.#player = new RecordingPlayer(stage, events);
    try {
      this.#timeline = new Timeline(controls, this.#player, {
        markers: this.#markers, inactive: this.#inactive, onBackToLive, note, onSearch,
        seekToMoment: (offset) => this.seekToMoment(offset),
      });
    } catch (error) {
      this.#player.destroy();
      throw error;
    }
    this.#player.addEventListener("change", () => onChange());
  }

  get player() {
    return this.#player;
  }

  get markers() {
    return this.#markers;
  }

  /** What the test hook and the header show. */
  describe() {
    const p = this.#player;
    return {
      state: p.state,
      currentTime: p.currentTime,
      totalTime: p.totalTime,
      speed: p.speed,
      skipInactive: p.skipInactive,
      skipping: p.skipping,
      markers: this.#markers.map((m) => ({ ...m })),
      inactive: this.#inactive.map((p) => ({ ...p })),
    };
  }

  /** Shows the moment at `offset` ms (a search hit's, a link's `t=`): its page on screen. */
  seekToMoment(offset) {
    this.#player.seek(momentTarget(this.#events, offset));
  }

  iframeDocument() {
    return this.#player.iframeDocument();
  }

  destroy() {
    try {
      this.#timeline.destroy();
    } finally {
      this.#player.destroy();
    }
  }
}
