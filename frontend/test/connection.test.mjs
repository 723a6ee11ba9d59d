import assert from "node:assert/strict";
import { test } from "node:test";
import { Connection, recordingStreamUrl, streamUrl } from "../src/viewer/connection.js";

class FakeSocket {
  static all = [];
  readyState = 1; // OPEN
  sent = [];
  closedWith = null;
  constructor(url) {
    this.url = url;
    FakeSocket.all.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
  }
  // what the server does
  open() {
    this.onopen?.();
  }
  message(data) {
    this.onmessage?.({ data: typeof data === "string" ? data : data });
  }
  json(obj) {
    this.message(JSON.stringify(obj));
  }
  serverClose(code, reason = "") {
    this.onclose?.({ code, reason });
  }
}

class FakeTimers {
  now = 0;
  pending = new Map();
  nextId = 1;
  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.pending.set(id, { fn, at: this.now + ms });
    return id;
  }
  clearTimeout(id) {
    this.pending.delete(id);
  }
  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.pending].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}

function setup({ resumeAfter = () => null } = {}) {
  FakeSocket.all = [];
  const timers = new FakeTimers();
  const log = { states: [], frames: [], messages: [] };
  const connection = new Connection({
    url: "ws://h/sessions/s1/stream",
    resumeAfter,
    WebSocket: FakeSocket,
    timers,
    random: () => 1,
    onFrame: (data) => log.frames.push(data),
    onMessage: (m) => log.messages.push(m),
    onState: (state, detail) => log.states.push([state, detail]),
  });
  const socket = () => FakeSocket.all.at(-1);
  return { connection, timers, log, socket };
}

const welcome = { type: "welcome", protocol: 1, session_id: "s1", codec: "lz4-frame", resume: "continue", state: "running" };

test("stream URL follows the page's scheme and host", () => {
  assert.equal(streamUrl("a b", { protocol: "http:", host: "h:8000" }), "ws://h:8000/sessions/a%20b/stream");
  assert.equal(streamUrl("x", { protocol: "https:", host: "h" }), "wss://h/sessions/x/stream");
  assert.equal(recordingStreamUrl("a b", { protocol: "http:", host: "h:8000" }), "ws://h:8000/recordings/a%20b/stream");
  assert.equal(recordingStreamUrl("x", { protocol: "https:", host: "h" }), "wss://h/recordings/x/stream");
});

test("handshake: hello first, open on welcome, frames and messages pass through", () => {
  let seq = null;
  const { connection, log, socket } = setup({ resumeAfter: () => seq });
  connection.connect();
  assert.equal(connection.state, "connecting");
  assert.equal(socket().binaryType, "arraybuffer");
  socket().open();
  assert.deepEqual(socket().sent, [{ type: "hello", protocol: 1, minor: 1, resume_after: null, token: null, acks: true, skips: true }]);
  socket().json(welcome);
  assert.equal(connection.state, "open");
  const buffer = new ArrayBuffer(8);
  socket().message(buffer);
  socket().json({ type: "status", state: "running", viewers: 2 });
  assert.deepEqual(log.frames, [buffer]);
  assert.deepEqual(log.messages.map((m) => m.type), ["welcome", "status"]);
  seq = 42;
  socket().serverClose(1006);
  assert.equal(connection.state, "closed");
});

test("reconnects by itself with backoff and resumes after the last applied seq", () => {
  let seq = 7;
  const { connection, timers, socket } = setup({ resumeAfter: () => seq });
  connection.connect();
  socket().open();
  socket().json(welcome);
  socket().serverClose(1006);
  assert.equal(connection.state, "closed");
  assert.notEqual(connection.retryAt, null);
  assert.equal(FakeSocket.all.length, 1);
  timers.advance(499);
  assert.equal(FakeSocket.all.length, 1);
  timers.advance(1); // first retry: at most 500 ms (random() = 1)
  assert.equal(FakeSocket.all.length, 2);
  socket().open();
  assert.equal(socket().sent[0].resume_after, 7);
  // Failing again waits longer: 1000 ms.
  socket().serverClose(1011);
  timers.advance(999);
  assert.equal(FakeSocket.all.length, 2);
  timers.advance(1);
  assert.equal(FakeSocket.all.length, 3);
  seq = 9;
  socket().open();
  assert.equal(socket().sent[0].resume_after, 9);
});

test("markHealthy() resets the backoff", () => {
  const { connection, timers, socket } = setup();
  connection.connect();
  socket().serverClose(1006);
  timers.advance(500);
  socket().serverClose(1006);
  timers.advance(1000);
  connection.markHealthy();
  socket().serverClose(1006);
  timers.advance(500);
  assert.equal(FakeSocket.all.length, 4);
});

test("an end message ends the connection: no reconnect", () => {
  const { connection, timers, socket } = setup();
  connection.connect();
  socket().open();
  socket().json(welcome);
  socket().json({ type: "end", reason: "stopped", state: "stopped" });
  assert.equal(connection.state, "ended");
  socket().serverClose(1000, "session ended");
  timers.advance(60_000);
  assert.equal(connection.state, "ended");
  assert.equal(FakeSocket.all.length, 1);
});

for (const code of [4400, 4401, 4404]) {
  test(`close code ${code} is final`, () => {
    const { connection, timers, socket } = setup();
    connection.connect();
    socket().open();
    socket().json({ type: "error", code, message: "unknown session s1" });
    socket().serverClose(code, "nope");
    timers.advance(60_000);
    assert.equal(connection.state, "closed");
    assert.equal(FakeSocket.all.length, 1);
    assert.match(connection.detail, new RegExp(`unknown session s1 \\(${code}\\)`));
  });
}

