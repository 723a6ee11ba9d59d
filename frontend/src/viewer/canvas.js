// Canvas pictures in a replay, drawn from outside the replay frame.
//
// The recorder sends each <canvas> (2D or WebGL) as a picture when it changed, at most
// `canvasFps` a second (frontend/src/recorder.js): a canvas mutation whose commands are
// `clearRect` and `drawImage` of one encoded image. rrweb's Replayer applies canvas
// mutations only with `UNSAFE_replayCanvas`, which lets scripts run in the replay frame;
// this plugin draws them instead, from the viewer's own script, into the frame's canvas
// element, so the frame stays without scripts. A canvas gets only its newest picture:
// pictures that arrive while one is being decoded (a viewer catching up, a seek that
// fast-forwards through many) are skipped, not drawn one after the other.

const INCREMENTAL = 3;
const CANVAS_MUTATION = 9;

/** The picture a canvas mutation carries, as a Blob, or null for any other kind. */
export function pictureOf(mutation) {
  const commands = mutation && Array.isArray(mutation.commands) ? mutation.commands : null;
  const draw = commands && commands.find((c) => c && c.property === "drawImage");
  const bitmap = draw && Array.isArray(draw.args) ? draw.args[0] : null;
  const blob = bitmap && bitmap.rr_type === "ImageBitmap" && Array.isArray(bitmap.args) ? bitmap.args[0] : null;
  const buffer = blob && blob.rr_type === "Blob" && Array.isArray(blob.data) ? blob.data[0] : null;
  if (!buffer || buffer.rr_type !== "ArrayBuffer" || typeof buffer.base64 !== "string") return null;
  const binary = atob(buffer.base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type: typeof blob.type === "string" ? blob.type : "image/webp" });
}

/** An rrweb Replayer plugin (`plugins: [canvasPlugin()]`). */
export function canvasPlugin() {
  const newest = new WeakMap(); // canvas element -> the mutation to draw next
  const drawing = new WeakSet(); // canvases whose picture is being decoded

  async function draw(canvas) {
    try {
      while (newest.has(canvas)) {
        const picture = pictureOf(newest.get(canvas));
        newest.delete(canvas);
        if (!picture) continue;
        let bitmap;
        try {
          bitmap = await createImageBitmap(picture);
        } catch (error) {
          continue; // a picture this browser cannot decode: the canvas keeps the last one
        }
        const context = canvas.getContext("2d");
        if (context) {
          context.clearRect(0, 0, canvas.width, canvas.height);
          context.drawImage(bitmap, 0, 0);
        }
        bitmap.close();
      }
    } finally {
      drawing.delete(canvas);
    }
  }

  return {
    handler(event, _isSync, { replayer }) {
      if (event.type !== INCREMENTAL || event.data.source !== CANVAS_MUTATION) return;
      const canvas = replayer.getMirror().getNode(event.data.id);
      if (!canvas || canvas.nodeName !== "CANVAS") return;
      // Decoding is left for when the picture is drawn; only the newest is.
      newest.set(canvas, event.data);
      if (!drawing.has(canvas)) {
        drawing.add(canvas);
        queueMicrotask(() => draw(canvas).catch(() => {}));
      }
    },
  };
}
