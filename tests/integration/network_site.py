"""A site on two loopback addresses for the network policy's tests, and the rules that
name them: `public.test` is 127.0.0.9 (the tests allow it, standing in for a public
host; `other.test` is another site on it, for cross-site frames), `inside.test` is
127.0.0.10 (refused: a loopback address). Every other name resolves to nothing, so no
test asks the system's DNS, and nothing leaves loopback.

Each request is logged with the address that served it: a test proves that nothing
reached the inside address by finding no request served there.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from tests.integration.threaded_server import serving

PUBLIC_IP, INSIDE_IP = "127.0.0.9", "127.0.0.10"
# 127.0.0.1 and localhost (the demo site's origins) are never looked up: an address is
# itself, and Chromium answers localhost on its own.
RULES = (f"MAP public.test {PUBLIC_IP}, MAP other.test {PUBLIC_IP}, "
         f"MAP inside.test {INSIDE_IP}, MAP * ~NOTFOUND, "
         "EXCLUDE 127.0.0.1, EXCLUDE localhost")
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class NetworkSite:
    port: int
    hits: list[tuple[str, str]] = field(default_factory=list)  # (served on, path)

    def public(self, path: str) -> str:
        return f"http://public.test:{self.port}{path}"

    def inside(self, path: str) -> str:
        return f"http://inside.test:{self.port}{path}"

    def inside_hits(self) -> list[str]:
        return [path for address, path in self.hits if address == INSIDE_IP]


def _html(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><title>{title}</title></head>"
                        f"<body>{body}</body></html>", headers=_NO_STORE)


def _app(site: NetworkSite) -> ASGIApp:
    inside, public = site.inside, site.public

    def page(_: Request) -> Response:
        # Every kind of subresource aimed at the inside address; the page itself loads.
        return _html("public page", f"""<p id="marker">public page</p>
<img src="{inside('/img.png')}"><iframe src="{inside('/frame')}"></iframe>
<img src="{public('/to-inside?to=/redirected.png')}">
<iframe src="http://other.test:{site.port}/to-inside?to=/cross-site-frame"></iframe>
<p id="fetch">pending</p>
<script>
fetch("{inside('/data')}").then(r => r.text(), e => "refused: " + e.name)
  .then(t => {{ document.getElementById("fetch").textContent = t; }});
</script>""")

    def sockets(_: Request) -> Response:
        return _html("sockets", f"""<p id="public">pending</p><p id="inside">pending</p>
<script>
for (const [id, host] of [["public", "public.test"], ["inside", "inside.test"]]) {{
  const ws = new WebSocket(`ws://${{host}}:{site.port}/ws`);
  const show = (t) => {{ document.getElementById(id).textContent = t; }};
  ws.onmessage = (e) => show("message: " + e.data);
  ws.onclose = (e) => show("closed " + e.code);
}}
</script>""")

    def worker_sockets(_: Request) -> Response:
        # A dedicated worker's sockets: no page hook sees them, only the egress proxy.
        return _html("worker sockets", """<p id="public">pending</p><p id="inside">pending</p>
<script>
const worker = new Worker("/socket-worker.js");
worker.onmessage = (e) => { document.getElementById(e.data.id).textContent = e.data.text; };
</script>""")

    def socket_worker(_: Request) -> Response:
        return Response(f"""
for (const [id, host] of [["public", "public.test"], ["inside", "inside.test"]]) {{
  const ws = new WebSocket(`ws://${{host}}:{site.port}/ws`);
  ws.onmessage = (e) => postMessage({{id, text: "message: " + e.data}});
  ws.onclose = (e) => postMessage({{id, text: "closed " + e.code}});
}}""", media_type="text/javascript", headers=_NO_STORE)

    def webrtc(request: Request) -> Response:
        # A peer connection whose STUN server is the inside address: ICE gathering sends
        # it a binding request over UDP, which no HTTP proxy ever sees.
        stun = f"stun:{INSIDE_IP}:{int(request.query_params['port'])}"
        return _html("webrtc", f"""<p id="candidates">pending</p>
