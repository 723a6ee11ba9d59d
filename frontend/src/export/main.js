// The export page: rrweb's Replayer stepped by its own clock, one frame at a time, for
// pipeline/export/renderer.py to screenshot. Nothing here runs on a timer: a frame is
// what `pause(offset)` rebuilt synchronously, so the same events give the same pixels
// every time. No script runs inside the replay iframe (rrweb sandboxes it); motion
// that follows the wall clock there is switched off by a style rule instead.
import { Replayer } from "rrweb";
import { canvasPlugin } from "../viewer/canvas.js";
import { fitInto } from "../viewer/fit.js";

// Transitions, animations and a blinking caret run on the wall clock: two exports of one
// recording would differ wherever one was caught mid-way.
const STILL = "*, *::before, *::after { transition: none !important; animation: none !important; "
  + "caret-color: transparent !important; scroll-behavior: auto !important; }";

const MOUSE_MOVE = 1; // rrweb's IncrementalSource.MouseMove
const INCREMENTAL = 3; // rrweb's EventType.IncrementalSnapshot

const stage = document.getElementById("stage");
let replayer = null;

function fit(width, height) {
  const wrapper = replayer.wrapper;
  const { scale, x, y } = fitInto({ width: stage.clientWidth, height: stage.clientHeight }, { width, height });
  wrapper.style.width = `${width}px`;
  wrapper.style.height = `${height}px`;
  wrapper.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
}

/** After a mouse move, rrweb's next `play`/`pause` resumes from the move's first position
 * (up to 500 ms before the event) and casts the events since then a second time: a node
 * added meanwhile would be added twice. Every event up to the clock has been applied, so
 * the replayer is told the last one was not a move. */
function forgetMoveOffset() {
  const context = replayer.service.state.context;
  const last = context.lastPlayedEvent;
  if (last?.type === INCREMENTAL && last.data?.source === MOUSE_MOVE) {
    context.lastPlayedEvent = { ...last, data: { ...last.data, source: -1 } };
  }
}

/** Resolves once every image of `doc` (and of its same-origin frames) has loaded or failed,
 * and its fonts are settled: a screenshot taken earlier could catch either half-way. */
async function settled(doc, depth = 0) {
  if (!doc || depth > 8) return;
  const waits = [];
  for (const img of doc.images) {
    if (!img.complete) waits.push(new Promise((done) => { img.addEventListener("load", done, { once: true }); img.addEventListener("error", done, { once: true }); }));
  }
  if (doc.fonts) waits.push(doc.fonts.ready);
  await Promise.all(waits);
  for (const frame of doc.querySelectorAll("iframe")) {
    let inner = null;
    try { inner = frame.contentDocument; } catch { inner = null; }
    await settled(inner, depth + 1);
  }
}

window.rrexport = {
  /** Loads the recording's events; resolves to its clock: {startTime, totalTime}. */
  async load(eventsUrl) {
    const response = await fetch(eventsUrl);
    if (!response.ok) throw new Error(`the recording's events did not load (HTTP ${response.status})`);
    const events = await response.json();
    if (!Array.isArray(events) || events.length < 2) throw new Error("the recording holds fewer than two events");
    replayer = new Replayer(events, {
      root: stage,
      mouseTail: false,
      showWarning: false,
      pauseAnimation: false,
      UNSAFE_replayCanvas: false,
      insertStyleRules: [STILL],
      plugins: [canvasPlugin()],
    });
    replayer.on("resize", ({ width, height }) => fit(width, height));
    // The constructor sizes the page and builds the first snapshot on timers of its own:
    // let them run now, so they never land between two frames.
    await new Promise((done) => setTimeout(done, 20));
    const { startTime, totalTime } = replayer.getMetaData();
    return { startTime, totalTime };
  },

  /** Shows the page as it was `offsetMs` after the first event (every event before that
   * offset applied); resolves once its images and fonts settled. */
  async seek(offsetMs) {
    replayer.pause(offsetMs);
    forgetMoveOffset();
    await settled(replayer.iframe.contentDocument);
  },

  /** How many elements of the replayed page match `selector` (tests, diagnostics). */
  count(selector) {
    return replayer.iframe.contentDocument?.querySelectorAll(selector).length ?? 0;
  },
};
