import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFrame } from "../src/viewer/frame.js";
import { InflateError, InflateStreamDecoder, inflateSupported } from "../src/viewer/inflate.js";
import { loadFixtures } from "./fixtures.mjs";

const { manifest, frames, secondSegment } = loadFixtures("deflate-raw");
const parsed = frames.map((f) => ({ ...f, frame: parseFrame(f.buffer) }));
const lines = (frame) => frame.lastSeq - frame.firstSeq + 1;

function decodeOne(decoder, { frame }) {
  return decoder.decode(frame.payload, { segmentStart: frame.segmentStart, lines: lines(frame) });
}

async function decodeAll(decoder, list) {
  const out = [];
  for (const item of list) out.push(await decodeOne(decoder, item));
  return out;
}

test("the fixtures hold a big checkout, multi-batch frames and frames that need history", () => {
  assert.equal(manifest.codec, "deflate-raw");
  assert.ok(manifest.stats.frames_needing_history >= 10);
  assert.ok(frames[0].text_length > 2 * 64 * 1024, "the first checkout is several output chunks");
  assert.ok(frames.some((f) => f.batches >= 4));
  assert.ok(secondSegment > 0 && frames[secondSegment].segment_start);
});

test("decodes every frame of both segments byte for byte", async () => {
  const out = await decodeAll(new InflateStreamDecoder(), parsed);
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[i].expected, parsed[i].file));
});

test("a segment start resets the context: decoding can begin at the second segment", async () => {
  const out = await decodeAll(new InflateStreamDecoder(), parsed.slice(secondSegment));
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[secondSegment + i].expected));
});

test("a decoder reused across segments gives the same output as a fresh one", async () => {
  const reused = new InflateStreamDecoder();
  await decodeAll(reused, parsed.slice(0, 5));
  const out = await decodeAll(reused, parsed.slice(secondSegment));
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[secondSegment + i].expected));
});

test("payloads are linked: skipping a frame fails or corrupts what follows", async () => {
  const decoder = new InflateStreamDecoder({ drainMs: 300 });
  await decodeAll(decoder, parsed.slice(0, 2));
  let differs = false;
  for (const item of parsed.slice(3, secondSegment)) {
    try {
      const bytes = await decodeOne(decoder, item);
      if (Buffer.compare(Buffer.from(bytes), Buffer.from(item.expected)) !== 0) differs = true;
    } catch {
      differs = true;
    }
  }
  assert.ok(differs);
});

test("refuses to decode before a segment start, and after reset()", async () => {
  const decoder = new InflateStreamDecoder();
  await assert.rejects(decodeOne(decoder, parsed[1]), InflateError);
  await decodeAll(decoder, parsed.slice(0, 2));
  assert.ok(decoder.started);
  decoder.reset();
  assert.ok(!decoder.started);
  await assert.rejects(decodeOne(decoder, parsed[2]), /segment start/);
});

test("a truncated payload fails soon after the stream took it in, then needs a new segment", async () => {
  const decoder = new InflateStreamDecoder({ drainMs: 300 });
  await decodeAll(decoder, parsed.slice(0, 3));
  const { frame } = parsed[3];
  const started = performance.now();
  const cut = frame.payload.subarray(0, Math.floor(frame.payload.length / 2));
  await assert.rejects(decoder.decode(cut, { segmentStart: false, lines: lines(frame) }), /truncated/);
  assert.ok(performance.now() - started < 2_000);
  assert.ok(!decoder.started);
  const out = await decodeAll(decoder, parsed.slice(secondSegment, secondSegment + 2));
  out.forEach((bytes, i) => assert.deepEqual(bytes, parsed[secondSegment + i].expected));
});

test("output that does not match the header's batch count is an error", async () => {
  const multi = parsed.findIndex((p) => lines(p.frame) >= 3);
  const decoder = new InflateStreamDecoder();
  await decodeAll(decoder, parsed.slice(0, multi));
  const { frame } = parsed[multi];
  await assert.rejects(decoder.decode(frame.payload, { segmentStart: false, lines: 1 }), /more than its 1 batches/);
});

test("corrupt data rejects instead of hanging", async () => {
  const junk = new Uint8Array(64).fill(0xff);
  await assert.rejects(new InflateStreamDecoder().decode(junk, { segmentStart: true, lines: 1 }), InflateError);
});

test("inflateSupported() tells a platform without deflate-raw apart", () => {
  assert.ok(inflateSupported());
  const native = globalThis.DecompressionStream;
  try {
    globalThis.DecompressionStream = class {
      constructor(format) {
        if (format !== "gzip") throw new TypeError(`unsupported format ${format}`);
      }
    };
    assert.ok(!inflateSupported());
    delete globalThis.DecompressionStream;
    assert.ok(!inflateSupported());
  } finally {
    globalThis.DecompressionStream = native;
  }
});
