// In-page recorder: rrweb.record plus a batcher that hands events to the
// session actor one binding call per batch (see docs/protocol.md).
//
// The session actor prepends `window.__RRSTREAM_OPTIONS__ = {...};` and
// registers the CDP binding named by `options.binding` before any page script.
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

  let parts = [];
  let chars = 0;
  let checkout = false;
  let firstTs = 0;
  let lastTs = 0;
  let timer = 0;
  let lastFlushAt = 0;
  let retry = 0;
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

  // Lets workflows (and benchmarks) mark the stream: one rrweb Custom event per call.
  window.__rrstreamAddCustomEvent = (tag, payload) => record.addCustomEvent(tag, payload);

  record({
    emit,
    checkoutEveryNms: options.checkoutEveryNms ?? 5000,
    sampling: options.sampling ?? { scroll: 100, media: 400, input: "last" },
    slimDOMOptions: options.slimDOMOptions ?? { script: true, comment: true, headFavicon: true },
    maskInputOptions: options.maskInputOptions ?? { password: true },
    recordCrossOriginIframes: options.recordCrossOriginIframes ?? true,
    inlineStylesheet: true,
  });
  addEventListener("pagehide", flush);
  addEventListener("visibilitychange", flush);
})();
