import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { BatchDecoder } from "../src/viewer/batches.js";
import { parseFrame } from "../src/viewer/frame.js";
import { installTestHook } from "../src/viewer/hook.js";
import { LiveStream } from "../src/viewer/stream.js";
import { CODECS, loadFixtures } from "./fixtures.mjs";

// Seams: a player that records calls, a connection that records reconnects.
class RecordingPlayer {
  segments = [];
  newest = [];
  events = [];
  startSegment(firstTimestamp, newestTimestamp) {
    this.segments.push(firstTimestamp);
    this.newest.push(newestTimestamp);
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
  acks = [];
  ack(seq, bytes) {
    this.acks.push({ seq, bytes });
  }
  close() {
    this.state = "closed";
  }
  welcome(codec) {
    this.options.onMessage({ type: "welcome", protocol: 1, codec, resume: "reset", state: "running" });
  }
  deliver(f) {
    this.options.onFrame(f.buffer);
  }
}

function setup(codec) {
  const player = new RecordingPlayer();
  let connection;
  const stream = new LiveStream({
    sessionId: "fixture-7f3a9c",
    player,
    url: "ws://test/sessions/x/stream",
    connect: (options) => (connection = new FakeConnection(options)),
    log: { warn() {} },
  });
  stream.start();
  connection.welcome(codec);
  return { stream, player, connection };
}

async function decodeEvents(codec, list) {
  const decoder = new BatchDecoder(codec);
  const out = [];
  for (const f of list) out.push(...(await decoder.decode(parseFrame(f.buffer))).flat());
  return out;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

for (const codec of CODECS) {
  const { frames, secondSegment } = loadFixtures(codec);
  const allEvents = await decodeEvents(codec, frames);

  test(`${codec}: applies every frame in order and keeps count`, async () => {
    const { stream, player, connection } = setup(codec);
    for (const f of frames) connection.deliver(f);
    // Every frame arrived before any decode finished: all of them wait in order.
    assert.equal(stream.pending, frames.length);
    assert.equal(player.events.length, 0);
    assert.equal(connection.options.resumeAfter(), frames.at(-1).last_seq, "a resume asks for what was queued");
    await stream.idle();
    const c = stream.counters;
    assert.equal(stream.pending, 0);
    assert.equal(c.lastSeq, frames.at(-1).last_seq);
    assert.equal(c.framesReceived, frames.length);
    assert.equal(c.eventsApplied, allEvents.length);
    assert.equal(c.resets, 1);
    assert.equal(c.segmentsStarted, 2);
    assert.deepEqual(player.events, allEvents);
    // Each segment's baseline source is its first event's page timestamp, and the
    // newest one in the frame that starts it (a joiner's backlog applies at once).
    assert.deepEqual(player.segments, [frames[0].first_ts, frames[secondSegment].first_ts]);
    assert.deepEqual(player.newest, [frames[0].last_ts, frames[secondSegment].last_ts]);
    assert.equal(connection.reconnects.length, 0);
    assert.equal(connection.healthy, frames.length);
  });

  test(`${codec}: frames arriving while earlier ones decode are applied in arrival order`, async () => {
    const { stream, player, connection } = setup(codec);
    const applied = [];
    stream.addEventListener("frame", (e) => applied.push(e.detail.frame.firstSeq));
    for (const [i, f] of frames.entries()) {
      connection.deliver(f);
      if (i % 3 === 1) await turn(); // let some decodes start, or finish, in between
    }
    await stream.idle();
    assert.deepEqual(applied, frames.map((f) => f.first_seq));
    assert.deepEqual(player.events, allEvents);
  });

  test(`${codec}: a new segment queued behind a pending decode starts only after it`, async () => {
    const { stream, player, connection } = setup(codec);
    const picked = [...frames.slice(0, 6), ...frames.slice(secondSegment)];
    for (const f of picked) connection.deliver(f);
    await stream.idle();
    assert.deepEqual(player.events, await decodeEvents(codec, picked));
    assert.deepEqual(player.segments, [frames[0].first_ts, frames[secondSegment].first_ts]);
    assert.equal(stream.counters.lastSeq, frames.at(-1).last_seq);
  });

  test(`${codec}: a gap drops state, queued frames included, and rejoins with resume_after = null`, async () => {
    const { stream, player, connection } = setup(codec);
    for (const f of frames.slice(0, 3)) connection.deliver(f);
    await stream.idle();
    const applied = player.events.length;
    connection.deliver(frames[3]);
    connection.deliver(frames[5]); // frames[4] is missing; frames[3] is still decoding
    await stream.idle();
    assert.equal(stream.counters.lastSeq, null);
    assert.equal(player.events.length, applied, "nothing queued before the gap is applied after it");
    assert.deepEqual(connection.reconnects, [{ reason: connection.reconnects[0].reason, resumeAfter: null }]);
    assert.match(connection.reconnects[0].reason, /gap/);
    // The server answers with a checkout: the stream picks up from there.
    for (const f of frames.slice(secondSegment)) connection.deliver(f);
    await stream.idle();
    assert.equal(stream.counters.lastSeq, frames.at(-1).last_seq);
    assert.equal(connection.reconnects.length, 1);
  });

  test(`${codec}: frames before any segment start count as a gap`, async () => {
    const { stream, connection } = setup(codec);
    connection.deliver(frames[1]);
    await stream.idle();
    assert.equal(stream.counters.lastSeq, null);
    assert.equal(connection.reconnects.length, 1);
  });

  test(`${codec}: a repeated frame is ignored, not treated as a gap`, async () => {
    const { stream, player, connection } = setup(codec);
    for (const f of frames.slice(0, 4)) connection.deliver(f);
    connection.deliver(frames[2]); // still queued: the check is against what was accepted
    await stream.idle();
    const applied = player.events.length;
    connection.deliver(frames[2]);
    await stream.idle();
    assert.equal(player.events.length, applied);
    assert.equal(connection.reconnects.length, 0);
    connection.deliver(frames[4]);
    await stream.idle();
    assert.equal(stream.counters.lastSeq, frames[4].last_seq);
    assert.deepEqual(player.events, await decodeEvents(codec, frames.slice(0, 5)));
  });

  test(`${codec}: resume: after a reconnect the stream continues from the last accepted seq`, async () => {
    const { stream, connection } = setup(codec);
    for (const f of frames.slice(0, 6)) connection.deliver(f);
    assert.equal(connection.options.resumeAfter(), frames[5].last_seq);
    // The server resumes with exactly the next frames; the decoder kept its context.
    connection.welcome(codec);
    for (const f of frames.slice(6)) connection.deliver(f);
    await stream.idle();
    assert.equal(stream.counters.lastSeq, frames.at(-1).last_seq);
    assert.equal(connection.reconnects.length, 0);
  });

  test(`${codec}: an undecodable frame starts over and drops what was queued behind it`, async () => {
    const { stream, player, connection } = setup(codec);
    connection.deliver(frames[0]);
    const broken = new Uint8Array(frames[1].buffer.slice(0));
    broken.fill(0x41, frames[1].header_length); // payload replaced by junk
    connection.options.onFrame(broken.buffer);
    connection.deliver(frames[2]);
    await stream.idle();
    assert.equal(stream.counters.lastSeq, null);
    assert.equal(connection.reconnects.length, 1);
    assert.match(connection.reconnects[0].reason, /cannot decode/);
    assert.deepEqual(player.events, await decodeEvents(codec, frames.slice(0, 1)));
  });

  test(`${codec}: close() while decoding applies nothing more`, async () => {
    const { stream, player, connection } = setup(codec);
    for (const f of frames) connection.deliver(f);
    stream.close();
    await stream.idle();
    assert.equal(player.events.length, 0);
    assert.equal(connection.state, "closed");
  });
}

test("the welcome's codec picks the decoder; frames queued before keep theirs", async () => {
  const lz4 = loadFixtures("lz4-frame");
  const deflate = loadFixtures("deflate-raw");
  const { stream, player, connection } = setup("lz4-frame");
  for (const f of lz4.frames.slice(0, 3)) connection.deliver(f);
  connection.welcome("deflate-raw"); // a reconnect to a server that now speaks deflate-raw
  for (const f of deflate.frames.slice(deflate.secondSegment)) connection.deliver(f);
  await stream.idle();
  assert.equal(connection.reconnects.length, 0);
  assert.deepEqual(player.events, [
    ...(await decodeEvents("lz4-frame", lz4.frames.slice(0, 3))),
    ...(await decodeEvents("deflate-raw", deflate.frames.slice(deflate.secondSegment))),
  ]);
});

test("continuing a segment across a codec change is a gap", async () => {
  const lz4 = loadFixtures("lz4-frame");
  const deflate = loadFixtures("deflate-raw");
  const { stream, player, connection } = setup("lz4-frame");
  for (const f of lz4.frames.slice(0, 3)) connection.deliver(f);
  await stream.idle();
  connection.welcome("deflate-raw");
  connection.deliver(deflate.frames[3]);
  await stream.idle();
  assert.equal(connection.reconnects.length, 1);
  assert.match(connection.reconnects[0].reason, /gap/);
  assert.deepEqual(player.events, await decodeEvents("lz4-frame", lz4.frames.slice(0, 3)));
});

test("an unknown codec closes for good with a clear message", () => {
  const { stream, connection } = setup("lz4-frame");
  const problems = [];
  stream.addEventListener("problem", (e) => problems.push(e.detail.message));
  connection.welcome("zstd");
  assert.equal(connection.state, "closed");
  assert.match(problems.at(-1), /unsupported codec zstd/);
});

test("the test hook shows the codec, the queue and the counters", async () => {
  const { frames } = loadFixtures("deflate-raw");
  const { stream, player, connection } = setup("deflate-raw");
  const target = {};
  const hook = installTestHook(() => ({ stream, player }), target);
  assert.equal(target.rrstreamViewer, hook);
  assert.equal(hook.codec, "deflate-raw");
  for (const f of frames.slice(0, 4)) connection.deliver(f);
  assert.equal(hook.framesPending, 4);
  assert.equal(hook.framesReceived, 4);
  await stream.idle();
  assert.equal(hook.framesPending, 0);
  assert.equal(hook.lastSeq, frames[3].last_seq);
  assert.equal(hook.eventsApplied, player.events.length);
  assert.equal(hook.segmentsStarted, 1);
});

test("only frames sent after the server's first status count as live: not the join's checkout or catch-up", async () => {
  const { frames } = loadFixtures("lz4-frame");
  const { stream, connection } = setup("lz4-frame");
  const seen = [];
  stream.addEventListener("frame", (e) => seen.push([e.detail.frame.firstSeq, e.detail.live]));
  connection.deliver(frames[0]); // the RESET frame from the latest checkout
  connection.deliver(frames[1]); // more of what the server had when we joined
  connection.options.onMessage({ type: "status", state: "running" });
  connection.deliver(frames[2]); // sent as it happened
  // A resume: the missed batches come before the new connection's first status.
  connection.welcome("lz4-frame");
  connection.deliver(frames[3]);
  connection.options.onMessage({ type: "status", state: "running" });
  connection.deliver(frames[4]);
  await stream.idle();
  assert.deepEqual(seen, [
    [frames[0].first_seq, false], [frames[1].first_seq, false], [frames[2].first_seq, true],
    [frames[3].first_seq, false], [frames[4].first_seq, true],
  ]);
});

test("the test hook shows the mode and the recording player", () => {
  const target = {};
  const view = { describe: () => ({ state: "paused", currentTime: 5, totalTime: 10 }), iframeDocument: () => "replayed" };
  const state = { stream: null, player: { iframeDocument: () => "live" }, mode: "live", playback: null };
  const hook = installTestHook(() => state, target);
  assert.equal(hook.mode, "live");
  assert.equal(hook.playback, null);
  assert.equal(hook.iframeDocument(), "live");
  Object.assign(state, { mode: "recording", playback: { phase: "loading", error: null, view: null } });
  assert.deepEqual(hook.playback, { phase: "loading", error: null });
  assert.equal(hook.iframeDocument(), null);
  state.playback = { phase: "ready", error: null, view };
  assert.deepEqual(hook.playback, { phase: "ready", error: null, state: "paused", currentTime: 5, totalTime: 10 });
  assert.equal(hook.iframeDocument(), "replayed");
});

// Frames make_fixtures.py wrote as the gateway sends them to a viewer that fell behind
// on a canvas page: superseded pictures as SKIPPED frames, left out of the deflate stream.
function loadSkipped() {
  const dir = new URL("./fixtures/skipped/", import.meta.url);
  const manifest = JSON.parse(readFileSync(new URL("manifest.json", dir), "utf8"));
  return manifest.frames.map((entry) => {
    const bytes = readFileSync(new URL(entry.file, dir));
    return { ...entry, buffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) };
  });
}

test("deflate-raw: a skipped frame advances the sequence, decodes nothing, and is acked", async () => {
  const skipped = loadSkipped();
  const { stream, player, connection } = setup("deflate-raw");
  const problems = [];
  stream.addEventListener("problem", (e) => problems.push(e.detail.message));
  const live = [];
  stream.addEventListener("frame", (e) => live.push([e.detail.frame.skipped, e.detail.events]));
  for (const f of skipped) connection.deliver(f);
  await stream.idle();
  assert.deepEqual(problems, []);
  assert.equal(connection.reconnects.length, 0);
  const expected = skipped.flatMap((f) => f.lines.flatMap((line) => JSON.parse(line)));
  assert.deepEqual(player.events, expected, "every batch but the superseded pictures");
  assert.equal(player.events.filter((e) => e.data?.source === 9).length, 2);
  assert.deepEqual(live.map(([s]) => s), skipped.map((f) => f.skipped));
  assert.deepEqual(connection.acks.map((a) => a.seq), skipped.map((f) => f.last_seq));
  const c = stream.counters;
  assert.equal(c.lastSeq, skipped.at(-1).last_seq);
  assert.equal(c.picturesSkipped, 2);
});

test("a skipped frame that starts a segment or carries a payload starts over", async () => {
  const skipped = loadSkipped();
  const { stream, connection } = setup("deflate-raw");
  connection.deliver(skipped[0]);
  const bad = new Uint8Array(skipped[1].buffer.byteLength + 1);
  bad.set(new Uint8Array(skipped[1].buffer));
  connection.options.onFrame(bad.buffer);
  await stream.idle();
  assert.equal(connection.reconnects.length, 1);
  assert.match(connection.reconnects[0].reason, /skipped/);
});
