// Times the viewer's own stream decoders (frontend/src/viewer/lz4.js, inflate.js) in
// V8 on a compressed stream that bench/compression.py wrote:
//
//   node bench/js_decode.mjs <lz4-frame|deflate-raw> <payloads file> [passes]
//
// The file holds payloads in stream order, each as: u8 flags (bit 0 segment start),
// u32 LE batch count, u32 LE length, then the bytes. Every pass decodes the whole
// stream with a fresh decoder, one payload at a time as the viewer does (awaiting
// deflate-raw's DecompressionStream); the fastest pass counts. Prints one JSON line:
// {"codec", "payloads", "bytes_in", "bytes_out", "best_s", "passes"}.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

import { InflateStreamDecoder } from "../frontend/src/viewer/inflate.js";
import { Lz4StreamDecoder } from "../frontend/src/viewer/lz4.js";

const [codec, path, passesArg] = process.argv.slice(2);
const passes = Number(passesArg || 3);
const raw = readFileSync(path);
const payloads = [];
for (let at = 0; at < raw.length;) {
  const flags = raw[at];
  const lines = raw.readUInt32LE(at + 1);
  const length = raw.readUInt32LE(at + 5);
  at += 9;
  payloads.push({ segmentStart: (flags & 1) === 1, lines, bytes: raw.subarray(at, at + length) });
  at += length;
}

const make = { "lz4-frame": () => new Lz4StreamDecoder(), "deflate-raw": () => new InflateStreamDecoder() }[codec];
if (!make) throw new Error(`unknown codec ${codec}`);

let best = Infinity;
let bytesOut = 0;
for (let pass = 0; pass < passes; pass++) {
  const decoder = make();
  let out = 0;
  const t0 = performance.now();
  for (const p of payloads) {
    const bytes = await decoder.decode(p.bytes, { segmentStart: p.segmentStart, lines: p.lines });
    out += bytes.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  best = Math.min(best, seconds);
  bytesOut = out;
  decoder.reset();
}
const bytesIn = payloads.reduce((n, p) => n + p.bytes.length, 0);
console.log(JSON.stringify({ codec, payloads: payloads.length, bytes_in: bytesIn, bytes_out: bytesOut, best_s: best, passes }));
