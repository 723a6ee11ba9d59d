// Byte helpers shared by the stream decoders (no DOM, so node tests can use them).

/** Joins byte arrays of `total` bytes in all; returns the only one as is. */
export function concatBytes(parts, total) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