<script>
const pc = new RTCPeerConnection({{iceServers: [{{urls: "{stun}"}}]}});
pc.createDataChannel("probe");
const found = [];
pc.onicecandidate = (e) => {{
  if (e.candidate && e.candidate.candidate) found.push(e.candidate.type);
}};
const show = () => {{
  document.getElementById("candidates").textContent = "gathered: " + found.join(" ");
}};
pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === "complete") show(); }};
pc.createOffer().then((offer) => pc.setLocalDescription(offer));
setTimeout(show, 5000);
</script>""")

    def webrtc_turn(request: Request) -> Response:
        # A peer connection that may only relay through a TURN server over TCP: the one
        # WebRTC path a proxy can carry (its UDP is off with the block on).
        turn = (f"turn:{request.query_params['host']}:{int(request.query_params['port'])}"
                "?transport=tcp")
        return _html("webrtc over turn", f"""<p id="candidates">pending</p>
<script>
const pc = new RTCPeerConnection({{iceServers: [{{urls: "{turn}", username: "u",
  credential: "p"}}], iceTransportPolicy: "relay"}});
pc.createDataChannel("probe");
const show = () => {{ document.getElementById("candidates").textContent = "gathered"; }};
pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === "complete") show(); }};
pc.createOffer().then((offer) => pc.setLocalDescription(offer));
setTimeout(show, 5000);
</script>""")

    def framed(_: Request) -> Response:
        # A cross-site frame (other.test in public.test) whose subresources redirect
        # inside: the page's own Fetch session does not see the frame's requests.
        return _html("framed", f"""<p id="marker">framed</p>
<iframe src="http://other.test:{site.port}/redirecting-frame"></iframe>""")

    def redirecting_frame(_: Request) -> Response:
        to = f"http://other.test:{site.port}/to-inside?to="
        return _html("redirecting frame", f"""<p id="frame">frame</p>
<img src="{to}/frame-redirect.png"><p id="fetch">pending</p>
<script>
fetch("{to}/frame-fetch").then(r => r.status + " " + r.statusText, e => "refused: " + e.name)
  .then(t => {{ document.getElementById("fetch").textContent = t; }});
</script>""")

    def to_inside(request: Request) -> Response:
        return RedirectResponse(inside(request.query_params.get("to", "/secret")), 302)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello from " + websocket.scope["server"][0])
        with contextlib.suppress(Exception):
            await websocket.receive_text()

    def anything(request: Request) -> Response:
        return PlainTextResponse(f"inside secret at {request.url.path}", headers=_NO_STORE)

    app = Starlette(routes=[
        Route("/page", page), Route("/sockets", sockets), Route("/to-inside", to_inside),
        Route("/worker-sockets", worker_sockets), Route("/socket-worker.js", socket_worker),
        Route("/webrtc", webrtc), Route("/webrtc-turn", webrtc_turn), Route("/framed", framed),
        Route("/redirecting-frame", redirecting_frame),
        Route("/plain", lambda _: _html("plain", '<p id="marker">plain</p>')),
        WebSocketRoute("/ws", echo), Route("/{path:path}", anything),
    ])

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            site.hits.append((scope["server"][0], scope["path"]))
        await app(scope, receive, send)

    return logged


@contextlib.contextmanager
def serve_network_site() -> Iterator[NetworkSite]:
    """Serves the site on PUBLIC_IP and INSIDE_IP, one port, from a thread of its own."""
    sockets = [socket.socket(), socket.socket()]
    try:
        sockets[0].bind((PUBLIC_IP, 0))
        port = sockets[0].getsockname()[1]
        sockets[1].bind((INSIDE_IP, port))
        site = NetworkSite(port)
        server = uvicorn.Server(uvicorn.Config(_app(site), log_level="warning",
                                               lifespan="off", ws="websockets-sansio"))
        with serving(server, "network-site", sockets):
            yield site
    finally:
        for sock in sockets:
            sock.close()
