import assert from "node:assert/strict";
import { test } from "node:test";
import { canvasPlugin, pictureOf } from "../src/viewer/canvas.js";

// A canvas picture as rrweb's fps sampling records it (frontend/src/recorder.js).
function picture(id, bytes, type = "image/webp") {
  return {
    source: 9, id, type: 0,
    commands: [
      { property: "clearRect", args: [0, 0, 10, 10] },
      { property: "drawImage", args: [{ rr_type: "ImageBitmap", args: [{
        rr_type: "Blob", type, data: [{ rr_type: "ArrayBuffer", base64: Buffer.from(bytes).toString("base64") }],
      }] }, 0, 0] },
    ],
  };
}

test("a picture's bytes and type come out as a Blob", async () => {
  const blob = pictureOf(picture(3, [1, 2, 250, 0]));
  assert.equal(blob.type, "image/webp");
  assert.deepEqual([...new Uint8Array(await blob.arrayBuffer())], [1, 2, 250, 0]);
});

test("a canvas mutation that is not a picture is none", () => {
  assert.equal(pictureOf({ source: 9, id: 3, type: 0, commands: [{ property: "fillRect", args: [0, 0, 1, 1] }] }), null);
  assert.equal(pictureOf({ source: 9, id: 3, type: 1, commands: [] }), null);
  assert.equal(pictureOf({}), null);
});

test("only the newest of pictures that arrive together is drawn", async () => {
  const decoded = [];
  const drawn = [];
  globalThis.createImageBitmap = async (blob) => {
    const bytes = [...new Uint8Array(await blob.arrayBuffer())];
    decoded.push(bytes[0]);
    return { bytes, close() {} };
  };
  const canvas = {
    nodeName: "CANVAS", width: 10, height: 10,
    getContext: () => ({ clearRect() {}, drawImage: (bitmap) => drawn.push(bitmap.bytes[0]) }),
  };
  const replayer = { getMirror: () => ({ getNode: (id) => (id === 7 ? canvas : null) }) };
  const plugin = canvasPlugin();
  for (const n of [1, 2, 3]) plugin.handler({ type: 3, data: picture(7, [n]) }, true, { replayer });
  plugin.handler({ type: 3, data: picture(8, [9]) }, true, { replayer });  // no such canvas
  plugin.handler({ type: 3, data: { source: 2 } }, true, { replayer });  // not a canvas mutation
  await new Promise((done) => setTimeout(done, 20));
  assert.deepEqual(decoded, [3]);
  assert.deepEqual(drawn, [3]);
  delete globalThis.createImageBitmap;
});
