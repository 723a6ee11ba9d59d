// In-page recorder: rrweb.record plus a batcher that hands events to the
// session actor one binding call per batch (see docs/protocol.md).
//
// The session actor prepends `window.__RRSTREAM_OPTIONS__ = {...};` and
// registers the CDP binding named by `options.binding` before any page script.
// It drives the recorder through `window.__rrstreamRecorder` (pipeline/recorder.py):
// `checkout()` takes a Meta + FullSnapshot now (a reopened stream must start with
// one), `state()` says whether rrweb started and how many snapshots this document
// took, and `restart()` starts rrweb again when it took none. `degrade(level)` restarts
// rrweb with `options.samplingLevels[level]` (a page emitting over
// RRSTREAM_MAX_EVENTS_PER_S: coarser sampling from a new checkout), `everyKeystroke(on)`
// records inputs at every keystroke while a person is in control, and `pause(ms)`
// stops it for `ms` and then starts it again: a stretch left out whole, after which the
// new FullSnapshot keeps the replay consistent (pipeline/event_rate.py decides). The last
// `probeMs` of a pause rrweb runs without sending anything (`probe`): a page still over
// a limit stays paused and says so in a notice (`!events/s|bytes/s|Date.now()`), and the
// session answers with the next, longer pause; so a page that keeps up a flood sends
// nothing of it after its first pause, not a checkout and a window of it at each resume.
//
// Checkouts: rrweb's own `checkoutEveryNms` takes one at the first event past the interval;
// here the same is done by this recorder (`checkoutDue`), so that a page whose snapshot
// is large is checked out less often: with a byte budget (`maxEventBytesPerS`), at most
// `checkoutShare` of it goes to periodic checkouts (a 4 MB snapshot under 1 MB/s: one
// every 16 s, not every 5 s). Checkouts asked for (a reopened stream, a pause's end) are
// taken when asked, whatever their size.
//
// Privacy options (a session's spec): `maskAllInputs`, `maskTextSelector` and
// `blockSelector` go to rrweb as they are. A selector the page's engine rejects would
// make rrweb record what it was meant to hide, so then nothing is recorded at all and
// the failure is reported.
import { record } from "rrweb";

