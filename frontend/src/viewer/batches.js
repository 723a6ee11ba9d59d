// Payload → batches of rrweb events: lz4-frame decoding, UTF-8, one JSON array per line.
// Pure: no DOM, so node tests import it directly.
import { Lz4StreamDecoder } from "./lz4.js";

export const SUPPORTED_CODECS = ["lz4-frame"];

export class BatchError extends Error {
  name = "BatchError";
}

export class BatchDecoder {
  #lz4 = new Lz4StreamDecoder();
  // fatal: corrupt output must surface as an error, not as U+FFFD in the replay.
  #utf8 = new TextDecoder("utf-8", { fatal: true });

  /** True while a segment is open (its start was decoded and nothing was reset). */
  get started() {
    return this.#lz4.started;
  }

  reset() {
    this.#lz4.reset();
  }

  /**
   * Decodes one frame's payload.
   * @param {{payload: Uint8Array, segmentStart: boolean}} frame from parseFrame()
   * @returns {Array<Array<object>>} the frame's batches, each an array of rrweb events
   */
  decode(frame) {
    const bytes = this.#lz4.decode(frame.payload, { segmentStart: frame.segmentStart });
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
