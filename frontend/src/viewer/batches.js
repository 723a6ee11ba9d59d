// Payload → batches of rrweb events: the codec's stream decoding, UTF-8, one
// JSON array per line. Decoding is asynchronous (deflate-raw inflates through a
// DecompressionStream), and a segment's payloads depend on each other, so
// decode() queues: each call starts once the previous one settled.
// Pure: no DOM, so node tests import it directly.
import { InflateStreamDecoder, inflateSupported } from "./inflate.js";
import { Lz4StreamDecoder } from "./lz4.js";

const DECODERS = {
  "lz4-frame": () => new Lz4StreamDecoder(),
  "deflate-raw": () => new InflateStreamDecoder(),
};

/** The codecs this viewer decodes on this platform. */
export const SUPPORTED_CODECS = Object.keys(DECODERS).filter((codec) => codec !== "deflate-raw" || inflateSupported());

export class BatchError extends Error {
  name = "BatchError";
}

export class BatchDecoder {
  #codec;
  #stream;
  // fatal: corrupt output must surface as an error, not as U+FFFD in the replay.
  #utf8 = new TextDecoder("utf-8", { fatal: true });
  #tail = Promise.resolve();
  #generation = 0;

  /** @param {string} [codec] one of SUPPORTED_CODECS (the server's `welcome.codec`) */
  constructor(codec = "lz4-frame") {
    const make = SUPPORTED_CODECS.includes(codec) && DECODERS[codec];
    if (!make) throw new BatchError(`unsupported codec ${codec}`);
    this.#codec = codec;
    this.#stream = make();
  }

  get codec() {
    return this.#codec;
  }

  /** True while a segment is open (its start was decoded and nothing was reset). */
  get started() {
    return this.#stream.started;
  }

  /** Drops the segment at once; decodes queued before the reset fail. */
  reset() {
    this.#generation += 1;
    this.#stream.reset();
  }

  /**
   * Decodes one frame's payload, after every earlier call has settled.
   * @param {{payload: Uint8Array, segmentStart: boolean, firstSeq: number, lastSeq: number}} frame from parseFrame()
   * @returns {Promise<Array<Array<object>>>} the frame's batches, each an array of rrweb events
   */
  decode(frame) {
    const generation = this.#generation;
    const result = this.#tail.then(() => this.#decodeNow(frame, generation));
    this.#tail = result.catch(() => {});
    return result;
  }

  async #decodeNow(frame, generation) {
    if (generation !== this.#generation) throw new BatchError("the decoder was reset");
    const lines = frame.lastSeq - frame.firstSeq + 1;
    const bytes = await this.#stream.decode(frame.payload, { segmentStart: frame.segmentStart, lines });
    // Frames hold whole batches, so the text never ends inside a character or a line.
    const text = this.#utf8.decode(bytes);
    if (!text.endsWith("\n")) throw new BatchError("payload does not end with a whole batch");
    return text.slice(0, -1).split("\n").map((line, i) => {
      const batch = JSON.parse(line);
      if (!Array.isArray(batch)) throw new BatchError(`batch ${i} is not a JSON array`);
      return batch;
    });
  }
}
