// Binary frame header of wire protocol v1 (docs/protocol.md, "Binary frames").
// Pure: no DOM, so node tests import it directly.

export const PROTOCOL_VERSION = 1;
export const FLAG_SEGMENT_START = 0x01;
export const FLAG_RESET = 0x02;
// Superseded canvas pictures: the sequence numbers only, nothing to decode.
export const FLAG_SKIPPED = 0x04;

// Fixed part of the header, before the session id.
const FIXED_LENGTH = 49;

export class FrameError extends Error {
  name = "FrameError";
}

/**
 * Splits a binary frame into its header fields and compressed payload.
 * @param {ArrayBuffer|Uint8Array} data
 * @returns {{version: number, flags: number, segmentStart: boolean, reset: boolean,
 *   skipped: boolean, headerLength: number, eventCount: number, firstSeq: number, lastSeq: number,
 *   firstTs: number, lastTs: number, ingestTs: number, sessionId: string,
 *   byteLength: number, payload: Uint8Array}}
 */
export function parseFrame(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.byteLength < FIXED_LENGTH) throw new FrameError(`frame too short: ${bytes.byteLength} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  if (version !== PROTOCOL_VERSION) throw new FrameError(`unsupported frame version ${version}`);
  const flags = view.getUint8(1);
  const headerLength = view.getUint16(2, true);
  const idLength = view.getUint8(48);
  if (headerLength < FIXED_LENGTH + idLength || headerLength > bytes.byteLength) {
    throw new FrameError(`bad header length ${headerLength} for a ${bytes.byteLength}-byte frame`);
  }
  return {
    version,
    flags,
    segmentStart: (flags & FLAG_SEGMENT_START) !== 0,
    reset: (flags & FLAG_RESET) !== 0,
    skipped: (flags & FLAG_SKIPPED) !== 0,
    headerLength,
    eventCount: view.getUint32(4, true),
    // Sequence numbers stay far below 2**53, where Number is exact.
    firstSeq: Number(view.getBigUint64(8, true)),
    lastSeq: Number(view.getBigUint64(16, true)),
    firstTs: view.getFloat64(24, true),
    lastTs: view.getFloat64(32, true),
    ingestTs: view.getFloat64(40, true),
    sessionId: String.fromCharCode(...bytes.subarray(FIXED_LENGTH, FIXED_LENGTH + idLength)),
    byteLength: bytes.byteLength,
    payload: bytes.subarray(headerLength),
  };
}
