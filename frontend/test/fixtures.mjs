// Loads the frames written by make_fixtures.py (not a test itself).
// Both codecs encode the same batches into the same frames; they share decoded.txt.gz.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

const root = new URL("./fixtures/", import.meta.url);
const DIRS = { "lz4-frame": root, "deflate-raw": new URL("deflate-raw/", root) };
const decoded = gunzipSync(readFileSync(new URL("decoded.txt.gz", root)));

/**
 * One codec's fixtures.
 * @returns {{manifest: object, frames: Array<object>, secondSegment: number}} frames: each
 *   frame's manifest entry, its bytes as an ArrayBuffer, and its expected decoded bytes;
 *   secondSegment: the index of the second segment's first frame
 */
export function loadFixtures(codec) {
  const dir = DIRS[codec];
  const manifest = JSON.parse(readFileSync(new URL("manifest.json", dir), "utf8"));
  if (manifest.codec !== codec) throw new Error(`${dir} holds ${manifest.codec} fixtures`);
  const frames = manifest.frames.map((entry) => {
    const bytes = readFileSync(new URL(entry.file, dir));
    return {
      ...entry,
      buffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      expected: new Uint8Array(decoded.subarray(entry.text_offset, entry.text_offset + entry.text_length)),
    };
  });
  return { manifest, frames, secondSegment: frames.findIndex((f, i) => i > 0 && f.segment_start) };
}

export const CODECS = Object.keys(DIRS);

// The lz4-frame fixtures, as the tests that predate deflate-raw import them.
export const { manifest, frames, secondSegment } = loadFixtures("lz4-frame");
