import assert from "node:assert/strict";
import { test } from "node:test";
import { BatchDecoder } from "../src/viewer/batches.js";
import { parseFrame } from "../src/viewer/frame.js";
import { frames, secondSegment } from "./fixtures.mjs";

const utf8 = new TextDecoder();

test("each frame decodes into its batches of rrweb events", () => {
  const decoder = new BatchDecoder();
  for (const f of frames) {
    const batches = decoder.decode(parseFrame(f.buffer));
    const text = utf8.decode(f.expected);
    const expected = text.slice(0, -1).split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(batches, expected, f.file);
    assert.equal(batches.length, f.batches);
    assert.equal(batches.length, f.last_seq - f.first_seq + 1);
    assert.equal(batches.flat().length, f.event_count);
    assert.equal(batches[0][0].timestamp, f.first_ts);
    assert.equal(batches.at(-1).at(-1).timestamp, f.last_ts);
  }
});

test("checkouts start with Meta then FullSnapshot, with non-ASCII text intact", () => {
  const decoder = new BatchDecoder();
  const [checkout] = decoder.decode(parseFrame(frames[0].buffer));
  assert.deepEqual(checkout.slice(0, 2).map((e) => e.type), [4, 2]);
  const text = JSON.stringify(checkout);
  assert.ok(text.includes("日本語") && text.includes("Grüße") && text.includes("🙂"));
  // The fixture puts a multi-byte character across the first 64 KiB block boundary.
  const boundary = frames[0].expected[64 * 1024];
  assert.ok(boundary >= 0x80 && boundary < 0xc0);
});

test("starts cleanly at the second segment", () => {
  const decoder = new BatchDecoder();
  const batches = frames.slice(secondSegment).flatMap((f) => decoder.decode(parseFrame(f.buffer)));
  assert.equal(batches[0][0].type, 4);
  assert.equal(batches[0][0].data.href, "https://example.test/second");
});

test("a frame out of context fails loudly instead of replaying garbage", () => {
  const decoder = new BatchDecoder();
  decoder.decode(parseFrame(frames[0].buffer));
  assert.throws(() => decoder.decode(parseFrame(frames[5].buffer)));
});
