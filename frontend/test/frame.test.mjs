import assert from "node:assert/strict";
import { test } from "node:test";
import { readFileSync } from "node:fs";
import { FLAG_RESET, FLAG_SEGMENT_START, FLAG_SKIPPED, FrameError, parseFrame } from "../src/viewer/frame.js";
import { frames } from "./fixtures.mjs";

test("header fields match what pipeline.protocol encoded", () => {
  assert.ok(frames.length > 20);
  for (const f of frames) {
    const frame = parseFrame(f.buffer);
    assert.deepEqual(
      {
        flags: frame.flags,
        segment_start: frame.segmentStart,
        reset: frame.reset,
        header_length: frame.headerLength,
        event_count: frame.eventCount,
        first_seq: frame.firstSeq,
        last_seq: frame.lastSeq,
        first_ts: frame.firstTs,
        last_ts: frame.lastTs,
        ingest_ts: frame.ingestTs,
        session_id: frame.sessionId,
        payload_length: frame.payload.length,
      },
      {
        flags: f.flags,
        segment_start: f.segment_start,
        reset: f.reset,
        header_length: f.header_length,
        event_count: f.event_count,
        first_seq: f.first_seq,
        last_seq: f.last_seq,
        first_ts: f.first_ts,
        last_ts: f.last_ts,
        ingest_ts: f.ingest_ts,
        session_id: f.session_id,
        payload_length: f.payload_length,
      },
      f.file,
    );
    assert.equal(frame.version, 1);
    assert.equal(frame.byteLength, f.buffer.byteLength);
  }
});

test("sequence numbers above 2**32 are read as whole uint64 values", () => {
  const frame = parseFrame(frames[0].buffer);
  assert.ok(frame.firstSeq > 2 ** 32);
  assert.equal(frame.firstSeq, frames[0].first_seq);
});

test("flags: the first frame is a reset at a segment start", () => {
  const frame = parseFrame(frames[0].buffer);
  assert.equal(frame.flags, FLAG_SEGMENT_START | FLAG_RESET);
  assert.ok(frame.segmentStart && frame.reset);
  const later = parseFrame(frames[1].buffer);
  assert.ok(!later.segmentStart && !later.reset);
});

test("accepts a Uint8Array view that does not start at offset 0", () => {
  const source = new Uint8Array(frames[1].buffer);
  const padded = new Uint8Array(source.length + 7);
  padded.set(source, 7);
  const frame = parseFrame(padded.subarray(7));
  assert.equal(frame.firstSeq, frames[1].first_seq);
  assert.deepEqual(frame.payload, source.subarray(frames[1].header_length));
});

test("rejects short frames, other versions and bad header lengths", () => {
  assert.throws(() => parseFrame(new ArrayBuffer(10)), FrameError);
  const bytes = new Uint8Array(frames[1].buffer.slice(0));
  bytes[0] = 2;
  assert.throws(() => parseFrame(bytes), /version 2/);
  const bad = new Uint8Array(frames[1].buffer.slice(0));
  new DataView(bad.buffer).setUint16(2, 50, true); // shorter than 49 + session id
  assert.throws(() => parseFrame(bad), /header length/);
  new DataView(bad.buffer).setUint16(2, bad.length + 1, true);
  assert.throws(() => parseFrame(bad), /header length/);
});

test("a skipped frame says so and has no payload", () => {
  const bytes = readFileSync(new URL("./fixtures/skipped/frame-01.bin", import.meta.url));
  const frame = parseFrame(bytes);
  assert.equal(frame.flags, FLAG_SKIPPED);
  assert.ok(frame.skipped && !frame.segmentStart && !frame.reset);
  assert.equal(frame.eventCount, 0);
  assert.equal(frame.payload.byteLength, 0);
});
