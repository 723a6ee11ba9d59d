"""Exports through the real stack (Ray tasks, headless Chromium, ffmpeg): a recorded
session becomes a playable WebM of its length whose decoded frames are the same every
time, and PNGs whose pixels show the page before and after a click.

The page (tests/fixtures/export_site) is one block over the whole viewport, red until
the button is clicked, then green: a frame's centre pixel says which moment it shows,
with no OCR. ffprobe and ffmpeg (Debian's, installed by scripts/setup.sh) read the
files the way any player would.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from pipeline.export.browser import ExportBrowser
from pipeline.export.models import ExportRequest
from pipeline.export.plan import FramePlan, Timeline
from pipeline.export.renderer import ReplayRenderer
from serve.client import Client, EventType, ExportFailed, stored_frames
from tests.conftest import _serve_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SITE = Path(__file__).parent.parent / "fixtures" / "export_site"
RED, GREEN = (220, 30, 30), (20, 160, 60)
MOUSE_INTERACTION, CLICK = 2, 2  # rrweb's IncrementalSource and MouseInteractions


@pytest.fixture(scope="module")
def color_site() -> Iterator[object]:
    with _serve_site(SITE) as site:
        yield site


@pytest.fixture(scope="module")
async def recorded(stack, color_site) -> dict:
    """A finished recording of the page: red for ~1.2 s, clicked, green for ~1.5 s (a
    recording ends at its last event: a second button, which changes nothing on screen,
    is clicked last). Its id, span (first to last event, ms), events and the click's
    offset."""
    async with Client(stack.base_url, timeout=60) as client:
        sid = (await client.create_session(
            f"{color_site.url}/index.html", close_when_done=True,
            steps=[{"action": "wait", "ms": 1_200}, {"action": "click", "selector": "#go"},
                   {"action": "wait", "ms": 1_500}, {"action": "click", "selector": "#done"}]
        ))["id"]
        await client.wait_for_state(sid, {"stopped", "failed"}, timeout_s=90)
        deadline = time.monotonic() + 60
        while (info := await client.recording(sid))["ended_at"] is None:
            assert time.monotonic() < deadline, f"the recording never finished: {info}"
            await asyncio.sleep(0.25)
        frames = list(stored_frames(await client.recording_frames(sid), info["codec"]))
    events = [event for frame in frames for event in frame.events]
    first = min(e["timestamp"] for e in events)
    clicks = [e["timestamp"] - first for e in events
              if e["type"] == EventType.INCREMENTAL_SNAPSHOT
              and e["data"].get("source") == MOUSE_INTERACTION and e["data"].get("type") == CLICK]
    assert len(clicks) == 2, clicks
    return {"id": sid, "span_ms": max(e["timestamp"] for e in events) - first,
            "click_ms": clicks[0], "events": events}


async def export(client: Client, recording_id: str, out: Path, **options) -> dict:
    job = await client.create_export(recording_id, **options)
    assert job["state"] == "queued" and job["progress"] == 0
    seen: list[dict] = []
    done = await client.wait_for_export(recording_id, job["id"], timeout_s=180,
                                        on_progress=seen.append)
    assert done["file_url"].endswith(f"/recordings/{recording_id}/exports/{job['id']}/file")
    assert all(0 <= s["progress"] <= 1 for s in seen)
    size = await client.download_export(recording_id, job["id"], out)
    assert size == done["size_bytes"] == (await asyncio.to_thread(out.stat)).st_size > 0
    return done


def probe(path: Path) -> dict:
    answer = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                             "-show_streams", str(path)], capture_output=True, check=True)
    return json.loads(answer.stdout)


def frame_hashes(path: Path) -> list[str]:
    """The MD5 of every decoded frame (ffmpeg's framemd5), in order."""
    answer = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "framemd5", "-"],
                            capture_output=True, check=True, text=True)
    return [line.rsplit(",", 1)[1].strip() for line in answer.stdout.splitlines()
            if line and not line.startswith("#")]


