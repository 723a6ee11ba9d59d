// One viewer's WebSocket to a session's stream (docs/protocol.md): the hello
// handshake, control messages, and reconnecting by itself with backoff.
// No DOM: the WebSocket class and timers are injectable, so node tests drive it.
import { backoffDelay } from "./backoff.js";

export const PROTOCOL = 1;
// 1.1: who is in control of the page, and taking it with a control link (docs/protocol.md).
export const PROTOCOL_MINOR = 1;

/** @enum {string} */
export const ConnectionState = Object.freeze({
  CONNECTING: "connecting", // socket opening or hello sent, no welcome yet
  OPEN: "open", // welcome received; frames flow
  CLOSED: "closed", // no socket; a retry may be scheduled (see `retryAt`)
  ENDED: "ended", // the session ended; no retry
});

// The server refused us for good: retrying cannot help.
const FATAL_CLOSE_CODES = new Map([
  [4400, "bad hello"],
  [4401, "token refused"],
  [4403, "not allowed"],
  [4404, "unknown session"],
]);
const SESSION_ENDED = 1000;
// The gateway replica is stopping (rolled, scaled down, drained): another replica, or
// its replacement, serves us, so come back at once rather than after a backoff. The
// spread keeps the viewers of one replica from all arriving in the same instant.
const SERVICE_RESTART = 1012;
const RESTART_SPREAD_MS = 250;
// Acknowledge applied frames at most this often, or sooner after this many bytes
// (a quarter of the server's default window). Each ack costs the gateway about what a
// frame does, so they are kept rare: with hundreds of viewers, 100 ms doubled its work.
const ACK_MS = 500;
const ACK_BYTES = 1024 * 1024;

// Close codes a client may send (RFC 6455 §7.4.2); ours is only a label.
const CLIENT_GIVING_UP = 4000;

