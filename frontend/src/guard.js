// In-page guard: a page's dialogs and popups cost the session nothing and are reported.
//
// `alert`, `confirm`, `prompt` and `print` return at once (as if dismissed) and
// `window.open` returns null, so an alert loop or a window.open storm never reaches
// Chromium's browser process or Playwright: each call is a counter increment here. Links
// and forms that would open a new window (target=_blank, an unknown frame name, a
// modified click) are cancelled the same way. What gets through anyway (a native
// function taken from a fresh frame, `form.submit()`) the session dismisses or closes
// in Playwright (pipeline/page_guard.py).
//
// Counts go to the session through the CDP binding named by `options.binding`, at most
// once per `options.reportMs`: the first at once, then what piled up. A binding call is
// a message sent straight from the renderer, so a report arrives even when the page
// then spins its main thread for good.
(function startGuard() {
  if (window.__rrstreamGuarded) return;
  window.__rrstreamGuarded = true;

  const options = window.__RRSTREAM_GUARD__ || {};
  const bindingName = options.binding || "__rrstreamNotice";
  const reportMs = options.reportMs ?? 500;
  const counts = { dialog: 0, popup: 0 };
  const last = { dialog: null, popup: null };
  let lastReportAt = -Infinity;
  let timer = 0;

  function send() {
    const binding = window[bindingName];
    if (typeof binding !== "function") {
      later();
      return;
    }
    lastReportAt = performance.now();
    const message = JSON.stringify({ url: location.href, counts, last });
    counts.dialog = 0;
    counts.popup = 0;
    binding(message);
  }

  function later() {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      if (counts.dialog || counts.popup) send();
    }, reportMs);
  }

  function report(kind, what) {
    counts[kind] += 1;
    last[kind] = what;
    if (performance.now() - lastReportAt >= reportMs) send();
    else later();
  }

  const quote = (value) => JSON.stringify(String(value ?? "").slice(0, 120));

  function replace(name, fn) {
    try {
      Object.defineProperty(window, name, { value: fn, writable: true, configurable: true });
    } catch (error) {
      // A frame that forbids it: Playwright's dialog and popup handlers still catch them.
    }
  }
  replace("alert", function alert(message) { report("dialog", `alert(${quote(message)})`); });
  replace("confirm", function confirm(message) {
    report("dialog", `confirm(${quote(message)})`);
    return false;
  });
  replace("prompt", function prompt(message) {
    report("dialog", `prompt(${quote(message)})`);
    return null;
  });
  replace("print", function print() { report("dialog", "print()"); });
  replace("open", function open(url) {
    report("popup", `window.open(${quote(url)})`);
    return null;
  });

  const SAME_WINDOW = new Set(["", "_self", "_parent", "_top"]);
  function frameNamed(name) {
    try {
      return Boolean(window.top.frames[name]);
    } catch (error) {
      return false;
    }
  }
  function opensWindow(target) {
    const name = String(target || "").trim().toLowerCase();
    return !SAME_WINDOW.has(name) && !frameNamed(name);
  }
  function baseTarget() {
    const base = document.querySelector("base[target]");
    return base ? base.target : "";
  }

  function onClick(event) {
    const start = event.composedPath ? event.composedPath()[0] : event.target;
    const link = start && start.closest ? start.closest("a[href], area[href]") : null;
    if (!link) return;
    const modified = event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1;
    const target = link.getAttribute("target") ?? baseTarget();
    if (!modified && !opensWindow(target)) return;
    event.preventDefault();
    report("popup", `a link to ${quote(link.href)}${modified ? " (modified click)" : ` (target ${quote(target)})`}`);
  }
  addEventListener("click", onClick, true);
  addEventListener("auxclick", onClick, true);

  addEventListener("submit", (event) => {
    const form = event.target;
    const submitter = event.submitter;
    const target = (submitter && submitter.getAttribute("formtarget")) ?? form.getAttribute("target") ?? baseTarget();
    if (!opensWindow(target)) return;
    event.preventDefault();
    report("popup", `a form to ${quote(form.action)} (target ${quote(target)})`);
  }, true);
})();
