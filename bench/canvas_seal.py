"""What sealing canvas pictures costs the deflate-raw stream's ratio.

    .venv/bin/python -m bench.canvas_seal [--seconds 15] [--fps 2,5] [--rate 500] [--out FILE]

A picture a newer one supersedes may be left out of a live viewer's stream only because
its payload ends with a full flush (pipeline/codec.py, docs/protocol.md "Skipped
pictures"): the batch after it starts with an empty dictionary. For each canvas rate in
`--fps` this records bench/stress_page.html with its animating 640 x 400 canvas beside
`--rate` bench events a second, without Ray (a BrowserSession whose sink keeps every
PageBatch, as bench.compression records), then compresses the batches in order with
pipeline.codec.DeflateRawEncoder twice, with a fresh context at every checkout: sealing
each picture as the streamer does, and with sync flushes only (as before pictures could
be skipped). Ratios are raw / compressed bytes over the batches that are no pictures,
over the pictures, and over everything. Each stream is decoded back and checked. A page
without canvases has no pictures and so no full flush: its stream is byte for byte what
it was.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.compression import _record
from bench.lock import bench_lock
from bench.procs import ChromiumWatch, machine_info
from bench.stack import reap
from bench.stress_server import StressServer
from bench.tables import publish, table
from pipeline.codec import DeflateRawDecoder, DeflateRawEncoder
from pipeline.config import Settings
from pipeline.protocol import PageBatch

DEFAULT_OUT = Path(__file__).parent / "results" / "canvas_seal.json"


def compress(batches: list[PageBatch], seal: bool) -> dict[str, int]:
    encoder, decoder = DeflateRawEncoder(), DeflateRawDecoder()
    sizes = {"raw_other": 0, "raw_pictures": 0, "other": 0, "pictures": 0}
    for index, batch in enumerate(batches):
        data = batch.text.encode() + b"\n"
        start = batch.checkout or index == 0
        picture = batch.picture_of is not None and not start
        payload = encoder.encode(data, segment_start=start, seal=seal and picture)
        if decoder.decode(payload, segment_start=start) != data:
            raise AssertionError(f"batch {index} did not decode back")
        kind = "pictures" if picture else "other"
        sizes[f"raw_{kind}"] += len(data)
        sizes[kind] += len(payload)
    return sizes


def ratios(sizes: dict[str, int]) -> dict[str, float | None]:
    def ratio(raw: int, packed: int) -> float | None:
        return round(raw / packed, 2) if packed else None

    return {"other": ratio(sizes["raw_other"], sizes["other"]),
            "pictures": ratio(sizes["raw_pictures"], sizes["pictures"]),
            "all": ratio(sizes["raw_other"] + sizes["raw_pictures"],
                         sizes["other"] + sizes["pictures"])}


def measure(fps: float, rate: int, seconds: float, site: StressServer,
            chromium: ChromiumWatch) -> dict[str, Any]:
    from pipeline.models import SessionSpec

    settings = Settings(canvas_fps=fps)
    url = f"{site.url}/stress.html?rate={rate}&seconds={seconds + 5:g}&canvas=1"
    print(f"[canvas_seal] recording {seconds:g} s at {fps:g} pictures/s …", file=sys.stderr,
          flush=True)
    batches = asyncio.run(_record(SessionSpec(url=url, name="canvas-seal"), settings,
                                  until_idle=False, seconds=seconds, chromium=chromium,
                                  name="canvas-seal"))
    sealed, synced = compress(batches, True), compress(batches, False)
    return {"canvas_fps": fps, "batches": len(batches),
            "pictures": sum(b.picture_of is not None for b in batches),
            "sealed": {**sealed, "ratio": ratios(sealed)},
            "sync_only": {**synced, "ratio": ratios(synced)},
            "extra_bytes": sealed["other"] + sealed["pictures"]
            - synced["other"] - synced["pictures"]}


def report(result: dict[str, Any]) -> str:
    rows = [[r["canvas_fps"], r["batches"], r["pictures"],
             f'{r["sync_only"]["ratio"]["other"]} → {r["sealed"]["ratio"]["other"]}',
             f'{r["sync_only"]["ratio"]["all"]} → {r["sealed"]["ratio"]["all"]}',
             f'{r["extra_bytes"]:+,}'] for r in result["runs"]]
    return table(["canvas fps", "batches", "pictures", "ratio, no pictures (sync → sealed)",
                  "ratio, all", "bytes added"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.canvas_seal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--fps", type=lambda v: [float(x) for x in v.split(",")],
                        default=[2.0, 5.0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "canvas_seal", "rate": args.rate,
                              "seconds": args.seconds}
    with bench_lock("bench.canvas_seal"):
        result["machine"] = machine_info()
        result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
        chromium = ChromiumWatch()
        try:
            with StressServer() as site:
                result["runs"] = [measure(fps, args.rate, args.seconds, site, chromium)
                                  for fps in args.fps]
        finally:
            reap(chromium)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    publish(report(result), result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
