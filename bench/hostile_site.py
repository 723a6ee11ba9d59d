"""Hostile pages on loopback: each tries to take its session, its node or its neighbours
down, and each must be bounded and reported (bench/hostile.py measures a canary beside
each; tests/integration/test_hostile_pages.py and test_session_guard.py check the bounds).

A mutation flood, a multi-megabyte DOM, an alert loop, a script that never yields, a
`window.open` storm, a page that rewrites its whole DOM every frame, and quiet pages for
a canary session beside them. Served from a thread of its own, so it answers while a
test's or a benchmark's loop is busy. It lives in bench/ because the benchmark needs it
and bench/ imports nothing from tests/.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bench.stack import free_port

_NO_STORE = {"Cache-Control": "no-store"}


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><title>{title}</title></head>"
            f"<body>{body}</body></html>")


# The canary's page: a counter that changes every 50 ms, so its stream has a steady pulse.
QUIET = _page("quiet", """<h1>quiet</h1><p id="tick">0</p>
<script>let n = 0; setInterval(() => { document.getElementById("tick").textContent = String(++n); },
50);</script>""")

# The benchmark's canary: every 25 ms a counter's text changes and a bench mark
# (bench/stress_watch.py BENCH_EVENT: {i, t: Date.now()}) is emitted beside it, so each
# mark's page -> viewer latency is measured the way bench.latency measures it.
CANARY = _page("canary", """<h1>canary</h1><p id="tick">0</p>
<script>let i = 0; setInterval(() => {
  document.getElementById("tick").textContent = String(i);
  if (window.__rrstreamAddCustomEvent) {
    window.__rrstreamAddCustomEvent("bench", { i: i++, t: Date.now() });
  }
}, 25);</script>""")

# Every animation frame: 2,000 nodes added and the 2,000 of the frame before removed.
MUTATION_FLOOD = _page("mutation flood", """<div id="box"></div><script>
const box = document.getElementById("box");
function frame() {
  box.replaceChildren();
  for (let i = 0; i < 2000; i++) {
    const span = document.createElement("span");
    span.textContent = "m" + i;
    box.appendChild(span);
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
</script>""")


def huge_dom(nodes: int, tick_ms: int = 0) -> str:
    """`nodes` elements built while the page parses (~30 bytes each in the DOM text);
    with `tick_ms`, a clock on it that changes that often (so rrweb's checkouts come)."""
    tick = (f'<p id="tick">0</p><script>let ticks = 0; setInterval(() => '
            f'{{ document.getElementById("tick").textContent = ++ticks; }}, {tick_ms});</script>'
            if tick_ms > 0 else "")
    return _page("huge dom", f"""{tick}<div id="root"></div><script>
const root = document.getElementById("root");
for (let i = 0; i < {nodes}; i++) {{
  const div = document.createElement("div");
  div.className = "row r" + (i % 97);
  div.textContent = "row " + i + " of a huge page";
  root.appendChild(div);
}}
</script><p id="end">end of the huge page</p>""")


# A dialog after another, for good, once loaded.
ALERT_LOOP = _page("alert loop", """<p id="text">alerts</p><script>
addEventListener("load", () => setTimeout(() => {
  for (;;) { alert("again"); confirm("sure?"); prompt("name?"); }
}, 200));
</script>""")

# Never yields again, once loaded.
INFINITE_LOOP = _page("infinite loop", """<p id="text">spinning</p><script>
addEventListener("load", () => setTimeout(() => { for (;;) {} }, 200));
</script>""")

# window.open as fast as it returns, for good; a _blank link clicked beside it.
OPEN_STORM = _page("open storm", """<p id="text">popups</p><a id="away" target="_blank"
href="/quiet">away</a><script>
addEventListener("load", () => setTimeout(() => {
  document.getElementById("away").click();
  for (;;) { window.open("/quiet", "_blank"); }
}, 200));
</script>""")

# The whole body replaced every frame (3,000 elements each time).
REWRITE_EVERY_FRAME = _page("rewrite", """<div id="root"></div><script>
let n = 0;
function frame() {
  n += 1;
  const rows = [];
  for (let i = 0; i < 3000; i++) rows.push(`<div class="r">frame ${n} row ${i}</div>`);
  document.body.innerHTML = `<div id="root">${rows.join("")}</div>`;
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
</script>""")

def rewrite_for(seconds: float) -> str:
    """The whole-DOM rewrite for `seconds`, then calm: one small change a second and a
    `<p id="calm">` once it stopped (the flood's end, for the pause's own measurement)."""
    return _page("rewrite, then calm", f"""<div id="root"></div><script>
let n = 0;
const until = performance.now() + {seconds * 1000:.0f};
function frame() {{
  n += 1;
  const rows = [];
  for (let i = 0; i < 3000; i++) rows.push(`<div class="r">frame ${{n}} row ${{i}}</div>`);
  document.body.innerHTML = `<div id="root">${{rows.join("")}}</div>`;
  if (performance.now() < until) requestAnimationFrame(frame);
  else {{
    document.body.innerHTML = '<p id="calm">calm</p><p id="tick">0</p>';
    let tick = 0;
    setInterval(() => {{ document.getElementById("tick").textContent = String(++tick); }}, 1000);
  }}
}}
requestAnimationFrame(frame);
</script>""")


# Private things for the privacy options: an input, a text to mask, an element to block.
PRIVATE = _page("private", """<input id="name"><p class="secret">card 4111 1111 1111 1111</p>
<div id="blocked"><p>blocked content 98765</p></div><p id="public">public text</p>""")

# Asks for permissions and writes what it got.
PERMISSIONS = _page("permissions", """<p id="result">asking</p><script>
(async () => {
  const states = [];
  for (const name of ["geolocation", "notifications", "camera", "microphone", "clipboard-read"]) {
    try { states.push(name + ":" + (await navigator.permissions.query({ name })).state); }
    catch (error) { states.push(name + ":unknown"); }
  }
  states.push("request:" + await Notification.requestPermission());
  states.push("position:" + await new Promise((ok) => navigator.geolocation.getCurrentPosition(
    () => ok("granted"), (error) => ok("refused " + error.code))));
  document.getElementById("result").textContent = states.join(" ");
})();
</script>""")

# Native dialogs and windows taken from a fresh frame, where the guard's init script has
# not replaced them: Playwright's handlers must catch these.
NATIVE_DISTURBANCES = _page("native", """<p id="text">native</p><script>
addEventListener("load", () => setTimeout(() => {
  const frame = document.body.appendChild(document.createElement("iframe"));
  frame.contentWindow.alert("native alert");
  frame.contentWindow.open("/quiet", "_blank");
  document.getElementById("text").textContent = "native done";
}, 200));
</script>""")

# Many small mutations per task, a task after another: far over 50,000 events/s.
EVENT_FLOOD = _page("event flood", """<p id="n">0</p><script>
const n = document.getElementById("n");
let i = 0;
const channel = new MessageChannel();
channel.port1.onmessage = () => {
  n.textContent = String(++i);
  channel.port2.postMessage(0);
};
addEventListener("load", () => setTimeout(() => {
  for (let k = 0; k < 64; k++) channel.port2.postMessage(0);
}, 200));
</script>""")

PAGES = {
    "/private": PRIVATE,
    "/permissions": PERMISSIONS,
    "/native-disturbances": NATIVE_DISTURBANCES,
    "/event-flood": EVENT_FLOOD,
    "/quiet": QUIET,
    "/canary": CANARY,
    "/mutation-flood": MUTATION_FLOOD,
    "/alert-loop": ALERT_LOOP,
    "/infinite-loop": INFINITE_LOOP,
    "/open-storm": OPEN_STORM,
    "/rewrite-every-frame": REWRITE_EVERY_FRAME,
}


@dataclass(frozen=True)
class HostileSite:
    url: str  # http://127.0.0.1:<port>, no trailing slash

    def page(self, path: str) -> str:
        return f"{self.url}{path}"


def _app() -> Starlette:
    def fixed(html: str):  # noqa: ANN202 - a route handler
        async def handler(request: Request) -> Response:
            return HTMLResponse(html, headers=_NO_STORE)
        return handler

    async def huge(request: Request) -> Response:
        nodes = min(int(request.query_params.get("nodes", "200000")), 500_000)
        tick_ms = max(0, int(request.query_params.get("tick_ms", "0")))
        return HTMLResponse(huge_dom(nodes, tick_ms), headers=_NO_STORE)

    async def rewrite(request: Request) -> Response:
        seconds = min(float(request.query_params.get("s", "3")), 120.0)
        return HTMLResponse(rewrite_for(seconds), headers=_NO_STORE)

    routes = [Route(path, fixed(html)) for path, html in PAGES.items()]
    return Starlette(routes=[*routes, Route("/huge-dom", huge),
                             Route("/rewrite-for", rewrite)])


@contextlib.contextmanager
def serve_hostile_site() -> Iterator[HostileSite]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),),
                              name="hostile-site", daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        else:
            raise RuntimeError(f"the hostile site did not start on 127.0.0.1:{port}")
        yield HostileSite(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()