/** ws(s)://<host>/<collection>/<id>/stream for the page's origin. */
function socketUrl(collection, id, page) {
  const scheme = page.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${page.host}/${collection}/${encodeURIComponent(id)}/stream`;
}

/** A live session's stream. */
export function streamUrl(sessionId, page = globalThis.location) {
  return socketUrl("sessions", sessionId, page);
}

/** A stored recording, replayed in real time. */
export function recordingStreamUrl(recordingId, page = globalThis.location) {
  return socketUrl("recordings", recordingId, page);
}

export class Connection {
  #url;
  #token;
  #resumeAfter;
  #handlers;
  #WebSocket;
  #timers;
  #random;
  #welcomeTimeoutMs;
  #idleTimeoutMs;

  #socket = null;
  #state = ConnectionState.CLOSED;
  #attempt = 0;
  #retryTimer = null;
  #watchdog = null;
  #stopped = false;
  #detail = "";
  #retryAt = null;
  #ackSeq = null;
  #ackBytes = 0;
  #ackTimer = null;
  #recovering = false; // lost, and coming back by itself

  /**
   * @param {object} options
   * @param {string} options.url
   * @param {string|null} [options.token] a viewer token (a viewer link's #token=), sent in hello
   * @param {() => (number|null)} options.resumeAfter last applied sequence number, read at each hello
   * @param {(data: ArrayBuffer) => void} [options.onFrame]
   * @param {(message: object) => void} [options.onMessage] welcome, status, reset, end, error
   * @param {(state: string, detail: string) => void} [options.onState]
   */
  constructor({
    url,
    token = null,
    resumeAfter,
    onFrame = () => {},
    onMessage = () => {},
    onState = () => {},
    WebSocket = globalThis.WebSocket,
    timers = globalThis,
    random = Math.random,
    welcomeTimeoutMs = 10_000,
    idleTimeoutMs = 20_000,
  }) {
    this.#url = url;
    this.#token = token;
    this.#resumeAfter = resumeAfter;
    this.#handlers = { onFrame, onMessage, onState };
    this.#WebSocket = WebSocket;
    this.#timers = timers;
    this.#random = random;
    this.#welcomeTimeoutMs = welcomeTimeoutMs;
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  get state() {
    return this.#state;
  }

  /** Why the connection is in its state: a close reason, an error, "". */
  get detail() {
    return this.#detail;
  }

  /** When the next automatic retry fires (performance.now() time), or null. */
  get retryAt() {
    return this.#retryAt;
  }

  /**
   * Lost and coming back by itself: waiting for the next retry, or trying (until a
   * welcome). What the viewer shows as "reconnecting".
   */
  get reconnecting() {
    return this.#recovering && (this.#state === ConnectionState.CONNECTING || this.#state === ConnectionState.CLOSED);
  }

  /**
   * Tells the server the viewer applied everything up to `seq` (flow control,
   * docs/protocol.md): at most every ACK_MS, or at once after ACK_BYTES.
   */
  ack(seq, bytes) {
    this.#ackSeq = seq;
    this.#ackBytes += bytes;
    if (this.#ackBytes >= ACK_BYTES) this.#flushAck();
    else if (this.#ackTimer === null) this.#ackTimer = this.#timers.setTimeout(() => this.#flushAck(), ACK_MS);
  }

  #flushAck() {
    if (this.#ackTimer !== null) this.#timers.clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    this.#ackBytes = 0;
    const socket = this.#socket;
    if (socket && socket.readyState === 1 && this.#ackSeq !== null) {
      socket.send(JSON.stringify({ type: "ack", seq: this.#ackSeq }));
    }
  }

  /** Sends a control message (1.1: take_control, hand_back, input); false when not open. */
  send(message) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== 1 || this.#state !== ConnectionState.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  /** Opens the socket. */
  connect() {
    this.#stopped = false;
    this.#clearRetry();
    this.#dropSocket();
    this.#setState(ConnectionState.CONNECTING, "");
    let socket;
    try {
      socket = new this.#WebSocket(this.#url);
    } catch (error) {
      this.#lost(`cannot open the socket: ${error.message}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.#socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "hello", protocol: PROTOCOL, minor: PROTOCOL_MINOR, resume_after: this.#resumeAfter(), token: this.#token, acks: true, skips: true }));
      this.#armWatchdog(this.#welcomeTimeoutMs, "no welcome from the server");
    };
    socket.onmessage = (event) => this.#onMessage(event.data);
    socket.onclose = (event) => this.#onClose(event.code, event.reason);
    // An error is always followed by a close event, which does the work.
    socket.onerror = () => {};
  }

  /**
   * Drops the socket and opens a new one: at once when `immediate` (the user
   * asked), else after the backoff delay (a gap, a bad frame).
   */
  reconnect({ immediate = false, reason = "" } = {}) {
    // After an end or a refusal only the user's explicit retry goes through.
    if (this.#stopped && !immediate) return;
    this.#dropSocket();
    if (immediate) {
      this.#attempt = 0;
      this.connect();
    } else {
      this.#scheduleRetry(reason);
    }
  }

  /** The stream is healthy again: the next retry starts from the shortest delay. */
  markHealthy() {
    this.#attempt = 0;
  }

  /** Closes for good (switching sessions, leaving, a fatal protocol problem). */
  close(reason = "") {
    this.#stopped = true;
    this.#recovering = false;
    this.#clearRetry();
    this.#dropSocket();
    if (this.#state !== ConnectionState.ENDED) this.#setState(ConnectionState.CLOSED, reason);
  }

  #onMessage(data) {
    this.#armWatchdog(this.#idleTimeoutMs, "the stream went quiet");
    if (typeof data !== "string") {
      this.#handlers.onFrame(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not ours to interpret; the protocol only sends JSON text
    }
    if (message.type === "welcome") {
      this.#recovering = false;
      this.#setState(ConnectionState.OPEN, "");
    } else if (message.type === "end") {
      this.#recovering = false;
      this.#setState(ConnectionState.ENDED, `session ${message.reason ?? "ended"}`);
    }
    else if (message.type === "error") this.#detail = message.message ?? "";
    this.#handlers.onMessage(message);
  }

  #onClose(code, reason) {
    this.#socket = null;
    this.#clearWatchdog();
    if (this.#state === ConnectionState.ENDED || code === SESSION_ENDED) {
      this.#stopped = true;
      this.#recovering = false;
      this.#setState(ConnectionState.ENDED, this.#detail || reason || "session ended");
      return;
    }
    const fatal = FATAL_CLOSE_CODES.get(code);
    if (fatal) {
      this.#stopped = true;
      this.#recovering = false;
      this.#setState(ConnectionState.CLOSED, `${this.#detail || reason || fatal} (${code})`);
      return;
    }
    if (code === SERVICE_RESTART) {
      // A stopping replica, not a failing one: the backoff starts over after it.
      this.#attempt = 0;
      this.#lost(`${reason || "the gateway is restarting"} (${code})`, Math.round(this.#random() * RESTART_SPREAD_MS));
      return;
    }
    this.#lost(reason ? `${reason} (${code})` : `connection lost (${code})`);
  }

  #lost(reason, delay) {
    if (this.#stopped) return;
    this.#scheduleRetry(reason, delay);
  }

  /** Retries after `delay` ms (by default the next backoff delay). */
  #scheduleRetry(reason, delay = backoffDelay(this.#attempt++, { random: this.#random })) {
    this.#clearRetry();
    this.#recovering = true;
    this.#retryAt = (globalThis.performance?.now() ?? Date.now()) + delay;
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = null;
      this.#retryAt = null;
      this.connect();
    }, delay);
    this.#setState(ConnectionState.CLOSED, reason);
  }

  #clearRetry() {
    if (this.#retryTimer !== null) this.#timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#retryAt = null;
  }

  // Half-open TCP connections can stay silent for minutes; the server sends
  // status about once a second, so a long silence means the link is dead.
  #armWatchdog(ms, reason) {
    this.#clearWatchdog();
    this.#watchdog = this.#timers.setTimeout(() => {
      this.#watchdog = null;
      this.#dropSocket();
      this.#lost(reason);
    }, ms);
  }

  #clearWatchdog() {
    if (this.#watchdog !== null) this.#timers.clearTimeout(this.#watchdog);
    this.#watchdog = null;
  }

  // Detaches the handlers first, so a socket we leave cannot deliver late frames.
  #dropSocket() {
    this.#clearWatchdog();
    if (this.#ackTimer !== null) this.#timers.clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    this.#ackSeq = null;
    this.#ackBytes = 0;
    const socket = this.#socket;
    if (!socket) return;
    this.#socket = null;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(CLIENT_GIVING_UP, "client reconnects");
    } catch {
      // already closing
    }
  }

  #setState(state, detail) {
    this.#state = state;
    this.#detail = detail;
    this.#handlers.onState(state, detail);
  }
}
