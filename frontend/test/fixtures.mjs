// Loads the frames written by make_fixtures.py (not a test itself).
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

const dir = new URL("./fixtures/", import.meta.url);

export const manifest = JSON.parse(readFileSync(new URL("manifest.json", dir), "utf8"));
const decoded = gunzipSync(readFileSync(new URL("decoded.txt.gz", dir)));

/** Each frame: its manifest entry, its bytes as an ArrayBuffer, and its expected decoded bytes. */
export const frames = manifest.frames.map((entry) => {
  const bytes = readFileSync(new URL(entry.file, dir));
  return {
    ...entry,
    buffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    expected: new Uint8Array(decoded.subarray(entry.text_offset, entry.text_offset + entry.text_length)),
  };
});

/** Index of the second segment's first frame. */
export const secondSegment = frames.findIndex((f, i) => i > 0 && f.segment_start);
