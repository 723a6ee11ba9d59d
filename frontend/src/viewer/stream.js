// One session's live stream: frames in order from the connection, decoded into
// batches, handed to the player. Owns the sequence bookkeeping: what was
// applied last, what a gap is, when to start over.
// No DOM: the player and the connection are injected, so node tests drive it.
import { BatchDecoder, SUPPORTED_CODECS } from "./batches.js";
import { Connection, ConnectionState, streamUrl } from "./connection.js";
import { parseFrame } from "./frame.js";

/**
 * Events (EventTarget):
 * - "frame"   detail {frame, events}: a frame was applied
 * - "message" detail: a control message (welcome, status, reset, end, error)
 * - "state"   detail {state, detail}: the connection state changed
 * - "problem" detail {message}: something was dropped or restarted
 */
export class LiveStream extends EventTarget {
  #sessionId;
  #player;
  #decoder = new BatchDecoder();
  #connection;
  #log;
  #counters = { lastSeq: null, eventsApplied: 0, framesReceived: 0, bytesReceived: 0, resets: 0, segmentsStarted: 0 };

  /**
   * @param {object} options
   * @param {string} options.sessionId
   * @param {{startSegment(baselineSource: number): void, addEvent(event: object): void}} options.player
   * @param {string} [options.url] the stream's WebSocket URL (default: this origin's)
   * @param {(options: object) => Connection} [options.connect] builds the connection
   * @param {{warn: Function}} [options.log]
   */
  constructor({ sessionId, player, url = streamUrl(sessionId), connect = (options) => new Connection(options), log = console }) {
    super();
    this.#log = log;
    this.#sessionId = sessionId;
    this.#player = player;
    this.#connection = connect({
      url,
      resumeAfter: () => this.#counters.lastSeq,
      onFrame: (data) => this.#onFrame(data),
      onMessage: (message) => this.#onMessage(message),
      onState: (state, detail) => this.#emit("state", { state, detail }),
    });
  }

  get sessionId() {
    return this.#sessionId;
  }

  get connection() {
    return this.#connection;
  }

  get counters() {
    return { ...this.#counters };
  }

  start() {
    this.#connection.connect();
  }

  /** The user's Reconnect: resume where we are if the server still can. */
  reconnect() {
    this.#connection.reconnect({ immediate: true });
  }

  close() {
    this.#connection.close();
  }

  #onFrame(data) {
    this.#counters.framesReceived += 1;
    this.#counters.bytesReceived += data.byteLength;
    let frame;
    try {
      frame = parseFrame(data);
    } catch (error) {
      this.#startOver(`bad frame: ${error.message}`);
      return;
    }
    const { lastSeq } = this.#counters;
    if (!frame.segmentStart) {
      // A segment start carries its own context; anything else must continue ours.
      if (lastSeq !== null && frame.lastSeq <= lastSeq) {
        this.#problem(`ignored a repeated frame ${frame.firstSeq}..${frame.lastSeq}`);
        return;
      }
      if (lastSeq === null || !this.#decoder.started || frame.firstSeq !== lastSeq + 1) {
        this.#startOver(`gap: expected ${lastSeq === null ? "a segment start" : lastSeq + 1}, got ${frame.firstSeq}`);
        return;
      }
    }
    let batches;
    try {
      batches = this.#decoder.decode(frame);
    } catch (error) {
      this.#startOver(`cannot decode frame ${frame.firstSeq}: ${error.message}`);
      return;
    }
    this.#checkCounts(frame, batches);
    if (frame.reset) this.#counters.resets += 1;
    if (frame.segmentStart) {
      this.#counters.segmentsStarted += 1;
      this.#player.startSegment(batches[0]?.[0]?.timestamp ?? frame.firstTs);
    }
    let events = 0;
    for (const batch of batches) {
      for (const event of batch) this.#player.addEvent(event);
      events += batch.length;
    }
    this.#counters.eventsApplied += events;
    this.#counters.lastSeq = frame.lastSeq;
    this.#connection.markHealthy();
    this.#emit("frame", { frame, events });
  }

  #onMessage(message) {
    if (message.type === "welcome" && !SUPPORTED_CODECS.includes(message.codec)) {
      this.#problem(`unsupported codec ${message.codec}`);
      this.#connection.close(`unsupported codec ${message.codec}`);
    }
    this.#emit("message", message);
  }

  // Drop what cannot be continued and join afresh; the server answers with a
  // RESET frame at its latest checkout. The player keeps its picture meanwhile.
  #startOver(reason) {
    this.#problem(reason);
    this.#counters.lastSeq = null;
    this.#decoder.reset();
    if (this.#connection.state !== ConnectionState.ENDED) this.#connection.reconnect({ reason });
  }

  #checkCounts(frame, batches) {
    const expected = frame.lastSeq - frame.firstSeq + 1;
    const events = batches.reduce((sum, batch) => sum + batch.length, 0);
    if (batches.length !== expected || events !== frame.eventCount) {
      this.#problem(`frame ${frame.firstSeq}..${frame.lastSeq}: ${batches.length} batches / ${events} events, header says ${expected} / ${frame.eventCount}`);
    }
  }

  #problem(message) {
    this.#log.warn(`rrstream: ${message}`);
    this.#emit("problem", { message });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
