import assert from "node:assert/strict";
import { test } from "node:test";
import { BatchDecoder, BatchError, SUPPORTED_CODECS } from "../src/viewer/batches.js";
import { parseFrame } from "../src/viewer/frame.js";
import { CODECS, loadFixtures } from "./fixtures.mjs";

const utf8 = new TextDecoder();

function expectedBatches(f) {
  return utf8.decode(f.expected).slice(0, -1).split("\n").map((line) => JSON.parse(line));
}

test("supports exactly the codecs with fixtures; refuses others", () => {
  assert.deepEqual([...SUPPORTED_CODECS].sort(), [...CODECS].sort());
  assert.throws(() => new BatchDecoder("zstd"), BatchError);
  assert.equal(new BatchDecoder().codec, "lz4-frame");
});

for (const codec of CODECS) {
  const { frames, secondSegment } = loadFixtures(codec);

  test(`${codec}: each frame decodes into its batches of rrweb events`, async () => {
    const decoder = new BatchDecoder(codec);
    for (const f of frames) {
      const batches = await decoder.decode(parseFrame(f.buffer));
      assert.deepEqual(batches, expectedBatches(f), f.file);
      assert.equal(batches.length, f.batches);
      assert.equal(batches.length, f.last_seq - f.first_seq + 1);
      assert.equal(batches.flat().length, f.event_count);
      assert.equal(batches[0][0].timestamp, f.first_ts);
      assert.equal(batches.at(-1).at(-1).timestamp, f.last_ts);
    }
  });

  test(`${codec}: checkouts start with Meta then FullSnapshot, with non-ASCII text intact`, async () => {
    const decoder = new BatchDecoder(codec);
    const [checkout] = await decoder.decode(parseFrame(frames[0].buffer));
    assert.deepEqual(checkout.slice(0, 2).map((e) => e.type), [4, 2]);
    const text = JSON.stringify(checkout);
    assert.ok(text.includes("日本語") && text.includes("Grüße") && text.includes("🙂"));
    // The fixture puts a multi-byte character across the first 64 KiB block boundary.
    const boundary = frames[0].expected[64 * 1024];
    assert.ok(boundary >= 0x80 && boundary < 0xc0);
  });

  test(`${codec}: starts cleanly at the second segment`, async () => {
    const decoder = new BatchDecoder(codec);
    const batches = [];
    for (const f of frames.slice(secondSegment)) batches.push(...(await decoder.decode(parseFrame(f.buffer))));
    assert.equal(batches[0][0].type, 4);
    assert.equal(batches[0][0].data.href, "https://example.test/second");
  });

  test(`${codec}: calls made all at once settle in order with the right batches`, async () => {
    const decoder = new BatchDecoder(codec);
    const settled = [];
    const results = await Promise.all(
      frames.map((f, i) => decoder.decode(parseFrame(f.buffer)).then((batches) => (settled.push(i), batches))),
    );
    assert.deepEqual(settled, frames.map((_, i) => i));
    results.forEach((batches, i) => assert.deepEqual(batches, expectedBatches(frames[i]), frames[i].file));
  });

  test(`${codec}: a new segment queued behind the old one's frames waits its turn`, async () => {
    const decoder = new BatchDecoder(codec);
    const picked = [...frames.slice(0, 6), ...frames.slice(secondSegment)];
    const results = await Promise.all(picked.map((f) => decoder.decode(parseFrame(f.buffer))));
    results.forEach((batches, i) => assert.deepEqual(batches, expectedBatches(picked[i]), picked[i].file));
  });

  test(`${codec}: reset() fails what was queued before it; a segment start begins afresh`, async () => {
    const decoder = new BatchDecoder(codec);
    const early = frames.slice(0, 4).map((f) => decoder.decode(parseFrame(f.buffer)));
    decoder.reset();
    const later = frames.slice(secondSegment).map((f) => decoder.decode(parseFrame(f.buffer)));
    const outcomes = await Promise.allSettled(early);
    // The first call may have run before the reset; nothing queued behind it did.
    for (const outcome of outcomes.slice(1)) assert.equal(outcome.status, "rejected");
    const results = await Promise.all(later);
    results.forEach((batches, i) => assert.deepEqual(batches, expectedBatches(frames[secondSegment + i])));
  });

  test(`${codec}: a frame out of context fails loudly instead of replaying garbage`, async () => {
    const decoder = new BatchDecoder(codec);
    await decoder.decode(parseFrame(frames[0].buffer));
    await assert.rejects(decoder.decode(parseFrame(frames[5].buffer)));
    // and the failure does not wedge the queue: the next segment decodes
    const batches = await decoder.decode(parseFrame(frames[secondSegment].buffer));
    assert.deepEqual(batches, expectedBatches(frames[secondSegment]));
  });
}
