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
// RRSTREAM_MAX_EVENTS_PER_S: coarser sampling from a new checkout), and `pause(ms)`
// stops it for `ms` and then starts it again: a stretch left out whole, after which the
// new FullSnapshot keeps the replay consistent (pipeline/event_rate.py decides).
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
  // Taken before any page script runs, so a page that replaces or deletes it
  // cannot keep rrweb from observing the DOM (see startRrweb).
  const NativeMutationObserver = window.MutationObserver;

  let parts = [];
  let chars = 0;
  let checkout = false;
  let firstTs = 0;
  let lastTs = 0;
  let timer = 0;
  let lastFlushAt = 0;
  let retry = 0;
  let snapshots = 0;
  let failure = null;
  let stopRrweb = null;
  const undelivered = [];

  function deliver(message) {
    if (message !== undefined) undelivered.push(message);
    const send = window[bindingName];
    if (typeof send !== "function") {
      // The binding is installed per execution context; keep batches in order
      // until it shows up rather than dropping them (a lost mutation breaks replay).
      if (!retry) retry = setTimeout(() => { retry = 0; deliver(); }, 10);
      return;
    }
    while (undelivered.length) send(undelivered.shift());
  }

  function flush() {
    if (timer) {
      clearTimeout(timer);
      timer = 0;
    }
    if (!parts.length) return;
    // Header fields before the JSON so the receiver never parses events.
    const message = `${checkout ? 1 : 0}|${parts.length}|${firstTs}|${lastTs}|[${parts.join(",")}]`;
    parts = [];
    chars = 0;
    checkout = false;
    lastFlushAt = performance.now();
    deliver(message);
  }

  function emit(event) {
    // A checkout (Meta, then FullSnapshot) always starts a batch of its own.
    if (event.type === 4) {
      flush();
      checkout = true;
    } else if (event.type === 2) {
      snapshots += 1;
    }
    const text = JSON.stringify(event);
    if (!parts.length) firstTs = event.timestamp;
    lastTs = event.timestamp;
    parts.push(text);
    chars += text.length;
    if (chars >= maxBatchChars) {
      flush();
    } else if (!timer) {
      // Idle page: send on the next task. Busy page: gather for flushMs.
      const idle = performance.now() - lastFlushAt >= flushMs;
      timer = setTimeout(flush, idle ? 0 : flushMs);
    }
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

  const samplingLevels = options.samplingLevels || [options.sampling ?? { scroll: 100, media: 400, input: "last" }];
  const rrwebOptions = {
    emit,
    checkoutEveryNms: options.checkoutEveryNms ?? 5000,
    sampling: samplingLevels[0],
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
      stopRrweb = record(rrwebOptions) || null;
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

  window.__rrstreamRecorder = {
    checkout() {
      try {
        record.takeFullSnapshot(true);
        return true;
      } catch (error) {
        return false;  // rrweb is not recording: restart() it
      }
    },
    state() {
      return { started: stopRrweb !== null, snapshots, failure, level, paused: resumeTimer !== 0 };
    },
    restart() {
      stopNow();
      failure = null;
      startRrweb();
      return this.state();
    },
    degrade(newLevel) {
      level = Math.max(0, Math.min(samplingLevels.length - 1, newLevel | 0));
      rrwebOptions.sampling = samplingLevels[level];
      if (resumeTimer) return this.state();  // the resume starts it with this sampling
      return this.restart();
    },
    pause(ms) {
      // What was recorded so far leaves first: the stretch left out starts after it.
      stopNow();
      flush();
      if (resumeTimer) clearTimeout(resumeTimer);
      resumeTimer = setTimeout(() => {
        resumeTimer = 0;
        failure = null;
        startRrweb();
      }, ms);
      return this.state();
    },
  };

  // Lets workflows (and benchmarks) mark the stream: one rrweb Custom event per call.
  window.__rrstreamAddCustomEvent = (tag, payload) => record.addCustomEvent(tag, payload);

  addEventListener("pagehide", flush);
  addEventListener("visibilitychange", flush);
})();
