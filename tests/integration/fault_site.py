"""A site of misbehaving pages on loopback, for the session's fault tests.

Pages that never yield, open dialogs, take long to snapshot, forbid scripts, break
MutationObserver, never finish loading, answer HTTP 500, are downloads; plus a server
that accepts connections and never answers. Served from a thread of its own, so it
answers while a test's loop is busy.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.conftest import free_port
from tests.integration.threaded_server import serving

_NO_STORE = {"Cache-Control": "no-store"}


def _page(title: str, body: str, head: str = "") -> str:
    return (f"<!doctype html><html><head><title>{title}</title>{head}</head>"
            f"<body>{body}</body></html>")


# A button whose click writes a marker and, 300 ms later (once the marker is recorded),
# spins the main thread for good.
_LOOP = _page("loop", """<p id="marker">waiting</p><button id="go">go</button>
<script>
document.getElementById("go").onclick = () => {
  document.getElementById("marker").textContent = "marker before the loop";
  setTimeout(() => { for (;;) {} }, 300);
};
</script>""")

# Modal dialogs, one after another, for good.
_DIALOGS = _page("dialogs", """<p id="marker">dialogs</p><button id="go">go</button>
<script>
addEventListener("beforeunload", (e) => { e.preventDefault(); e.returnValue = ""; });
document.getElementById("go").onclick = () => {
  document.getElementById("marker").textContent = "marker before the dialogs";
  setTimeout(() => { for (;;) { confirm("stay?"); alert("still here"); } }, 300);
};
</script>""")

# Two custom events of 1,200,000+ characters, one of them a character longer, so that the
# recorder's pieces end inside a surrogate pair in one of them wherever they start.
_BIG_EVENTS = _page("big-events", """<p id="marker">big events</p><script>
addEventListener("load", () => setTimeout(() => {
  for (const lead of ["", "a"]) {
    window.__rrstreamAddCustomEvent("big", { text: lead + "\\u{1F30A}".repeat(600000) + "end" });
  }
  document.getElementById("marker").textContent = "big events sent";
}, 100));
</script>""")

# Script cannot run here at all; the recorder (an init script) still must.
_CSP = _page("csp", """<p id="proof">no script ran</p><input id="name">
<script>document.getElementById("proof").textContent = "a page script ran";</script>""")
_CSP_HEADERS = {**_NO_STORE, "Content-Security-Policy": "script-src 'none'"}

_MO_BREAKERS = {
    # Before rrweb starts (it starts at `load`).
    "undefined": "window.MutationObserver = undefined;",
    "fake": "window.MutationObserver = class { observe() {} disconnect() {} takeRecords() "
            "{ return []; } };",
    "throw": "window.MutationObserver = function () { throw new Error('no observers here'); };",
    # While it starts: in DOMContentLoaded, and a getter that breaks it only from `load` on.
    "dcl": "addEventListener('DOMContentLoaded', () => { window.MutationObserver = undefined; });",
}


def _mutation_observer_page(how: str) -> str:
    return _page(f"mo-{how}", """<ul id="list"></ul><button id="add">add</button>
<script>
document.getElementById("add").onclick = () => {
  const li = document.createElement("li");
  li.textContent = "added after the start";
  document.getElementById("list").appendChild(li);
};
</script>""", head=f"<script>{_MO_BREAKERS[how]}</script>")


def _huge_page(nodes: int, tick: bool) -> str:
    # Built while parsing, so the first snapshot (at `load`) is of the whole of it. With
    # `tick` a change every 100 ms makes rrweb take its periodic checkouts (it takes one
    # at the first event after the interval), so the page is nearly always snapshotting.
    ticking = ("setInterval(() => { document.getElementById('end').textContent = "
               "'tick ' + Date.now(); }, 100);" if tick else "")
    return _page("huge", f"""<div id="root"></div>
