import assert from "node:assert/strict";
import { test } from "node:test";
import { BatchDecoder } from "../src/viewer/batches.js";
import { parseFrame } from "../src/viewer/frame.js";
import { LiveStream } from "../src/viewer/stream.js";
import { frames, secondSegment } from "./fixtures.mjs";

// Seams: a player that records calls, a connection that records reconnects.
class RecordingPlayer {
  segments = [];
  events = [];
  startSegment(firstTimestamp) {
    this.segments.push(firstTimestamp);
  }
  addEvent(event) {
    this.events.push(event);
  }
}

class FakeConnection {
  state = "open";
  reconnects = [];
  healthy = 0;
  constructor(options) {
    this.options = options;
  }
  connect() {}
  reconnect(options = {}) {
    this.reconnects.push({ ...options, resumeAfter: this.options.resumeAfter() });
  }
  markHealthy() {
    this.healthy += 1;
  }
  close() {
    this.state = "closed";
  }
  deliver(f) {
    this.options.onFrame(f.buffer);
  }
}

function setup() {
  const player = new RecordingPlayer();
  let connection;
  const stream = new LiveStream({
    sessionId: frames[0].session_id,
    player,
    url: "ws://test/sessions/x/stream",
    connect: (options) => (connection = new FakeConnection(options)),
    log: { warn() {} },
  });
  stream.start();
  return { stream, player, connection };
}

const allEvents = (() => {
  const decoder = new BatchDecoder();
  return frames.flatMap((f) => decoder.decode(parseFrame(f.buffer)).flat());
})();

test("applies every frame in order and keeps count", () => {
  const { stream, player, connection } = setup();
  for (const f of frames) connection.deliver(f);
  const c = stream.counters;
  assert.equal(c.lastSeq, frames.at(-1).last_seq);
  assert.equal(c.framesReceived, frames.length);
  assert.equal(c.eventsApplied, allEvents.length);
  assert.equal(c.resets, 1);
  assert.equal(c.segmentsStarted, 2);
  assert.deepEqual(player.events, allEvents);
  // Each segment's baseline source is its first event's page timestamp.
  assert.deepEqual(player.segments, [frames[0].first_ts, frames[secondSegment].first_ts]);
  assert.equal(connection.reconnects.length, 0);
  assert.equal(connection.options.resumeAfter(), frames.at(-1).last_seq);
});

test("a gap drops state and rejoins with resume_after = null", () => {
  const { stream, player, connection } = setup();
  for (const f of frames.slice(0, 3)) connection.deliver(f);
  const applied = player.events.length;
  connection.deliver(frames[4]); // frames[3] is missing
  assert.equal(stream.counters.lastSeq, null);
  assert.equal(player.events.length, applied, "nothing from the gapped frame is applied");
  assert.deepEqual(connection.reconnects, [{ reason: connection.reconnects[0].reason, resumeAfter: null }]);
  assert.match(connection.reconnects[0].reason, /gap/);
  // The server answers with a checkout: the stream picks up from there.
  for (const f of frames.slice(secondSegment)) connection.deliver(f);
  assert.equal(stream.counters.lastSeq, frames.at(-1).last_seq);
  assert.equal(connection.reconnects.length, 1);
});

test("frames before any segment start count as a gap", () => {
  const { stream, connection } = setup();
  connection.deliver(frames[1]);
  assert.equal(stream.counters.lastSeq, null);
  assert.equal(connection.reconnects.length, 1);
});

test("a repeated frame is ignored, not treated as a gap", () => {
  const { stream, player, connection } = setup();
  for (const f of frames.slice(0, 4)) connection.deliver(f);
  const applied = player.events.length;
  connection.deliver(frames[2]);
  assert.equal(player.events.length, applied);
  assert.equal(connection.reconnects.length, 0);
  connection.deliver(frames[4]);
  assert.equal(stream.counters.lastSeq, frames[4].last_seq);
});

test("resume: after a reconnect the stream continues from the last applied seq", () => {
  const { stream, connection } = setup();
  for (const f of frames.slice(0, 6)) connection.deliver(f);
  assert.equal(connection.options.resumeAfter(), frames[5].last_seq);
  // The server resumes with exactly the next frames; the decoder kept its context.
  for (const f of frames.slice(6)) connection.deliver(f);
  assert.equal(stream.counters.lastSeq, frames.at(-1).last_seq);
  assert.equal(connection.reconnects.length, 0);
});

test("an undecodable frame starts over; an unknown codec closes", () => {
  const { stream, connection } = setup();
  connection.deliver(frames[0]);
  const broken = new Uint8Array(frames[1].buffer.slice(0));
  broken.fill(0x41, frames[1].header_length); // payload replaced by junk
  connection.options.onFrame(broken.buffer);
  assert.equal(stream.counters.lastSeq, null);
  assert.equal(connection.reconnects.length, 1);

  const problems = [];
  stream.addEventListener("problem", (e) => problems.push(e.detail.message));
  connection.options.onMessage({ type: "welcome", codec: "zstd", resume: "reset" });
  assert.equal(connection.state, "closed");
  assert.match(problems.at(-1), /codec/);
});