(function startRecorder() {
  const href = location.href;
  // rrweb builds a hidden about:blank iframe to borrow untainted prototypes;
  // starting record() inside it recurses and hangs the page. Same-origin blank
  // and srcdoc frames are recorded by their parent's recorder anyway.
  if (href === "about:blank" || href === "about:srcdoc" || !href.startsWith("http")) return;
  if (window.__rrstreamRecording) return;
  window.__rrstreamRecording = true;

  const options = window.__RRSTREAM_OPTIONS__ || {};
  const bindingName = options.binding || "__rrstreamBatch";
  const flushMs = options.flushMs ?? 10;
  const maxBatchChars = options.maxBatchChars ?? 262144;
  const pieceChars = options.pieceChars ?? 1048576;
  const pieceGapMs = options.pieceGapMs ?? 10;
  // Taken before any page script runs, so a page that replaces or deletes it
  // cannot keep rrweb from observing the DOM (see startRrweb).
  const NativeMutationObserver = window.MutationObserver;

  let parts = [];
  let chars = 0;
  let canvasChars = 0;  // of canvas pictures, in this batch
  let pictureOf = null;  // the canvas whose picture this batch is, alone (see picturedCanvas)
  let checkout = false;
  let firstTs = 0;
  let lastTs = 0;
  let timer = 0;
  let lastFlushAt = 0;
  let retry = 0;
  let pacing = 0;
  let lastSentAt = 0;
  let snapshots = 0;
  let failure = null;
  let stopRrweb = null;
  let leaving = false;
  const undelivered = [];
  const maxEventsPerS = options.maxEventsPerS ?? 0;
  const maxEventBytesPerS = options.maxEventBytesPerS ?? 0;
  const probeMs = options.probeMs ?? 1000;
  const checkoutEveryMs = options.checkoutEveryMs ?? 5000;
  const checkoutShare = options.checkoutShare ?? 0.25;
  let lastCheckoutTs = 0;  // the newest FullSnapshot's timestamp
  let snapshotChars = 0;  // and its JSON's length
  let probe = null;  // while the end of a pause is measured: { events, chars, since, over }
  let probeTimer = 0;
  let pauseMs = 0;

  // A message over pieceChars (one huge event: a very large DOM's snapshot) goes in
  // pieces, "~<part>" ... "$<last part>", one piece every pieceGapMs: the node's shared
  // browser and its Playwright server carry every session's binding calls in order, and
  // tens of MB at once held up everyone else's for hundreds of ms. Whole messages start
  // with a digit (flush). A piece never ends inside a surrogate pair, which would not
  // survive the trip as UTF-8.
  function pieces(message) {
    const parts = [];
    let at = 0;
    while (at < message.length) {
      let end = Math.min(at + pieceChars, message.length);
      const code = message.charCodeAt(end - 1);
      if (end < message.length && code >= 0xd800 && code <= 0xdbff) end -= 1;
      parts.push((end < message.length ? "~" : "$") + message.slice(at, end));
      at = end;
    }
    return parts;
  }

  function deliver(message, now) {
    if (message !== undefined) {
      // The allowance below counts from when there was something to send.
      if (!undelivered.length) lastSentAt = performance.now();
      if (message.length <= pieceChars) undelivered.push(message);
      else undelivered.push(...pieces(message));
    }
    if (pacing && !now) return;  // the paced sender takes it in turn
    const send = window[bindingName];
    if (typeof send !== "function") {
      // The binding is installed per execution context; keep batches in order
      // until it shows up rather than dropping them (a lost mutation breaks replay).
      if (!retry) retry = setTimeout(() => { retry = 0; deliver(); }, 10);
      return;
    }
    // At least one message now; more in this task up to pieceChars for every pieceGapMs
    // since the last send or since the queue filled (a page whose main thread was busy,
    // say snapshotting again, must not fall ever further behind), unless the page is
    // going away (`now`): then everything, as no later task runs.
    const at = performance.now();
    const allowance = Math.max(pieceChars, ((at - lastSentAt) / pieceGapMs) * pieceChars);
    lastSentAt = at;
    let sent = 0;
    while (undelivered.length && (now || sent < allowance)) {
      const next = undelivered.shift();
      send(next);
      sent += next.length;
    }
    if (undelivered.length && !pacing) {
      pacing = setTimeout(() => { pacing = 0; deliver(); }, pieceGapMs);
    }
  }

  function flush() {
    if (timer) {
      clearTimeout(timer);
      timer = 0;
    }
    if (!parts.length) return;
    // Header fields before the JSON so the receiver never parses events.
    const message = `${checkout ? 1 : 0}|${parts.length}|${firstTs}|${lastTs}|${canvasChars}|${pictureOf ?? ""}|[${parts.join(",")}]`;
    parts = [];
    chars = 0;
    canvasChars = 0;
    pictureOf = null;
    checkout = false;
    lastFlushAt = performance.now();
    deliver(message);
  }

  function emit(event) {
    if (probe) {
      measure(event);
      return;
    }
    // A checkout (Meta, then FullSnapshot) always starts a batch of its own, and a
    // canvas's picture is a batch of its own: a newer picture of the canvas supersedes
    // it, so a viewer that fell behind may be sent the newer one only (docs/protocol.md,
    // "Skipped pictures"), which the header's canvas id allows without parsing events.
    const picture = picturedCanvas(event);
    if (event.type === 4 || picture !== null) flush();
    if (event.type === 4) checkout = true;
    const text = JSON.stringify(event);
    if (event.type === 2) {
      snapshots += 1;
      lastCheckoutTs = event.timestamp;
      snapshotChars = text.length;
    }
    if (!parts.length) firstTs = event.timestamp;
    lastTs = event.timestamp;
    parts.push(text);
    chars += text.length;
    if (event.type === 3 && event.data && event.data.source === 9) canvasChars += text.length;
    if (picture !== null) pictureOf = picture;
    if (event.type === 3 && checkoutDue(event.timestamp)) {
      // As rrweb does it: inside the emit of the event past the interval (rrweb locks
      // its mutation buffers while it snapshots). The checkout flushes this batch first.
      try {
        record.takeFullSnapshot(true);
      } catch (error) {
        // Not recording any more (stopped in this task): the next start takes one.
      }
    }
    if (leaving) {
      flushAll();  // the document is going: no later task runs to send it
    } else if (picture !== null || chars >= maxBatchChars) {
      flush();
    } else if (!timer) {
      // Idle page: send on the next task. Busy page: gather for flushMs.
      const idle = performance.now() - lastFlushAt >= flushMs;
      timer = setTimeout(flush, idle ? 0 : flushMs);
    }
  }

  // The canvas (rrweb node id) an event pictures whole, or null: rrweb's fps sampling
  // sends a canvas as `clearRect` of all of it, then `drawImage` of one encoded picture.
  function picturedCanvas(event) {
    const data = event.type === 3 && event.data;
    if (!data || data.source !== 9 || !Number.isInteger(data.id)) return null;
    const commands = Array.isArray(data.commands) ? data.commands : [];
    const whole = commands.length === 2 && commands[0] && commands[0].property === "clearRect"
      && commands[1] && commands[1].property === "drawImage";
    return whole ? data.id : null;
  }

  function checkoutDue(timestamp) {
    if (!lastCheckoutTs || !stopRrweb) return false;
    let interval = checkoutEveryMs;
    if (maxEventBytesPerS > 0 && checkoutShare > 0) {
      interval = Math.max(interval, (snapshotChars / (maxEventBytesPerS * checkoutShare)) * 1000);
    }
    return timestamp - lastCheckoutTs > interval;
  }

  // rrweb borrows a pristine MutationObserver from a fresh iframe when the page's
  // is not native, but one the page deleted or made throw still stops it. So
  // rrweb starts with the native one in place, and the page gets its own back
  // right after.
  let pagesObserver;
  function nativeObserverIn() {
    pagesObserver = window.MutationObserver;
    if (pagesObserver === NativeMutationObserver) return;
    try {
      window.MutationObserver = NativeMutationObserver;
    } catch (error) {
      // A non-writable one: rrweb's own fallback is all there is.
    }
  }
  function nativeObserverOut() {
    if (window.MutationObserver === pagesObserver) return;
    try {
      window.MutationObserver = pagesObserver;
    } catch (error) {
      // Left native: the page made it impossible to put its own back.
    }
  }

  // Canvases (2D and WebGL) are recorded as pictures, `canvasFps` a second, and only
  // when one changed (rrweb's fps sampling: a worker encodes each picture as WebP and
  // drops one identical to the last). Replaying them needs no script in the replay
  // frame (frontend/src/viewer/canvas.js draws them from outside).
  const canvasFps = options.canvasFps ?? 0;
  // A WebGL canvas keeps its picture once it is shown only with `preserveDrawingBuffer`;
  // without it the picture reads back transparent. rrweb asks for it when it starts (at
  // `load`): too late for a page that made its context before, so it is asked for here,
  // before any page script runs.
  if (canvasFps > 0) {
    const getContext = HTMLCanvasElement.prototype.getContext;
    HTMLCanvasElement.prototype.getContext = function rrstreamGetContext(type, attributes, ...rest) {
      if (type === "webgl" || type === "webgl2" || type === "experimental-webgl") {
        const asked = attributes && typeof attributes === "object" ? attributes : {};
        return getContext.call(this, type, { ...asked, preserveDrawingBuffer: true }, ...rest);
      }
      return getContext.call(this, type, attributes, ...rest);
    };
  }
  const withCanvas = (sampling) => (canvasFps > 0 ? { ...sampling, canvas: canvasFps } : sampling);
  const samplingLevels = (options.samplingLevels || [options.sampling ?? { scroll: 100, media: 400, input: "last" }])
    .map(withCanvas);
  const rrwebOptions = {
    emit,
    sampling: samplingLevels[0],
    recordCanvas: canvasFps > 0,
    dataURLOptions: options.dataURLOptions ?? {},
    slimDOMOptions: options.slimDOMOptions ?? { script: true, comment: true, headFavicon: true },
    maskInputOptions: options.maskInputOptions ?? { password: true },
    maskAllInputs: Boolean(options.maskAllInputs),
    recordCrossOriginIframes: options.recordCrossOriginIframes ?? true,
    inlineStylesheet: true,
  };
  if (options.maskTextSelector) rrwebOptions.maskTextSelector = options.maskTextSelector;
  if (options.blockSelector) rrwebOptions.blockSelector = options.blockSelector;

  function badSelector() {
    for (const name of ["maskTextSelector", "blockSelector"]) {
      const selector = rrwebOptions[name];
      if (!selector) continue;
      try {
        document.createDocumentFragment().querySelector(selector);
      } catch (error) {
        return `the ${name} ${JSON.stringify(selector)} is not a selector this browser accepts; nothing is recorded`;
      }
    }
    return null;
  }

  // rrweb swallows (and logs) what goes wrong while record() runs, and throws what goes
  // wrong in its deferred start at `load`; either way this recorder's code is on the stack
  // (the session names the script with a sourceURL), so the failure can be told apart
  // from the page's own errors and reported.
  const scriptName = options.scriptName || "rrstream-recorder.js";
  addEventListener("error", (event) => {
    const stack = String((event.error && event.error.stack) || "");
    if (stack.includes(scriptName)) failure = String(event.error && event.error.message || event.message);
  }, true);

  function startRrweb() {
    const refused = badSelector();
    if (refused) {
      failure = refused;
      return;
    }
    nativeObserverIn();
    try {
      // While a person is in control from a viewer (pipeline/takeover.py), every keystroke
      // is recorded ("all": rrweb listens to `input`), so other viewers see the typing as
      // it happens; otherwise the configured sampling ("last": at each `change`).
      const sampling = window.__rrstreamKeystrokes ? { ...rrwebOptions.sampling, input: "all" } : rrwebOptions.sampling;
      stopRrweb = record({ ...rrwebOptions, sampling }) || null;
    } finally {
      nativeObserverOut();
    }
    if (!stopRrweb) failure = failure || "rrweb did not start";
  }

  // rrweb starts at `load` (record() on a loaded document snapshots at once, inside
  // startRrweb's native observer), so the page's first snapshot is there before anything
  // waiting for the load goes on (a workflow's next goto). A huge DOM starts in the task
  // after instead: its snapshot blocks the main thread (~8 s for 200,000 elements here),
  // and inside the load event it held the load back, and with it the session's first
  // navigation (left `starting`).
  const deferAbove = options.deferSnapshotAboveElements ?? 20000;
  function startAtLoad() {
    if (stopRrweb) return;
    if (document.getElementsByTagName("*").length > deferAbove) setTimeout(() => { if (!stopRrweb) startRrweb(); }, 0);
    else startRrweb();
  }
  if (document.readyState === "complete") startRrweb();
  else addEventListener("load", startAtLoad, { once: true });  // not capturing: a subresource's load is not the page's

  let level = 0;
  let resumeTimer = 0;
  function stopNow() {
    if (stopRrweb) {
      try {
        stopRrweb();
      } catch (error) {
        // Stopping a broken recorder may throw; the new one replaces it either way.
      }
    }
    stopRrweb = null;
  }
  const paused = () => resumeTimer !== 0 || probe !== null;

  // The end of a pause: rrweb runs, and what it emits is only measured, as the session
  // measures what it is sent (incremental events' JSON; checkouts not counted).
  function startProbe() {
    resumeTimer = 0;
    if (!(maxEventsPerS || maxEventBytesPerS) || probeMs <= 0) {
      resume();
      return;
    }
    probe = { events: 0, chars: 0, since: performance.now(), over: false };
    failure = null;
    startRrweb();
    if (!stopRrweb) {
      probe = null;  // rrweb did not start (`failure` says why): nothing is recorded
      return;
    }
    probeTimer = setTimeout(endProbe, probeMs);
  }
  function measure(event) {
    if (probe.over || event.type === 4 || event.type === 2) return;
    probe.events += 1;
    probe.chars += JSON.stringify(event).length;
    // Over a whole probe's allowance already: over, whatever comes next.
    if ((maxEventBytesPerS && probe.chars > (maxEventBytesPerS * probeMs) / 1000)
        || (maxEventsPerS && probe.events > (maxEventsPerS * probeMs) / 1000)) {
      probe.over = true;
      setTimeout(endProbe, 0);  // not inside rrweb's own callback
    }
  }
  function endProbe() {
    if (!probe) return;
    clearTimeout(probeTimer);
    probeTimer = 0;
    const measured = probe;
    probe = null;
    stopNow();
    const seconds = Math.max(performance.now() - measured.since, probeMs) / 1000;
    const perS = measured.events / seconds;
    const bytesPerS = measured.chars / seconds;
    if (!((maxEventsPerS && perS > maxEventsPerS) || (maxEventBytesPerS && bytesPerS > maxEventBytesPerS))) {
      resume();
      return;
    }
    // Still over: paused on, nothing of it sent. The session answers with the next pause
    // (its `pause` replaces this timer); without an answer, the same pause again.
    deliver(`!${Math.round(perS)}|${Math.round(bytesPerS)}|${Date.now()}`);
    resumeTimer = setTimeout(startProbe, Math.max(pauseMs - probeMs, probeMs));
  }
  function resume() {
    failure = null;
    startRrweb();  // a new checkout, sent
  }
  // A checkout asked for while paused (a reopened stream must start with one) is sent and
  // the pause goes on: nothing follows it until the pause ends with the next checkout.
  function picture() {
    const measuring = probe;
    probe = null;
    try {
      if (stopRrweb) {
        record.takeFullSnapshot(true);
      } else {
        startRrweb();
        stopNow();
      }
      return true;
    } catch (error) {
      return false;
    } finally {
      probe = measuring;
    }
  }

  window.__rrstreamRecorder = {
    checkout() {
      if (paused()) return picture();
      try {
        record.takeFullSnapshot(true);
        return true;
      } catch (error) {
        return false;  // rrweb is not recording: restart() it
      }
    },
    state() {
      return { started: stopRrweb !== null && probe === null, snapshots, failure, level, paused: paused() };
    },
    restart() {
      if (paused()) {
        failure = null;
        picture();  // the pause's end starts rrweb again
        return this.state();
      }
      stopNow();
      failure = null;
      startRrweb();
      return this.state();
    },
    degrade(newLevel) {
      level = Math.max(0, Math.min(samplingLevels.length - 1, newLevel | 0));
      rrwebOptions.sampling = samplingLevels[level];
      if (paused()) return this.state();  // the pause's end starts it with this sampling
      return this.restart();
    },
    // Records inputs at every keystroke (`on`) or as configured, from a new checkout.
    everyKeystroke(on) {
      window.__rrstreamKeystrokes = Boolean(on);
      if (!stopRrweb || paused()) return this.state();  // its next start reads the flag
      return this.restart();
    },
    pause(ms) {
      if (probe) {
        clearTimeout(probeTimer);
        probeTimer = 0;
        probe = null;
      }
      // What was recorded so far leaves first: the stretch left out starts after it.
      stopNow();
      flush();
      if (resumeTimer) clearTimeout(resumeTimer);
      pauseMs = ms;
      resumeTimer = setTimeout(startProbe, Math.max(ms - probeMs, 0));
      return this.state();
    },
  };

  // Lets workflows (and benchmarks) mark the stream: one rrweb Custom event per call.
  window.__rrstreamAddCustomEvent = (tag, payload) => record.addCustomEvent(tag, payload);

  // What a click hit, for search (pipeline/recording_index.py): a CSS selector of the
  // element and its text, as an `rrstream.click` custom event. Nothing of a blocked
  // part of the page, and no text of a masked one (rrweb's own classes included).
  const blocked = [options.blockSelector, ".rr-block"].filter(Boolean).join(",");
  const masked = [options.maskTextSelector, ".rr-mask"].filter(Boolean).join(",");
  function inside(element, selector) {
    try {
      return element.closest(selector) !== null;
    } catch (error) {
      return true;  // a selector the engine rejects: treat the element as covered by it
    }
  }
  function selectorOf(element) {
    const parts = [];
    for (let node = element; node && node.nodeType === 1 && parts.length < 4; node = node.parentElement) {
      if (node.id) {
        parts.unshift(`#${CSS.escape(node.id)}`);
        break;
      }
      let part = node.localName + [...node.classList].slice(0, 2).map((c) => `.${CSS.escape(c)}`).join("");
      const siblings = node.parentElement ? [...node.parentElement.children].filter((c) => c.localName === node.localName) : [];
      if (siblings.length > 1) part += `:nth-of-type(${siblings.indexOf(node) + 1})`;
      parts.unshift(part);
    }
    return parts.join(" > ");
  }
  addEventListener("click", (event) => {
    if (!stopRrweb || !(event.target instanceof Element)) return;
    const target = event.target.closest("a,button,input,select,textarea,label,summary,[role=button],[onclick]") || event.target;
    if (inside(target, blocked)) return;
    const field = target.localName === "input" || target.localName === "textarea" || target.localName === "select";
    const button = target.localName === "input" && ["button", "submit", "reset"].includes(target.type);
    let text = "";
    if (!inside(target, masked) && !(field && !button)) {
      text = String(button ? target.value : target.innerText || target.textContent || "").replace(/\s+/g, " ").trim().slice(0, 200);
    }
    try {
      record.addCustomEvent("rrstream.click", { selector: selectorOf(target), text });
    } catch (error) {
      // rrweb is between recordings (paused): the click is not indexed
    }
  }, true);

  function flushAll() {
    flush();
    if (pacing) {
      clearTimeout(pacing);
      pacing = 0;
    }
    deliver(undefined, true);
  }
  // Leaving the page: everything held goes when its navigation starts (beforeunload:
  // the document is still whole, so its binding call arrives), again at pagehide, and
  // what rrweb records after that (an input's value, recorded when it loses focus as the
  // document goes) at once. The session's own flush dispatches an untrusted pagehide,
  // which leaves the page as it is.
  addEventListener("beforeunload", flushAll);
  addEventListener("pagehide", (event) => {
    if (event.isTrusted) leaving = true;
    flushAll();
  });
  addEventListener("pageshow", () => { leaving = false; });  // back from the bfcache
  addEventListener("visibilitychange", flushAll);
})();
