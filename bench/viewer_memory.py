"""Does a viewer page hold steady over a long live session? Samples its memory every 10 s.

    .venv/bin/python -m bench.viewer_memory [--minutes 30] [--quick] [--out FILE]

Starts the real stack on loopback (embedded Ray, the Serve gateway on a free port,
which it first checks reaches this stack and not another one on the machine), records
a busy page of its own (served on loopback by this script: a bounded list whose rows
change text, attributes and membership 20 times a second, so the recorded page does
not grow while the stream never rests), and opens the session's viewer in
headless Chromium. Every `--interval` seconds it forces a garbage collection in the
viewer page and reads, over CDP, the JS heap (`JSHeapUsedSize`), the DOM node and
document counts, the RSS and USS of the viewer's renderer process (psutil on the
pids CDP's `SystemInfo.getProcessInfo` names), and the viewer's own counters
(`window.rrstreamViewer`). It prints one line per sample, then a summary: start /
median / end / max and the slope (MB per 10 minutes, least squares over the second
half), and writes everything as JSON (`--out`, default bench/results/viewer_memory.json).

A checkout every 5 s (the default `checkout_every_ms`) makes a new segment, so a
30-minute run also swaps the viewer's Replayer some 360 times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

from bench.stack import until_routed_to_us
from pipeline.config import Settings
from pipeline.ports import free_port
from serve.client import Client, ClientError

_MB = 1024 * 1024
_CALL_TIMEOUT_S = 30.0
_DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "viewer_memory.json"

# Busy but bounded: ROWS rows whose text, attributes and membership keep changing.
_BUSY_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>viewer memory bench</title>
  <link rel="icon" href="data:,">
  <style>
    body { font: 14px system-ui, sans-serif; margin: 24px; }
    #rows { columns: 3; list-style: none; padding: 0; }
    .row { padding: 2px 6px; border-left: 4px solid #ccc; }
    .row[data-state="hot"] { border-color: #e4572e; background: #fff3ef; }
    .c0 { color: #17324d; } .c1 { color: #2d6a4f; } .c2 { color: #6a4c93; }
    .c3 { color: #9c6644; } .c4 { color: #1d3557; }
    #bar { height: 8px; background: #4a90d9; transition: none; }
  </style>
</head>
<body>
  <h1>Busy page · tick <span id="tick">0</span></h1>
  <div id="bar"></div>
  <ul id="rows"></ul>
  <script>
    (() => {
      const ROWS = 90;
      const HZ = Number(new URLSearchParams(location.search).get("hz") || 20);
      const rows = document.getElementById("rows");
      const tick = document.getElementById("tick");
      const bar = document.getElementById("bar");
      let seed = 12345;
      const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
      const WORDS = ["alpha", "beta", "gamma", "delta", "ray", "serve", "rrweb", "stream",
                     "viewer", "checkout", "Grüße", "日本語", "café"];
      const words = (k) => Array.from({ length: k }, () => WORDS[rnd(WORDS.length)]).join(" ");
      let next = 0;
      function row() {
        const li = document.createElement("li");
        li.className = `row c${next % 5}`;
        li.textContent = `Row ${next++} · ${words(4)}`;
        return li;
      }
      for (let i = 0; i < ROWS; i++) rows.append(row());
      let n = 0;
      setInterval(() => {
        n += 1;
        tick.textContent = String(n);
        rows.children[rnd(ROWS)].textContent = `Row ${next++} · ${words(4)}`;
        bar.style.width = `${(n * 7) % 100}%`;
        if (n % 3 === 0) {
          rows.firstElementChild.remove();
          rows.append(row());
        }
        if (n % 5 === 0) {
          const el = rows.children[rnd(ROWS)];
          el.dataset.state = el.dataset.state === "hot" ? "" : "hot";
        }
      }, 1000 / HZ);
    })();
  </script>
</body>
</html>
"""

_HOOK = """() => {
  const v = window.rrstreamViewer;
  return v ? {connection: v.connection, events: v.eventsApplied, segments: v.segmentsStarted,
              frames: v.framesReceived, resets: v.resets, last_seq: v.lastSeq} : null;
}"""