test("1012 (the replica is stopping): back at once, resuming, and the backoff starts over", () => {
  let seq = 5;
  const { connection, timers, socket } = setup({ resumeAfter: () => seq });
  connection.connect();
  socket().open();
  socket().json(welcome);
  socket().serverClose(1011); // a failure first: the next backoff would be longer
  timers.advance(500);
  socket().open();
  socket().json(welcome);
  seq = 8;
  socket().serverClose(1012, "the gateway is restarting; reconnect");
  assert.equal(connection.state, "closed");
  assert.equal(connection.reconnecting, true);
  assert.match(connection.detail, /the gateway is restarting; reconnect \(1012\)/);
  timers.advance(250); // at most the spread (random() = 1), not a backoff
  assert.equal(FakeSocket.all.length, 3);
  socket().open();
  assert.equal(socket().sent[0].resume_after, 8);
  socket().serverClose(1006); // the replacement is not up yet: the shortest backoff
  timers.advance(500);
  assert.equal(FakeSocket.all.length, 4);
});

test("reconnecting: from losing an open stream until the next welcome", () => {
  const { connection, timers, socket } = setup();
  connection.connect();
  assert.equal(connection.reconnecting, false); // a first connection is not a reconnect
  socket().open();
  socket().json(welcome);
  assert.equal(connection.reconnecting, false);
  socket().serverClose(1006);
  assert.equal(connection.reconnecting, true); // waiting for the retry
  timers.advance(500);
  assert.equal(connection.state, "connecting");
  assert.equal(connection.reconnecting, true); // trying
  socket().serverClose(1006); // refused: still on its way back
  assert.equal(connection.reconnecting, true);
  timers.advance(1000);
  socket().open();
  socket().json(welcome);
  assert.equal(connection.reconnecting, false);
  socket().json({ type: "end", reason: "stopped", state: "stopped" });
  socket().serverClose(1000);
  assert.equal(connection.reconnecting, false);
});

test("reconnecting ends with close() and with a refusal", () => {
  const { connection, socket } = setup();
  connection.connect();
  socket().open();
  socket().json(welcome);
  socket().serverClose(1006);
  connection.close();
  assert.equal(connection.reconnecting, false);
  connection.reconnect({ immediate: true });
  socket().open();
  socket().serverClose(4404, "unknown session");
  assert.equal(connection.reconnecting, false);
});

test("1001 and 4408 are retried", () => {
  for (const code of [1001, 4408]) {
    const { connection, timers, socket } = setup();
    connection.connect();
    socket().serverClose(code);
    timers.advance(500);
    assert.equal(FakeSocket.all.length, 2, String(code));
  }
});

test("the manual reconnect is immediate, even after the session ended", () => {
  const { connection, socket } = setup();
  connection.connect();
  socket().open();
  socket().json({ type: "end", reason: "stopped", state: "stopped" });
  socket().serverClose(1000);
  connection.reconnect({ immediate: true });
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(connection.state, "connecting");
});

test("a reconnect for a gap drops the old socket's handlers", () => {
  const { connection, timers, log, socket } = setup();
  connection.connect();
  const old = socket();
  old.open();
  old.json(welcome);
  connection.reconnect({ reason: "gap" });
  assert.equal(old.onmessage, null);
  assert.deepEqual(old.closedWith.code, 4000);
  timers.advance(500);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(log.frames.length, 0);
});

test("no welcome in time, or a silent stream, triggers a reconnect", () => {
  const { connection, timers, socket } = setup();
  connection.connect();
  socket().open();
  timers.advance(10_000);
  assert.equal(connection.state, "closed");
  timers.advance(500);
  assert.equal(FakeSocket.all.length, 2);
  socket().open();
  socket().json(welcome);
  timers.advance(19_999);
  assert.equal(connection.state, "open");
  timers.advance(1);
  assert.equal(connection.state, "closed");
});

test("close() stops for good", () => {
  const { connection, timers, socket } = setup();
  connection.connect();
  socket().open();
  connection.close();
  timers.advance(60_000);
  assert.equal(connection.state, "closed");
  assert.equal(FakeSocket.all.length, 1);
  connection.reconnect();
  assert.equal(FakeSocket.all.length, 1);
});

test("acks: the newest applied seq, at most every 500 ms or after 1 MiB", () => {
  const { connection, timers, socket } = setup();
  connection.connect();
  socket().open();
  socket().json(welcome);
  const acks = () => socket().sent.filter((m) => m.type === "ack").map((m) => m.seq);
  connection.ack(1, 1000);
  connection.ack(2, 1000);
  timers.advance(400);
  assert.deepEqual(acks(), []);
  timers.advance(100);
  assert.deepEqual(acks(), [2]);
  connection.ack(3, 1100 * 1024);
  assert.deepEqual(acks(), [2, 3], "a big frame is acknowledged at once");
  timers.advance(2000);
  assert.deepEqual(acks(), [2, 3], "nothing new, nothing sent");
  connection.ack(4, 10);
  const first = socket();
  first.serverClose(1006);
  timers.advance(1000);
  assert.deepEqual(first.sent.filter((m) => m.type === "ack").map((m) => m.seq), [2, 3]);
  assert.deepEqual(acks(), [], "no stale ack on the next socket");
});
