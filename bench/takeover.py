"""Takeover latency: from a controller sending an input message to it receiving the first
frame with the page's resulting DOM change.

    .venv/bin/python -m bench.takeover [--quick] [--trials 100] [--gap-ms 250] [--out FILE]

Starts the real stack (bench/stack.py), one session on an idle page of its own
(bench/takeover_page.html: a button whose click changes a text, a field), and one viewer
that holds a control link (protocol 1.1, docs/protocol.md "Taking control"): the Python
protocol client (serve/client), which takes control and then, `--trials` times each,
`--gap-ms` apart:

- click: sends `input` with a click on the button; the latency is until the first frame
  whose events hold the new text (`clicks N`, a mutation the page's own script made);
- key: sends a key's down and up in the field; until the first frame holding the field's
  new value (an rrweb input event, recorded at every keystroke while a person is in
  control).

Each hop is the production one: the gateway's socket, one Ray call to the session actor,
Playwright's CDP `Input.dispatch*Event`, the page, rrweb and the in-page batcher, the
session's push to the streamer, the gateway's read, the socket back. The client's own
garbage collector is off while it measures (../shared/DESIGN.md). Targets: p50 <= 100 ms,
p99 <= 250 ms. The run holds the machine-wide benchmark lock; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.lock import bench_lock
from bench.procs import machine_info
from bench.stack import RunningStack, bench_settings, bench_stack, until_routed_to_us
from bench.tables import pct, publish, spread, table
from pipeline.protocol import KeyInput, MouseInput
from serve.client import Client, Frame, Viewer
from serve.client.connection import now_ms

FULL = {"trials": 100, "gap_ms": 250}
QUICK = {"trials": 20, "gap_ms": 200}
TARGET_P50_MS, TARGET_P99_MS = 100.0, 250.0
DEFAULT_OUT = Path(__file__).parent / "results" / "takeover.json"
BUTTON = (140.0, 60.0)  # the button's centre in the page's CSS pixels (takeover_page.html)
FIELD = (190.0, 132.0)
_KEYS = "abcdefghijklmnopqrstuvwxyz"


def _holds(text: str) -> Any:
    needle = text.encode()
    return lambda frame: frame.text is not None and needle in frame.text


async def _measure(viewer: Viewer, send: Any, marker: str) -> float:
    sent = now_ms()
    await send()
    frame: Frame = await viewer.wait_for(_holds(marker), timeout_s=10, since_ms=sent)
    assert frame.arrival_ms is not None
    return frame.arrival_ms - sent


async def run(running: RunningStack, plan: dict[str, Any]) -> dict[str, Any]:
    stack, site = running.stack, running.site
    async with Client(stack.base_url, timeout=90, api_key=running.api_key) as api:
        await until_routed_to_us(api, running.registry, f"{site.url}/simple.html")
        session = await api.create_session(f"{site.url}/takeover.html", max_duration_s=600)
        sid = session["id"]
        link = await api.viewer_link(sid, role="control", label="bench", ttl_s=600)
        clicks: list[float] = []
        keys: list[float] = []
        async with api.viewer(sid, token=link["token"], control=True) as viewer:
            await viewer.wait_for(lambda f: f.full_snapshot, timeout_s=60)
            await viewer.take_control()
            await viewer.wait_until(lambda: viewer.control is not None and viewer.control.you,
                                    timeout_s=10)
            await asyncio.sleep(2.0)  # the take's checkout and the page settle
            print(f"[takeover] {plan['trials']} clicks and {plan['trials']} keys, "
                  f"{plan['gap_ms']} ms apart …", file=sys.stderr, flush=True)
            gc.disable()
            try:
                for i in range(1, plan["trials"] + 1):
                    clicks.append(await _measure(viewer, lambda: viewer.send_input(
                        MouseInput(action="click", x=BUTTON[0], y=BUTTON[1])),
                        f"clicks {i}"))
                    await asyncio.sleep(plan["gap_ms"] / 1000.0)
                await viewer.send_input(MouseInput(action="click", x=FIELD[0], y=FIELD[1]))
                await asyncio.sleep(0.5)
                typed = ""
                for i in range(plan["trials"]):
                    key = _KEYS[i % len(_KEYS)]
                    typed += key
                    # The field's value after this key: the tail is distinct enough.
                    keys.append(await _measure(viewer, lambda k=key: viewer.send_input(
                        KeyInput(action="down", key=k), KeyInput(action="up", key=k)),
                        f'"text":"{typed}"'))
                    await asyncio.sleep(plan["gap_ms"] / 1000.0)
            finally:
                gc.enable()
            await viewer.hand_back()
        await api.stop_session(sid)
    return {"click_ms": spread(clicks) | _tail(clicks), "key_ms": spread(keys) | _tail(keys),
            "raw": {"click_ms": clicks, "key_ms": keys}}


def _tail(values: list[float]) -> dict[str, float | None]:
    return {"p90": pct(values, 0.9), "n": len(values)}


def report(result: dict[str, Any]) -> str:
    machine, plan = result["machine"], result["plan"]
    rows = []
    for kind in ("click", "key"):
        r = result[f"{kind}_ms"]
        rows.append([kind, r["n"], _ms(r.get("p50")), _ms(r.get("p90")), _ms(r["p99"]),
                     _ms(r["max"]), _met(r.get("p50"), TARGET_P50_MS),
                     _met(r["p99"], TARGET_P99_MS)])
    return "\n".join([
        f"one controller viewer, idle page, {plan['gap_ms']} ms between inputs; "
        f"{machine['cpu_count']} cores, load {machine['load_avg_1m_at_start']} at start", "",
        "Input message sent -> first frame with the resulting DOM change, at the controller (ms)",
        table(["input", "n", "p50", "p90", "p99", "max", f"p50<={TARGET_P50_MS:g}",
               f"p99<={TARGET_P99_MS:g}"], rows)])


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _met(value: float | None, target: float) -> str:
    return "-" if value is None else ("yes" if value <= target else "NO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.takeover", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--gap-ms", type=int, dest="gap_ms")
    parser.add_argument("--auth", action="store_true",
                        help="require an API key and viewer tokens, as a cluster does")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    for key in ("trials", "gap_ms"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    out_path = args.out or DEFAULT_OUT.with_name(f"takeover{'_quick' * args.quick}.json")
    result: dict[str, Any] = {"benchmark": "takeover", "quick": args.quick, "plan": plan}
    with bench_lock("bench.takeover"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        settings = bench_settings(auth=args.auth)
        result["settings"] = settings.model_dump(include={"ingress", "codec", "auth",
                                                          "flush_ms"})
        with bench_stack(settings) as running:
            result |= asyncio.run(run(running, plan))
        result["chromium_left_running"] = running.leftovers
    publish(report(result), result, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
