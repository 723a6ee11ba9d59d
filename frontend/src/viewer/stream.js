// One session's live stream: frames in order from the connection, decoded into
// batches, handed to the player. Owns the sequence bookkeeping: what was
// applied last, what a gap is, when to start over. Decoding is asynchronous,
// so frames queue and are decoded and applied one at a time, in arrival order.
// No DOM: the player and the connection are injected, so node tests drive it.
import { BatchDecoder, SUPPORTED_CODECS } from "./batches.js";
import { Connection, ConnectionState, streamUrl } from "./connection.js";
import { parseFrame } from "./frame.js";

/**
 * Events (EventTarget):
 * - "frame"   detail {frame, events, live}: a frame was applied; `live`: it was sent as
 *             its batches happened, not as the checkout or catch-up of a (re)join (a
 *             skipped frame, of superseded canvas pictures, is never live: it is old)
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
  #counters = { lastSeq: null, eventsApplied: 0, framesReceived: 0, bytesReceived: 0, resets: 0, segmentsStarted: 0, welcomes: 0, resume: null, picturesSkipped: 0 };
  // Frames wait here, in arrival order, for the one decode at a time. `accepted`
  // is the last sequence number queued: what a resume asks for, and what the
  // next frame must continue. A startOver() or close() bumps `epoch`, which
  // drops whatever is queued or still decoding.
  #queue = [];
  #accepted = null;
  #epoch = 0;
  #draining = null;
  // After a welcome the server first sends what it already had (a RESET frame from the
  // latest checkout on a join, the missed batches on a resume), then its first status
  // (serve/viewer_socket.py sends one right after the first delivery). Frames after that
  // status arrived as they happened: only their age is page-to-viewer latency.
  #caughtUp = false;

  /**
   * @param {object} options
   * @param {string} options.sessionId
   * @param {{startSegment(firstTimestamp: number, newestTimestamp: number): void, addEvent(event: object): void}} options.player
   * @param {string} [options.url] the stream's WebSocket URL (default: this origin's)
   * @param {string|null} [options.token] the viewer token for its hello
   * @param {(options: object) => Connection} [options.connect] builds the connection
   * @param {{warn: Function}} [options.log]
   */
  constructor({ sessionId, player, url = streamUrl(sessionId), token = null, connect = (options) => new Connection(options), log = console }) {
    super();
    this.#log = log;
    this.#sessionId = sessionId;
    this.#player = player;
    this.#connection = connect({
      url,
      token,
      resumeAfter: () => this.#accepted,
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

  /** The codec of the frames being received (the latest `welcome.codec` we can decode). */
  get codec() {
    return this.#decoder.codec;
  }

  /** Frames received but not applied yet. */
  get pending() {
    return this.#queue.length + (this.#draining ? 1 : 0);
  }

  /** Resolves once every frame received so far was applied or dropped. */
  async idle() {
    while (this.#draining) await this.#draining;
  }

  start() {
    this.#connection.connect();
  }

  /** The user's Reconnect: resume where we are if the server still can. */
  reconnect() {
    this.#connection.reconnect({ immediate: true });
  }

  close() {
    this.#drop();
    this.#connection.close();
  }

  // Checks the sequence at once, in arrival order; decoding and applying follow in the queue.
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
    const accepted = this.#accepted;
    if (frame.skipped && (frame.segmentStart || frame.payload.byteLength > 0)) {
      this.#startOver(`bad frame ${frame.firstSeq}..${frame.lastSeq}: skipped, yet it starts a segment or has a payload`);
      return;
    }
    if (!frame.segmentStart) {
      // A segment start carries its own context; anything else must continue ours.
      if (accepted !== null && frame.lastSeq <= accepted) {
        this.#problem(`ignored a repeated frame ${frame.firstSeq}..${frame.lastSeq}`);
        return;
      }
      if (accepted === null || frame.firstSeq !== accepted + 1) {
        this.#startOver(`gap: expected ${accepted === null ? "a segment start" : accepted + 1}, got ${frame.firstSeq}`);
        return;
      }
    }
    this.#accepted = frame.lastSeq;
    // The decoder is taken now: a codec change (a new welcome) applies to later frames only.
    const live = this.#caughtUp && !frame.reset && !frame.skipped;
    this.#queue.push({ frame, decoder: this.#decoder, epoch: this.#epoch, live });
    // #drain() awaits before it can finish, so it cannot clear #draining before this sets it.
    this.#draining ??= this.#drain();
  }

  async #drain() {
    try {
      while (this.#queue.length > 0) {
        const job = this.#queue.shift();
        let batches = [];
        try {
          // A skipped frame's pictures never entered the deflate stream: nothing to decode.
          if (!job.frame.skipped) batches = await job.decoder.decode(job.frame);
        } catch (error) {
          if (job.epoch === this.#epoch) this.#startOver(`cannot decode frame ${job.frame.firstSeq}: ${error.message}`);
          continue;
        }
        if (job.epoch !== this.#epoch) continue;
        try {
          this.#apply(job.frame, batches, job.live);
        } catch (error) {
          // The player is mid-frame: only a fresh checkout puts it right again.
          this.#startOver(`cannot apply frame ${job.frame.firstSeq}: ${error.message}`);
        }
      }
    } finally {
      this.#draining = null;
    }
  }

  #apply(frame, batches, live) {
    if (frame.skipped) this.#counters.picturesSkipped += frame.lastSeq - frame.firstSeq + 1;
    else this.#checkCounts(frame, batches);
    if (frame.reset) this.#counters.resets += 1;
    if (frame.segmentStart) {
      this.#counters.segmentsStarted += 1;
      const first = batches[0]?.[0]?.timestamp ?? frame.firstTs;
      this.#player.startSegment(first, Math.max(first, frame.lastTs));
    }
    let events = 0;
    for (const batch of batches) {
      for (const event of batch) this.#player.addEvent(event);
      events += batch.length;
    }
    this.#counters.eventsApplied += events;
    this.#counters.lastSeq = frame.lastSeq;
    this.#connection.markHealthy();
    this.#connection.ack(frame.lastSeq, frame.byteLength);
    this.#emit("frame", { frame, events, live });
  }

  #onMessage(message) {
    if (message.type === "status") {
      this.#caughtUp = this.#connection.state === ConnectionState.OPEN;
    } else if (message.type === "welcome") {
      this.#caughtUp = false;
      this.#counters.welcomes += 1;
      this.#counters.resume = message.resume; // "continue": back where it was, no reset
      if (!SUPPORTED_CODECS.includes(message.codec)) {
        this.#problem(`unsupported codec ${message.codec}`);
        this.#connection.close(`unsupported codec ${message.codec}`);
      } else if (message.codec !== this.#decoder.codec) {
        // Frames already queued keep the decoder they were read with; the new
        // codec's context begins at its first segment start.
        this.#decoder = new BatchDecoder(message.codec);
        this.#accepted = null;
      }
    }
    this.#emit("message", message);
  }

  // Drop what cannot be continued and join afresh; the server answers with a
  // RESET frame at its latest checkout. The player keeps its picture meanwhile.
  #startOver(reason) {
    this.#problem(reason);
    this.#drop();
    if (this.#connection.state !== ConnectionState.ENDED) this.#connection.reconnect({ reason });
  }

  // Forgets queued frames and the decoding context; a decode in flight is dropped when it settles.
  #drop() {
    this.#epoch += 1;
    this.#queue.length = 0;
    this.#accepted = null;
    this.#counters.lastSeq = null;
    this.#decoder.reset();
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
