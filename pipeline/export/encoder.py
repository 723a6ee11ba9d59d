"""WebmEncoder: screenshots in, a VP8 WebM out, through an `ffmpeg` process.

Frames are JPEG pictures written to ffmpeg's stdin one after another (`image2pipe`);
ffmpeg gives each the next slot at a constant frame rate, so a repeated picture is simply
written again. VP8 runs on one thread with bit-exact muxing: the same pictures make the
same file, and decode to the same frames. ffmpeg runs at the export's nice level
(RRSTREAM_EXPORT_NICE), below live sessions.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType

from pipeline.export.errors import ExportFailed

_STDERR_TAIL = 2_000
FIXED_SPEED = "-16"  # libvpx VP8: negative is a fixed speed (16 the fastest)
_EXIT_TIMEOUT_S = 60.0
_QUEUED_FRAMES = 64


def find_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        raise ExportFailed("ffmpeg is not installed on this node (scripts/setup.sh installs "
                           "Debian's ffmpeg)")
    return found


def ffmpeg_command(ffmpeg: str, fps: int, out: Path) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "image2pipe", "-framerate", str(fps), "-c:v", "mjpeg", "-i", "pipe:0",
        "-c:v", "libvpx", "-pix_fmt", "yuv420p", "-b:v", "2M", "-crf", "8",
        # Realtime speed, fixed: a positive -cpu-used lets libvpx pick its speed per frame
        # from how long frames took, so a busy machine encoded the same pictures into
        # other bytes (measured: two exports of the demo differed in 49 frames). One
        # thread and bit-exact muxing, so the same pictures make the same file.
        "-deadline", "realtime", "-cpu-used", FIXED_SPEED, "-threads", "1",
        "-auto-alt-ref", "0",
        # Blocks identical to the frame before are skipped, not coded again: a repeated
        # frame (most of a video of an idle page) then costs half (2.0 vs 5.8 s for the
        # demo's 276 frames here), and what changed is coded as before.
        "-static-thresh", "1",
        "-g", str(fps * 5), "-an", "-flags", "+bitexact", "-fflags", "+bitexact",
        "-f", "webm", "-y", str(out),
    ]


class WebmEncoder:
    """`with WebmEncoder(path, fps) as encoder: encoder.write(jpeg)`; the file appears at
    `path` only once ffmpeg finished it (written to `<path>.partial` meanwhile).

    Pictures go to ffmpeg from a thread of their own through a bounded queue: a write to
    its stdin waits while ffmpeg encodes, and the renderer would wait with it (that was
    half of an export's time: 2.5 s of screenshots and 1.9 s blocked in writes)."""

    def __init__(self, path: Path, fps: int, nice: int = 0) -> None:
        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        self._fps = fps
        self._nice = nice
        self._process: subprocess.Popen[bytes] | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_FRAMES)
        self._writer: threading.Thread | None = None
        self._broken = False
        self.frames = 0

    def __enter__(self) -> WebmEncoder:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        command = ffmpeg_command(find_ffmpeg(), self._fps, self._partial)
        nice = self._nice
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=(lambda: os.nice(nice)) if nice else None)  # noqa: PLW1509
        self._writer = threading.Thread(target=self._feed, name="ffmpeg-feed", daemon=True)
        self._writer.start()
        return self

    def write(self, picture: bytes) -> None:
        """Queues the next frame (the same bytes again repeat a frame)."""
        if self._broken:
            raise ExportFailed(f"ffmpeg stopped taking frames: {self._stderr()}")
        self._queue.put(picture)
        self.frames += 1

    def _feed(self) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        while (picture := self._queue.get()) is not None:
            if self._broken:
                continue  # drain, so the renderer is never left waiting on a full queue
            try:
                process.stdin.write(picture)
            except (OSError, ValueError):  # ffmpeg exited (a broken pipe) or was killed
                self._broken = True
        try:
            process.stdin.close()
        except OSError:
            pass  # it exited already; its status and stderr say why

    def _stop_feeding(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(_EXIT_TIMEOUT_S)
            self._writer = None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        process = self._process
        if process is None:
            return
        try:
            if kind is not None:
                process.kill()  # the feeder's next write fails; it drains and ends
                self._stop_feeding()
                process.wait(_EXIT_TIMEOUT_S)
                return
            self._stop_feeding()  # every queued frame written, stdin closed
            try:
                code = process.wait(_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                raise ExportFailed(f"ffmpeg did not finish the video within "
                                   f"{_EXIT_TIMEOUT_S:g} s") from None
            if code != 0:
                raise ExportFailed(f"ffmpeg failed (exit status {code}): {self._stderr()}")
            os.replace(self._partial, self.path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(_EXIT_TIMEOUT_S)
            if process.stderr is not None:
                process.stderr.close()
            self._partial.unlink(missing_ok=True)

    def _stderr(self) -> str:
        process = self._process
        if process is None or process.stderr is None:
            return "no output"
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            return "it is still running"
        text = process.stderr.read().decode("utf-8", "replace").strip()
        return text[-_STDERR_TAIL:] or "no output"


__all__ = ["WebmEncoder", "ffmpeg_command", "find_ffmpeg"]
