import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFrame } from "../src/viewer/frame.js";
import { Lz4Error, Lz4StreamDecoder } from "../src/viewer/lz4.js";
import { frames, manifest, secondSegment } from "./fixtures.mjs";

const parsed = frames.map((f) => ({ ...f, frame: parseFrame(f.buffer) }));

function decodeAll(decoder, list) {
  return list.map(({ frame }) => decoder.decode(frame.payload, { segmentStart: frame.segmentStart }));
}

test("the fixtures exercise several blocks, back references and a stored block", () => {
  assert.ok(manifest.stats.blocks > 30);
  assert.ok(manifest.stats.blocks_needing_history >= 10);
  assert.ok(manifest.stats.stored_blocks >= 1);
  assert.ok(frames[0].text_length > 2 * 64 * 1024, "the first checkout spans several blocks");
  assert.ok(frames[secondSegment].text_length > 64 * 1024);
});

test("decodes every frame of both segments byte for byte", () => {
  const decoder = new Lz4StreamDecoder();
  const out = decodeAll(decoder, parsed);
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[i].expected, parsed[i].file));
});

test("a segment start resets the context: decoding can begin at the second segment", () => {
  const decoder = new Lz4StreamDecoder();
  const out = decodeAll(decoder, parsed.slice(secondSegment));
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[secondSegment + i].expected));
});

test("a decoder reused across segments gives the same output as a fresh one", () => {
  const reused = new Lz4StreamDecoder();
  decodeAll(reused, parsed.slice(0, 5));
  const out = decodeAll(reused, parsed.slice(secondSegment));
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[secondSegment + i].expected));
});

test("blocks are linked: skipping a frame corrupts what follows", () => {
  const decoder = new Lz4StreamDecoder();
  decodeAll(decoder, parsed.slice(0, 2));
  let differs = false;
  for (const { frame, expected } of parsed.slice(3, secondSegment)) {
    try {
      const bytes = decoder.decode(frame.payload, { segmentStart: false });
      if (Buffer.compare(Buffer.from(bytes), Buffer.from(expected)) !== 0) differs = true;
    } catch {
      differs = true;
    }
  }
  assert.ok(differs);
});

test("refuses to decode before a segment start, and after reset()", () => {
  const decoder = new Lz4StreamDecoder();
  assert.throws(() => decoder.decode(parsed[1].frame.payload, { segmentStart: false }), Lz4Error);
  decodeAll(decoder, parsed.slice(0, 2));
  assert.ok(decoder.started);
  decoder.reset();
  assert.ok(!decoder.started);
  assert.throws(() => decoder.decode(parsed[2].frame.payload, { segmentStart: false }), /segment start/);
});

test("rejects a segment without an LZ4 frame header and truncated blocks", () => {
  const decoder = new Lz4StreamDecoder();
  assert.throws(() => decoder.decode(parsed[1].frame.payload, { segmentStart: true }), /frame header/);
  const truncated = parsed[0].frame.payload.subarray(0, parsed[0].frame.payload.length - 5);
  assert.throws(() => new Lz4StreamDecoder().decode(truncated, { segmentStart: true }), /truncated/);
});

// Rewrites a segment's payloads with optional header fields and block checksums,
// which the pipeline's encoder does not use but the LZ4 frame format allows.
function withOptions(payloads, { contentSize = false, dictId = false, blockChecksum = false }) {
  return payloads.map((payload, n) => {
    const parts = [];
    let pos = 0;
    if (n === 0) {
      const flg = payload[4] | (contentSize ? 0x08 : 0) | (dictId ? 0x01 : 0) | (blockChecksum ? 0x10 : 0);
      parts.push(Uint8Array.of(...payload.subarray(0, 4), flg, payload[5]));
      if (contentSize) parts.push(new Uint8Array(8).fill(0xaa));
      if (dictId) parts.push(new Uint8Array(4).fill(0xbb));
      parts.push(payload.subarray(6, 7)); // HC (not checked)
      pos = 7;
    }
    while (pos < payload.length) {
      const size = new DataView(payload.buffer, payload.byteOffset + pos, 4).getUint32(0, true) & 0x7fffffff;
      parts.push(payload.subarray(pos, pos + 4 + size));
      if (blockChecksum) parts.push(new Uint8Array(4).fill(0xcc));
      pos += 4 + size;
    }
    return Buffer.concat(parts);
  });
}

test("reads optional content size, dictionary id and block checksums", () => {
  const segment = parsed.slice(0, secondSegment);
  const payloads = withOptions(segment.map(({ frame }) => frame.payload), { contentSize: true, dictId: true, blockChecksum: true });
  const decoder = new Lz4StreamDecoder();
  payloads.forEach((payload, i) => {
    const bytes = decoder.decode(new Uint8Array(payload), { segmentStart: i === 0 });
    assert.deepEqual(bytes, segment[i].expected);
  });
});

test("stops at an EndMark and refuses more data in that segment", () => {
  const decoder = new Lz4StreamDecoder();
  const first = parsed[0].frame.payload;
  const ended = Buffer.concat([first, new Uint8Array(4)]);
  assert.deepEqual(decoder.decode(new Uint8Array(ended), { segmentStart: true }), parsed[0].expected);
  assert.throws(() => decoder.decode(parsed[1].frame.payload, { segmentStart: false }), /end mark/);
});
