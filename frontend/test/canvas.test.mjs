import assert from "node:assert/strict";
import { test } from "node:test";
import { canvasPlugin, pictureOf, pictureOfDataURL } from "../src/viewer/canvas.js";

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

// A canvas element as the plugin sees it: what its style shows, and the Blob behind it.
function fakeCanvas(blobs) {
  const shown = [];
  return {
    nodeName: "CANVAS",
    shown,
    style: {
      setProperty(name, value, priority) {
        const url = /url\("([^"]+)"\)/.exec(value)[1];
        shown.push({ name, priority, blob: blobs.get(url) });
      },
    },
  };
}

// URL.createObjectURL / revokeObjectURL that remember which Blob each URL names.
function fakeObjectURLs() {
  const blobs = new Map();
  const revoked = [];
  const saved = [URL.createObjectURL, URL.revokeObjectURL];
  URL.createObjectURL = (blob) => {
    const url = `blob:test/${blobs.size}`;
    blobs.set(url, blob);
    return url;
  };
  URL.revokeObjectURL = (url) => revoked.push(url);
  return { blobs, revoked, restore() { [URL.createObjectURL, URL.revokeObjectURL] = saved; } };
}

const bytesOf = async (blob) => [...new Uint8Array(await blob.arrayBuffer())];
const settle = (ms = 20) => new Promise((done) => setTimeout(done, ms));

test("only the newest of pictures that arrive together is shown, as the canvas's background", async () => {
  const urls = fakeObjectURLs();
  try {
    const canvas = fakeCanvas(urls.blobs);
    const replayer = { getMirror: () => ({ getNode: (id) => (id === 7 ? canvas : null) }) };
    const plugin = canvasPlugin();
    for (const n of [1, 2, 3]) plugin.handler({ type: 3, data: picture(7, [n]) }, true, { replayer });
    plugin.handler({ type: 3, data: picture(8, [9]) }, true, { replayer }); // no such canvas
    plugin.handler({ type: 3, data: { source: 2 } }, true, { replayer }); // not a canvas mutation
    await settle();
    assert.equal(urls.blobs.size, 1);
    assert.equal(canvas.shown.length, 1);
    assert.equal(canvas.shown[0].name, "background");
    assert.equal(canvas.shown[0].priority, "important");
    assert.deepEqual(await bytesOf(canvas.shown[0].blob), [3]);
  } finally {
    urls.restore();
  }
});

test("a newer picture replaces the one shown, whose URL is let go, and survives a style rewrite", async () => {
  const urls = fakeObjectURLs();
  try {
    const canvas = fakeCanvas(urls.blobs);
    const replayer = { getMirror: () => ({ getNode: (id) => (id === 7 ? canvas : null) }) };
    const plugin = canvasPlugin();
    plugin.handler({ type: 3, data: picture(7, [1]) }, false, { replayer });
    await settle();
    plugin.handler({ type: 3, data: picture(7, [2]) }, false, { replayer });
    await settle(1100);
    assert.deepEqual(urls.revoked, ["blob:test/0"]);
    // The page set the canvas's style attribute: the replayer rewrote it, the picture goes back on.
    plugin.handler({ type: 3, data: { source: 0, adds: [], removes: [], texts: [],
      attributes: [{ id: 7, attributes: { style: "width: 10px" } }] } }, false, { replayer });
    assert.deepEqual(await Promise.all(canvas.shown.map((s) => bytesOf(s.blob))), [[1], [2], [2]]);
  } finally {
    urls.restore();
  }
});

test("a picture for a canvas not built yet is shown once it is", async () => {
  const urls = fakeObjectURLs();
  try {
    const canvas = fakeCanvas(urls.blobs);
    let built = false;
    const replayer = { getMirror: () => ({ getNode: (id) => (built && id === 7 ? canvas : null) }) };
    const plugin = canvasPlugin();
    plugin.handler({ type: 3, data: picture(7, [5]) }, false, { replayer });
    await settle(120);
    assert.equal(canvas.shown.length, 0);
    built = true;
    await settle(120);
    assert.equal(canvas.shown.length, 1);
    assert.deepEqual(await bytesOf(canvas.shown[0].blob), [5]);
  } finally {
    urls.restore();
  }
});

test("a snapshot's canvas pictures are shown: at a checkout and when a canvas is added", async () => {
  const urls = fakeObjectURLs();
  try {
    const canvases = new Map([4, 6].map((id) => [id, fakeCanvas(urls.blobs)]));
    const replayer = { getMirror: () => ({ getNode: (id) => canvases.get(id) ?? null }) };
    const url = (bytes) => `data:image/webp;base64,${Buffer.from(bytes).toString("base64")}`;
    const plugin = canvasPlugin();
    plugin.handler({ type: 2, data: { node: { type: 0, id: 1, childNodes: [
      { type: 2, id: 2, tagName: "body", attributes: {}, childNodes: [
        { type: 2, id: 4, tagName: "canvas", attributes: { rr_dataURL: url([7, 7]) }, childNodes: [] },
        { type: 2, id: 5, tagName: "canvas", attributes: {}, childNodes: [] },
      ] },
    ] } } }, true, { replayer });
    plugin.handler({ type: 3, data: { source: 0, adds: [{ parentId: 2, node:
      { type: 2, id: 6, tagName: "canvas", attributes: { rr_dataURL: url([8]) }, childNodes: [] } }],
      removes: [], texts: [], attributes: [] } }, false, { replayer });
    await settle();
    const four = canvases.get(4).shown;
    const six = canvases.get(6).shown;
    assert.equal(four.length, 1);
    assert.equal(four[0].blob.type, "image/webp");
    assert.deepEqual(await bytesOf(four[0].blob), [7, 7]);
    assert.deepEqual(await bytesOf(six[0].blob), [8]);
    assert.equal(pictureOfDataURL("not a data url"), null);
  } finally {
    urls.restore();
  }
});