@dataclass(slots=True)
class Sample:
    t_s: float
    heap_used_mb: float
    heap_total_mb: float
    dom_nodes: int
    documents: int
    listeners: int
    renderer_rss_mb: float | None
    renderer_uss_mb: float | None
    renderers: int
    events_applied: int
    segments_started: int
    frames_received: int
    resets: int
    connection: str
    session_events: int | None


@contextlib.contextmanager
def _busy_page_server() -> Iterator[str]:
    """Serves the busy page on a loopback port; yields its URL."""
    body = _BUSY_PAGE.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] not in ("/", "/busy.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="busy-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/busy.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _slope_per_10min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope over the second half of the run, in units per 10 minutes."""
    if not points:
        return None
    half = points[-1][0] / 2
    tail = [(t, v) for t, v in points if t >= half]
    if len(tail) < 3:
        return None
    mean_t = statistics.fmean(t for t, _ in tail)
    mean_v = statistics.fmean(v for _, v in tail)
    var = sum((t - mean_t) ** 2 for t, _ in tail)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in tail)
    return cov / var * 600


def _summary(samples: list[Sample], field: str) -> dict[str, float | None]:
    points = [(s.t_s, getattr(s, field)) for s in samples if getattr(s, field) is not None]
    if not points:
        return {"start": None, "median": None, "end": None, "max": None, "slope_per_10min": None}
    values = [v for _, v in points]
    slope = _slope_per_10min(points)
    return {"start": round(values[0], 2), "median": round(statistics.median(values), 2),
            "end": round(values[-1], 2), "max": round(max(values), 2),
            "slope_per_10min": None if slope is None else round(slope, 3)}


async def _viewer_renderer(browser_cdp: Any) -> tuple[float | None, float | None, int]:
    """RSS and USS (MB) of the viewer's renderer process, and how many renderers there are.

    CDP names the renderer processes but not which page each one hosts; besides the
    viewer page's there are only idle ones (a spare, about:blank), so the viewer's is
    the one with the most memory of its own (USS: RSS without the shared libraries).
    """
    try:
        info = await asyncio.wait_for(browser_cdp.send("SystemInfo.getProcessInfo"),
                                      _CALL_TIMEOUT_S)
    except Exception:  # not every build answers; the heap is the main figure
        return None, None, 0
    best: tuple[int, int] | None = None  # (uss, rss)
    count = 0
    for proc in info.get("processInfo", []):
        if proc.get("type") != "renderer":
            continue
        with contextlib.suppress(psutil.Error):
            full = psutil.Process(int(proc["id"])).memory_full_info()
            count += 1
            if best is None or full.uss > best[0]:
                best = (full.uss, full.rss)
    if best is None:
        return None, None, count
    return best[1] / _MB, best[0] / _MB, count


async def _take_sample(t_s: float, page: Any, cdp: Any, browser_cdp: Any,
                       api: Client, session_id: str) -> Sample:
    await asyncio.wait_for(cdp.send("HeapProfiler.collectGarbage"), _CALL_TIMEOUT_S)
    raw = await asyncio.wait_for(cdp.send("Performance.getMetrics"), _CALL_TIMEOUT_S)
    metrics = {m["name"]: m["value"] for m in raw["metrics"]}
    hook = await asyncio.wait_for(page.evaluate(_HOOK), _CALL_TIMEOUT_S) or {}
    rss, uss, renderers = await _viewer_renderer(browser_cdp)
    session_events = None
    with contextlib.suppress(ClientError):
        session_events = (await api.session(session_id)).get("events")
    return Sample(
        t_s=round(t_s, 1),
        heap_used_mb=round(metrics.get("JSHeapUsedSize", 0) / _MB, 3),
        heap_total_mb=round(metrics.get("JSHeapTotalSize", 0) / _MB, 3),
        dom_nodes=int(metrics.get("Nodes", 0)),
        documents=int(metrics.get("Documents", 0)),
        listeners=int(metrics.get("JSEventListeners", 0)),
        renderer_rss_mb=None if rss is None else round(rss, 1),
        renderer_uss_mb=None if uss is None else round(uss, 1),
        renderers=renderers,
        events_applied=int(hook.get("events", 0)),
        segments_started=int(hook.get("segments", 0)),
        frames_received=int(hook.get("frames", 0)),
        resets=int(hook.get("resets", 0)),
        connection=str(hook.get("connection", "?")),
        session_events=session_events,
    )


def _print_row(s: Sample) -> None:
    rss = "-" if s.renderer_rss_mb is None else f"{s.renderer_rss_mb:.1f}"
    uss = "-" if s.renderer_uss_mb is None else f"{s.renderer_uss_mb:.1f}"
    print(f"{s.t_s:7.0f} {s.heap_used_mb:9.2f} {s.dom_nodes:7d} {s.documents:5d} {rss:>8} "
          f"{uss:>8} "
          f"{s.events_applied:9d} {s.segments_started:5d} {s.resets:4d} {s.connection}",
          flush=True)


async def _wait_until(predicate_js: str, page: Any, timeout_s: float) -> None:
    await page.wait_for_function(predicate_js, timeout=timeout_s * 1000, polling=500)


async def _measure(settings: Settings, page_url: str, duration_s: float,
                   interval_s: float) -> dict[str, Any]:
    import ray
    from playwright.async_api import async_playwright

    from pipeline.actors import REGISTRY_NAME
    from pipeline.browser import launch_chromium

    base = f"http://127.0.0.1:{settings.port}"
    build = _viewer_build(settings)  # before the page loads it: a rebuild later changes nothing
    samples: list[Sample] = []
    errors: list[str] = []
    async with Client(base, timeout=60) as api:
        registry = ray.get_actor(REGISTRY_NAME, namespace=settings.namespace)
        await until_routed_to_us(api, registry, page_url)
        spec = {"url": page_url, "name": "viewer memory bench",
                "max_duration_s": int(duration_s) + 600}
        info = await api.create_session(**spec)
        session_id = info["id"]
        print(f"session {session_id}: recording {page_url}", flush=True)
        try:
            try:
                await registry.get.remote(session_id)
            except Exception as exc:
                raise RuntimeError(f"session {session_id} was created in another stack") from exc
            deadline = time.monotonic() + 120
            while (current := await api.session(session_id))["events"] == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the recorded page sent no events within 120 s: session "
                                       f"{current['state']}, error {current['error']!r}")
                await asyncio.sleep(0.5)
            async with async_playwright() as playwright:
                browser = await launch_chromium(playwright, Settings())
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 900})
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    cdp = await page.context.new_cdp_session(page)
                    await cdp.send("Performance.enable")
                    browser_cdp = await browser.new_browser_cdp_session()
                    await page.goto(info["viewer_url"])
                    print(f"viewer {info['viewer_url']}", flush=True)
                    await _wait_until("window.rrstreamViewer?.segmentsStarted > 0", page, 60)
                    print(f"\n{'t_s':>7} {'heap_MB':>9} {'nodes':>7} {'docs':>5} {'rss_MB':>8} "
                          f"{'uss_MB':>8} {'events':>9} {'segs':>5} {'rst':>4} conn", flush=True)
                    start = time.monotonic()
                    n = failed = 0
                    while True:
                        try:
                            sample = await _take_sample(time.monotonic() - start, page, cdp,
                                                        browser_cdp, api, session_id)
                        except Exception as exc:  # a slow moment on a shared machine
                            failed += 1
                            print(f"sample {n} failed: {exc!r}", file=sys.stderr, flush=True)
                            if failed >= 5:
                                raise
                        else:
                            failed = 0
                            samples.append(sample)
                            _print_row(sample)
                        n += 1
                        if n * interval_s > duration_s + interval_s / 2:
                            break
                        await asyncio.sleep(max(0.0, start + n * interval_s - time.monotonic()))
                finally:
                    await browser.close()
        finally:
            with contextlib.suppress(ClientError):
                await api.stop_session(session_id)
    return {"session_id": session_id, "samples": samples, "page_errors": errors,
            "viewer_build": build}


def _report(result: dict[str, Any], args: argparse.Namespace, settings: Settings,
            duration_s: float) -> dict[str, Any]:
    samples: list[Sample] = result["samples"]
    first, last = samples[0], samples[-1]
    span = max(last.t_s - first.t_s, 1e-9)
    summary = {
        "heap_used_mb": _summary(samples, "heap_used_mb"),
        "heap_total_mb": _summary(samples, "heap_total_mb"),
        "dom_nodes": _summary(samples, "dom_nodes"),
        "documents": _summary(samples, "documents"),
        "renderer_rss_mb": _summary(samples, "renderer_rss_mb"),
        "renderer_uss_mb": _summary(samples, "renderer_uss_mb"),
        "events_applied": last.events_applied,
        "events_per_s": round((last.events_applied - first.events_applied) / span, 1),
        "segments_started": last.segments_started,
        "resets": last.resets,
        "final_connection": last.connection,
        "page_errors": result["page_errors"][:20],
    }
    print("\nsummary (slope: least squares over the second half, per 10 minutes)")
    print(f"{'metric':<18} {'start':>9} {'median':>9} {'end':>9} {'max':>9} {'slope/10min':>12}")
    for key in ("heap_used_mb", "heap_total_mb", "dom_nodes", "documents", "renderer_rss_mb",
                "renderer_uss_mb"):
        row = summary[key]
        cells = ["-" if row[c] is None else f"{row[c]:.2f}"
                 for c in ("start", "median", "end", "max", "slope_per_10min")]
        print(f"{key:<18} " + " ".join(f"{c:>9}" for c in cells[:4]) + f" {cells[4]:>12}")
    print(f"events applied {summary['events_applied']} ({summary['events_per_s']}/s), "
          f"segments {summary['segments_started']}, resets {summary['resets']}, "
          f"connection {summary['final_connection']}, page errors {len(result['page_errors'])}")
    return {
        "benchmark": "viewer_memory",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"duration_s": duration_s, "interval_s": args.interval,
                   "codec": settings.codec, "checkout_every_ms": settings.checkout_every_ms,
                   "page_hz": 20, "ingress": settings.ingress},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "memory_mb": psutil.virtual_memory().total // _MB},
        "viewer_js_sha256": result["viewer_build"],
        "session_id": result["session_id"],
        "summary": summary,
        "samples": [asdict(s) for s in samples],
    }


def _viewer_build(settings: Settings) -> str | None:
    """Which viewer bundle was measured (the gateway serves it from the built assets)."""
    from pipeline.recorder import assets_dir

    bundle = assets_dir(settings) / "viewer.js"
    return hashlib.sha256(bundle.read_bytes()).hexdigest()[:16] if bundle.exists() else None


def _leftover_chromium() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in proc.name().lower() and proc.is_running():
                found.append(proc)
    return found


def _raise_interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; let cleanup finish
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.viewer_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="measurement length")
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--codec", choices=["lz4-frame", "deflate-raw"], default=None,
                        help="stream codec (default: RRSTREAM_CODEC or lz4-frame)")
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT)
    args = parser.parse_args(argv)
    duration_s = (2.0 if args.quick else args.minutes) * 60

    from serve.app import deploy_gateway, shutdown, start_ray

    extra = {"codec": args.codec} if args.codec else {}
    settings = Settings(port=free_port(), browser_slots=2, dashboard_port=free_port(), **extra)
    if not settings.ray_address:
        # Embedded: otherwise ray.init() joins whatever cluster `ray start` last left
        # in /tmp/ray/ray_current_cluster on this shared machine.
        os.environ["RAY_ADDRESS"] = "local"
    signal.signal(signal.SIGTERM, _raise_interrupt)
    report = None
    try:
        with _busy_page_server() as page_url:
            print(f"starting Ray and the gateway on 127.0.0.1:{settings.port} "
                  f"(codec {settings.codec})", flush=True)
            start_ray(settings, dashboard=False, log_to_driver=False)
            try:
                deploy_gateway(settings)
                result = asyncio.run(_measure(settings, page_url, duration_s, args.interval))
                report = _report(result, args, settings, duration_s)
            finally:
                shutdown(settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
    finally:
        leftovers = _leftover_chromium()
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if leftovers:
            print(f"killed {len(leftovers)} leftover Chromium processes", file=sys.stderr)
    if report is None:
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