def centre_pixels(path: Path) -> list[tuple[int, int, int]]:
    """The colour at the centre of every frame (or of the one picture), decoded by ffmpeg
    and scaled down to 16x10."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", "scale=16:10",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    size = 16 * 10 * 3
    centre = (5 * 16 + 8) * 3
    return [tuple(raw[i + centre:i + centre + 3]) for i in range(0, len(raw), size)]


def near(colour: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


async def test_a_webm_is_playable_vp8_of_the_recording_length_and_the_same_twice(
        client, recorded, tmp_path) -> None:
    first = await export(client, recorded["id"], tmp_path / "one.webm")
    second = await export(client, recorded["id"], tmp_path / "two.webm")
    assert first["id"] != second["id"]

    info = probe(tmp_path / "one.webm")
    (video,) = info["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 1280, 800)
    assert "webm" in info["format"]["format_name"]
    expected_frames = math.ceil(recorded["span_ms"] * 10 / 1000)
    assert first["frames"] == first["frames_total"] == expected_frames
    assert abs(float(info["format"]["duration"]) - recorded["span_ms"] / 1000) <= 0.1 + 1e-3

    hashes = frame_hashes(tmp_path / "one.webm")
    assert len(hashes) == expected_frames
    assert hashes == frame_hashes(tmp_path / "two.webm"), "two exports decoded differently"
    # Idle stretches repeat a frame instead of rendering one: a second and a half of a
    # still page is not 15 screenshots.
    assert first["captured"] < first["frames"] / 2, first
    colours = centre_pixels(tmp_path / "one.webm")
    assert near(colours[0], RED) and near(colours[-1], GREEN), (colours[0], colours[-1])
    click_frame = math.floor(recorded["click_ms"] * 10 / 1000)
    assert all(near(c, RED) for c in colours[:click_frame]), colours
    assert all(near(c, GREEN) for c in colours[click_frame + 2:]), colours


async def test_a_png_shows_the_page_at_its_moment(client, recorded, tmp_path) -> None:
    click = recorded["click_ms"]
    before = await export(client, recorded["id"], tmp_path / "before.png", format="png",
                          at_ms=click - 300, width=640, height=400)
    after = await export(client, recorded["id"], tmp_path / "after.png", format="png",
                         at_ms=click + 300, width=640, height=400)
    assert before["frames"] == after["frames"] == 1
    (picture,) = probe(tmp_path / "before.png")["streams"]
    assert (picture["codec_name"], picture["width"], picture["height"]) == ("png", 640, 400)
    (red,) = centre_pixels(tmp_path / "before.png")
    (green,) = centre_pixels(tmp_path / "after.png")
    assert red == RED, red  # lossless: exactly the page's colour
    assert green == GREEN, green


async def test_an_export_past_the_recording_fails_in_words(client, recorded) -> None:
    job = await client.create_export(recorded["id"], format="png",
                                     at_ms=recorded["span_ms"] + 10_000)
    with pytest.raises(ExportFailed) as failed:
        await client.wait_for_export(recorded["id"], job["id"], timeout_s=120)
    assert failed.value.reason == (f"at_ms {recorded['span_ms'] + 10_000} is past the "
                                   f"recording's end ({recorded['span_ms']} ms)")
    shown = await client.export(recorded["id"], job["id"])
    assert shown["state"] == "failed" and shown["file_url"] is None


async def test_the_cli_exports_with_a_progress_bar(stack, recorded, tmp_path) -> None:
    out = tmp_path / "cli.webm"
    answer = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "serve.cli", "export", recorded["id"],
                         "--gateway", stack.base_url, "--out", str(out), "--fps", "5",
                         "--width", "640", "--height", "400"],
        capture_output=True, text=True, timeout=240)
    assert answer.returncode == 0, answer.stderr
    assert "] 100%" in answer.stderr and "done" in answer.stderr, answer.stderr
    assert answer.stdout.startswith(f"{out}: ") and " frames (" in answer.stdout
    (video,) = probe(out)["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 640, 400)



async def test_stepping_frame_by_frame_applies_each_event_once(stack, recorded) -> None:
    """The click adds one list item: after a frame every tenth of a second up to the end
    there must be exactly one (rrweb, resuming after a mouse move, casts the events of the
    move's last half second again unless the export page stops it)."""
    plan = FramePlan(Timeline.of(recorded["events"]), ExportRequest())
    browser = ExportBrowser(stack.settings)
    try:
        renderer = ReplayRenderer(await browser.get(), stack.settings,
                                  orjson.dumps(recorded["events"]), 640, 400)
        try:
            await renderer.start()
            items = []
            for frame in plan:
                await renderer.frame(frame.offset_ms, "jpeg")
                items.append(await renderer.count("#log li"))
        finally:
            await renderer.close()
    finally:
        await browser.close()
    click_frame = math.floor(recorded["click_ms"] * 10 / 1000)
    assert set(items[:click_frame]) == {0} and set(items[click_frame + 2:]) == {1}, items


async def test_a_killed_export_worker_fails_its_job_in_words(client, recorded) -> None:
    """SIGKILL to the worker of a running export (found as the parent of its ffmpeg,
    whose output names the job): the job ends failed, saying what happened, and never
    claims a file (ffmpeg's `.partial` output is never renamed)."""
    job = await client.create_export(recorded["id"], fps=30, width=3840, height=2160)
    deadline = time.monotonic() + 120
    ffmpeg = None
    while ffmpeg is None:
        assert time.monotonic() < deadline, "the export's ffmpeg never started"
        ffmpeg = next((p for p in psutil.process_iter(["name", "cmdline"])
                       if p.info["name"] == "ffmpeg"
                       and any(job["id"] in part for part in p.info["cmdline"] or [])), None)
        await asyncio.sleep(0.05)
    output = Path(ffmpeg.info["cmdline"][-1])
    worker = ffmpeg.parent()
    assert worker is not None and worker.name() == "ray::_export_in_worker", worker
    worker.send_signal(signal.SIGKILL)
    with pytest.raises(ExportFailed) as failed:
        await client.wait_for_export(recorded["id"], job["id"], timeout_s=60)
    assert failed.value.reason == ("the export's worker process died (it was killed, or its "
                                   "node was lost)")
    shown = await client.export(recorded["id"], job["id"])
    assert shown["state"] == "failed" and shown["frames"] < shown["frames_total"]
    assert not output.with_name(output.name.removesuffix(".partial")).exists()
