// Streaming decoder for the `lz4-frame` codec (docs/protocol.md, "Codec").
//
// A segment is one LZ4 frame whose linked blocks arrive a few at a time, one
// payload per binary frame. Blocks refer back up to 64 KiB into the segment's
// earlier output, so the decoder keeps that much history in front of where it
// writes; lz4js's decompressBlock copies matches out of its destination buffer.
// Pure: no DOM, so node tests import it directly.
import { concatBytes } from "./bytes.js";
import lz4js from "lz4js";

const MAGIC = 0x184d2204;
const WINDOW = 64 * 1024;
const STORED_BIT = 0x80000000;
const FLG_VERSION_MASK = 0xc0;
const FLG_VERSION_1 = 0x40;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_DICT_ID = 0x01;
const BLOCK_MAX_SIZES = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };

export class Lz4Error extends Error {
  name = "Lz4Error";
}

function readU32(bytes, at) {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

export class Lz4StreamDecoder {
  #buffer = null; // the segment's last output (history) followed by room for one block
  #historyLength = 0;
  #blockMaxSize = 0;
  #blockChecksum = false;
  #started = false;
  #ended = false;

  /** True once a segment's frame header was read, until reset(). */
  get started() {
    return this.#started;
  }

  /** Forgets the segment: the next payload must start one. */
  reset() {
    this.#started = false;
    this.#ended = false;
    this.#historyLength = 0;
  }

  /**
   * Decodes one payload's whole blocks.
   * @param {Uint8Array} payload
   * @param {{segmentStart: boolean}} options segmentStart: the payload begins
   *   with an LZ4 frame header and a fresh compression context.
   * @returns {Uint8Array} the decoded bytes
   */
  decode(payload, { segmentStart }) {
    let pos = 0;
    if (segmentStart) {
      this.reset();
      pos = this.#readFrameHeader(payload);
    } else if (!this.#started) {
      throw new Lz4Error("cannot decode before the first segment start");
    } else if (this.#ended) {
      throw new Lz4Error("data after the frame's end mark");
    }
    const parts = [];
    let total = 0;
    while (pos < payload.length) {
      if (pos + 4 > payload.length) throw new Lz4Error("truncated block size");
      const word = readU32(payload, pos);
      pos += 4;
      if (word === 0) {
        // EndMark; a content checksum may follow. Nothing more belongs to this segment.
        this.#ended = true;
        break;
      }
      const stored = word >= STORED_BIT;
      const size = stored ? word - STORED_BIT : word;
      if (size > this.#blockMaxSize) throw new Lz4Error(`block of ${size} bytes exceeds the maximum`);
      if (pos + size > payload.length) throw new Lz4Error("truncated block");
      const block = this.#decodeBlock(payload, pos, size, stored);
      parts.push(block);
      total += block.length;
      pos += size + (this.#blockChecksum ? 4 : 0);
    }
    return concatBytes(parts, total);
  }

  #readFrameHeader(payload) {
    if (payload.length < 7 || readU32(payload, 0) !== MAGIC) {
      throw new Lz4Error("segment does not start with an LZ4 frame header");
    }
    const flg = payload[4];
    if ((flg & FLG_VERSION_MASK) !== FLG_VERSION_1) throw new Lz4Error(`unsupported LZ4 frame version in FLG ${flg}`);
    const blockMaxSize = BLOCK_MAX_SIZES[(payload[5] >> 4) & 7];
    if (!blockMaxSize) throw new Lz4Error(`bad block maximum size in BD ${payload[5]}`);
    if (blockMaxSize !== this.#blockMaxSize || !this.#buffer) {
      this.#buffer = new Uint8Array(WINDOW + blockMaxSize);
      this.#blockMaxSize = blockMaxSize;
    }
    this.#blockChecksum = (flg & FLG_BLOCK_CHECKSUM) !== 0;
    this.#started = true;
    // magic, FLG, BD, [content size], [dictionary id], HC
    const length = 6 + (flg & FLG_CONTENT_SIZE ? 8 : 0) + (flg & FLG_DICT_ID ? 4 : 0) + 1;
    if (payload.length < length) throw new Lz4Error("truncated LZ4 frame header");
    return length;
  }

  #decodeBlock(payload, pos, size, stored) {
    const buffer = this.#buffer;
    const start = this.#historyLength;
    let end;
    if (stored) {
      buffer.set(payload.subarray(pos, pos + size), start);
      end = start + size;
    } else {
      end = lz4js.decompressBlock(payload, buffer, pos, size, start);
      // A typed array drops writes past its end, so overflow shows only here.
      if (end > buffer.length) throw new Lz4Error("block decodes past the maximum block size");
    }
    const block = buffer.slice(start, end);
    // Keep the last WINDOW bytes of the segment's output in front of the next block.
    if (end > WINDOW) {
      buffer.copyWithin(0, end - WINDOW, end);
      this.#historyLength = WINDOW;
    } else {
      this.#historyLength = end;
    }
    return block;
  }
}
