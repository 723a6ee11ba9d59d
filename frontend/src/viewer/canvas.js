// Canvas pictures in a replay, drawn from outside the replay frame.
//
// The recorder sends each <canvas> (2D or WebGL) as a picture when it changed, at most
// `canvasFps` a second (frontend/src/recorder.js): a canvas mutation whose commands are
// `clearRect` and `drawImage` of one encoded image. A snapshot (every checkout, and a
// canvas added to the page) carries the canvas's picture so far as its `rr_dataURL`.
// rrweb's Replayer applies canvas mutations only with `UNSAFE_replayCanvas`, which lets
// scripts run in the replay frame. It does draw a snapshot's `rr_dataURL` into the
// canvas, but nothing drawn into a canvas of a frame without scripts shows: Chromium
// paints no canvas bitmap there, whoever draws (the pixels are in the canvas, the
// screen stays blank; headless Chromium 156). So this plugin shows each picture as the canvas element's CSS background, from the
// viewer's own script: the frame stays without scripts. A canvas gets only its newest
// picture: pictures that arrive together (a viewer catching up, a seek fast-forwarding
// through many) are decoded once, the last.

const FULL_SNAPSHOT = 2;
const INCREMENTAL = 3;
const MUTATION = 0;
const CANVAS_MUTATION = 9;
const ELEMENT_NODE = 2;

function blobOf(base64, type) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type });
}

/** The picture a canvas mutation carries, as a Blob, or null for any other kind. */
export function pictureOf(mutation) {
  const commands = mutation && Array.isArray(mutation.commands) ? mutation.commands : null;
  const draw = commands && commands.find((c) => c && c.property === "drawImage");
  const bitmap = draw && Array.isArray(draw.args) ? draw.args[0] : null;
  const blob = bitmap && bitmap.rr_type === "ImageBitmap" && Array.isArray(bitmap.args) ? bitmap.args[0] : null;
  const buffer = blob && blob.rr_type === "Blob" && Array.isArray(blob.data) ? blob.data[0] : null;
  if (!buffer || buffer.rr_type !== "ArrayBuffer" || typeof buffer.base64 !== "string") return null;
  return blobOf(buffer.base64, typeof blob.type === "string" ? blob.type : "image/webp");
}

/** A snapshot's `rr_dataURL` (`data:<type>;base64,<data>`) as a Blob, or null. */
export function pictureOfDataURL(url) {
  const match = typeof url === "string" ? /^data:([^;,]+);base64,(.*)$/s.exec(url) : null;
  return match ? blobOf(match[2], match[1]) : null;
}

/** Every canvas with a picture in a serialized node tree: [id, data URL] pairs. */
export function snapshotPictures(node, found = []) {
  if (!node) return found;
  if (node.type === ELEMENT_NODE && node.tagName === "canvas" && node.attributes
      && typeof node.attributes.rr_dataURL === "string") {
    found.push([node.id, node.attributes.rr_dataURL]);
  }
  if (Array.isArray(node.childNodes)) for (const child of node.childNodes) snapshotPictures(child, found);
  return found;
}

// How long a picture waits for its canvas to be built: the Replayer builds a recording's
// first snapshot in a timer after it hands the snapshot to plugins, and a seek builds
// what it fast-forwards through in a virtual DOM first.
const RETRY_MS = 50;
const RETRIES = 40;

/** An rrweb Replayer plugin (`plugins: [canvasPlugin()]`). */
export function canvasPlugin() {
  const newest = new Map(); // canvas id -> { picture: () => Blob, tries }
  const shown = new WeakMap(); // canvas element -> the object URL it shows
  let replayer = null;
  let scheduled = false;

  function show(canvas, url) {
    canvas.style.setProperty("background", `url("${url}") 0 0 / 100% 100% no-repeat`, "important");
  }

  function apply() {
    scheduled = false;
    for (const [id, waiting] of newest) {
      const canvas = replayer.getMirror().getNode(id);
      if (!canvas || canvas.nodeName !== "CANVAS") {
        waiting.tries += 1;
        if (waiting.tries > RETRIES) newest.delete(id);
        continue;
      }
      newest.delete(id);
      const blob = waiting.picture();
      if (!blob) continue;
      const url = URL.createObjectURL(blob);
      const before = shown.get(canvas);
      shown.set(canvas, url);
      show(canvas, url);
      // The picture before stays until the new one is decoded: no blank in between.
      if (before) setTimeout(() => URL.revokeObjectURL(before), 1000);
    }
    if (newest.size > 0) setTimeout(schedule, RETRY_MS);
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(apply);
  }

  function later(id, picture) {
    // Pictures are decoded when shown, and only the newest of those that came together.
    newest.set(id, { picture, tries: 0 });
    schedule();
  }

  function pictures(node) {
    for (const [id, url] of snapshotPictures(node)) later(id, () => pictureOfDataURL(url));
  }

  return {
    handler(event, _isSync, context) {
      replayer = context.replayer;
      if (event.type === FULL_SNAPSHOT) {
        pictures(event.data.node);
      } else if (event.type === INCREMENTAL && event.data.source === CANVAS_MUTATION) {
        later(event.data.id, () => pictureOf(event.data));
      } else if (event.type === INCREMENTAL && event.data.source === MUTATION) {
        for (const add of event.data.adds || []) pictures(add.node);
        // The page rewrote a canvas's style attribute: its picture goes back on.
        for (const change of event.data.attributes || []) {
          if (!change.attributes || !("style" in change.attributes)) continue;
          const canvas = replayer.getMirror().getNode(change.id);
          const url = canvas && shown.get(canvas);
          if (url) show(canvas, url);
        }
      }
    },
  };
}
