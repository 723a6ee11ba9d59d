// Streaming decoder for the `deflate-raw` codec: one raw deflate stream per
// segment, with a sync flush after every batch, inflated by the platform's
// DecompressionStream("deflate-raw") (browsers, and Node 20 for the tests).
//
// A DecompressionStream is asynchronous and says nothing about where one
// input's output ends, so a payload is done when its output holds the frame's
// batch count of "\n" terminators: the encoder flushed after each batch, and
// UTF-8 never puts a 0x0A byte inside a character.
// Pure: no DOM, so node tests import it directly.
import { concatBytes } from "./bytes.js";


const NEWLINE = 0x0a;

export class InflateError extends Error {
  name = "InflateError";
}

/** Whether this platform inflates deflate-raw (Chrome 103+, Firefox 113+, Safari 16.4+). */
export function inflateSupported() {
  try {
    new DecompressionStream("deflate-raw");
    return true;
  } catch {
    return false;
  }
}

export class InflateStreamDecoder {
  #segment = null; // {writer, reader} of the open segment's DecompressionStream
  #timeoutMs;
  #drainMs;

  /**
   * @param {object} [options]
   * @param {number} [options.timeoutMs] how long the stream may take to take a payload in
   * @param {number} [options.drainMs] how long to wait for output once it has: a
   *   DecompressionStream has queued all of a payload's output by the time the write
   *   resolves, so a payload still short of batches after that was truncated or is
   *   out of context
   */
  constructor({ timeoutMs = 10_000, drainMs = 500 } = {}) {
    this.#timeoutMs = timeoutMs;
    this.#drainMs = drainMs;
  }

  /** True once a segment was opened, until reset() or a failed payload. */
  get started() {
    return this.#segment !== null;
  }

  /** Forgets the segment; a decode still reading from it fails. */
  reset() {
    const segment = this.#segment;
    this.#segment = null;
    if (segment) {
      segment.reader.cancel().catch(() => {});
      segment.writer.abort().catch(() => {});
    }
  }

  /**
   * Inflates one payload. Calls must not overlap: each reads its own output
   * from the segment's shared stream (BatchDecoder queues them).
   * @param {Uint8Array} payload
   * @param {{segmentStart: boolean, lines: number}} options lines: how many
   *   batches (each ending in "\n") the payload holds
   * @returns {Promise<Uint8Array>} the decoded bytes, ending with the last batch's "\n"
   */
  async decode(payload, { segmentStart, lines }) {
    if (segmentStart) {
      this.reset();
      const stream = new DecompressionStream("deflate-raw");
      this.#segment = { writer: stream.writable.getWriter(), reader: stream.readable.getReader() };
    }
    const segment = this.#segment;
    if (!segment) throw new InflateError("cannot decode before the first segment start");
    try {
      return await this.#inflate(segment, payload, lines);
    } catch (error) {
      // The stream's position is unknown now: only a new segment can follow.
      if (this.#segment === segment) this.reset();
      throw error instanceof InflateError ? error : new InflateError(error?.message ?? String(error));
    }
  }

  async #inflate({ writer, reader }, payload, lines) {
    // Not awaited alone: with no read pending the stream holds the write back.
    const written = writer.write(payload);
    const stalled = this.#deadline(written);
    const parts = [];
    let total = 0;
    let found = 0;
    try {
      while (found < lines) {
        const { value, done } = await Promise.race([reader.read(), stalled.promise]);
        if (done) throw new InflateError("the deflate stream ended inside a frame");
        for (let at = value.indexOf(NEWLINE); at !== -1; at = value.indexOf(NEWLINE, at + 1)) found += 1;
        parts.push(value);
        total += value.length;
      }
    } finally {
      stalled.cancel();
    }
    const last = parts.at(-1);
    if (found > lines || last[last.length - 1] !== NEWLINE) {
      throw new InflateError(`payload holds more than its ${lines} batches`);
    }
    return concatBytes(parts, total);
  }

  // Rejects when the stream does not take the payload in within timeoutMs, or
  // has not produced all of its batches drainMs after it did.
  #deadline(written) {
    let timer = null;
    let over = false;
    let reject;
    const promise = new Promise((_, r) => (reject = r));
    promise.catch(() => {});
    const arm = (ms, message) => {
      clearTimeout(timer);
      if (!over) timer = setTimeout(() => reject(new InflateError(message)), ms);
    };
    arm(this.#timeoutMs, `the stream took no input for ${this.#timeoutMs} ms`);
    written.then(
      () => arm(this.#drainMs, "the payload ended before its batches did: truncated or out of context"),
      (error) => reject(error), // the stream failed; the pending read says so too
    );
    return {
      promise,
      cancel: () => {
        over = true;
        clearTimeout(timer);
      },
    };
  }
}