<script>
const root = document.getElementById("root");
for (let i = 0; i < {nodes}; i++) {{
  const div = document.createElement("div");
  div.className = "row r" + (i % 97);
  div.setAttribute("data-i", String(i));
  div.textContent = "row " + i;
  root.appendChild(div);
}}
addEventListener("load", () => {{ {ticking} }});
</script><p id="end">end of the huge page</p>""")


@dataclass(frozen=True)
class FaultSite:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    silent_url: str  # accepts connections and never answers

    def page(self, path: str) -> str:
        return f"{self.url}{path}"


def _app(silent_url: str) -> Starlette:
    async def plain(request: Request) -> Response:
        """`name`: its title; `tick=<ms>`: its text changes that often."""
        name = request.query_params.get("name", "plain")
        tick = int(request.query_params.get("tick", "0"))
        ticking = (f"<script>let n = 0; setInterval(() => {{ document.getElementById('text')"
                   f".textContent = 'tick ' + n++; }}, {tick});</script>" if tick else "")
        return HTMLResponse(_page(name, f"""<h1 id="title">{name}</h1>
<p id="text">a plain page</p><button id="add" onclick="this.after('added')">add</button>
{ticking}"""), headers=_NO_STORE)

    async def loop(request: Request) -> Response:
        return HTMLResponse(_LOOP, headers=_NO_STORE)

    async def dialogs(request: Request) -> Response:
        return HTMLResponse(_DIALOGS, headers=_NO_STORE)

    async def csp(request: Request) -> Response:
        return HTMLResponse(_CSP, headers=_CSP_HEADERS)

    async def mutation_observer(request: Request) -> Response:
        return HTMLResponse(_mutation_observer_page(request.query_params["how"]),
                            headers=_NO_STORE)

    async def huge(request: Request) -> Response:
        return HTMLResponse(_huge_page(int(request.query_params.get("nodes", "150000")),
                                       "tick" in request.query_params), headers=_NO_STORE)

    async def no_load(request: Request) -> Response:
        # An image from a server that never answers: `load` never fires.
        return HTMLResponse(_page("no-load", f"""<p id="text">loading forever</p>
<img src="{silent_url}/never.png">"""), headers=_NO_STORE)

    async def error(request: Request) -> Response:
        return HTMLResponse(_page("broken", "<h1>the server broke</h1>"), status_code=500,
                            headers=_NO_STORE)

    async def big_events(request: Request) -> Response:
        return HTMLResponse(_BIG_EVENTS, headers=_NO_STORE)

    async def throws(request: Request) -> Response:
        """Throws an uncaught error a moment after it loads."""
        return HTMLResponse(_page("throws", """<h1 id="title">throws</h1><script>
setTimeout(() => { throw new Error("the page broke on purpose"); }, 300);</script>"""),
                            headers=_NO_STORE)

    async def download(request: Request) -> Response:
        return Response(b"x" * 10_000, media_type="application/octet-stream",
                        headers={"Content-Disposition": "attachment; filename=data.bin"})

    async def download_link(request: Request) -> Response:
        return HTMLResponse(_page("download-link", '<a id="get" href="/download">get</a>'),
                            headers=_NO_STORE)

    return Starlette(routes=[
        Route("/plain", plain), Route("/loop", loop), Route("/dialogs", dialogs),
        Route("/csp", csp), Route("/mutation-observer", mutation_observer),
        Route("/huge", huge), Route("/no-load", no_load), Route("/error", error),
        Route("/download", download), Route("/download-link", download_link),
        Route("/big-events", big_events), Route("/throws", throws),
    ])


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """Accepts connections and holds them without a byte of answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, name="silent-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


@contextlib.contextmanager
def serve_fault_site() -> Iterator[FaultSite]:
    with _silent_server() as silent_url:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(_app(silent_url), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
        with serving(server, "fault-site"):
            yield FaultSite(f"http://127.0.0.1:{port}", silent_url)
