"""The ffmpeg command of an export: what keeps its output the same from run to run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.export.encoder import WebmEncoder, ffmpeg_command
from pipeline.export.errors import ExportFailed


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_vp8_is_encoded_at_a_fixed_speed_on_one_thread_bit_exact() -> None:
    command = ffmpeg_command("ffmpeg", 10, Path("/x/out.webm"))
    assert option(command, "-c:v") == "mjpeg"  # the input's, before -i
    assert command[command.index("-i") + 1:].count("libvpx") == 1
    # libvpx picks its own speed from the time frames took when -cpu-used is positive:
    # the same pictures would encode differently on a busy machine.
    assert option(command, "-deadline") == "realtime"
    assert int(option(command, "-cpu-used")) < 0
    assert option(command, "-threads") == "1"
    assert option(command, "-flags") == "+bitexact" and option(command, "-fflags") == "+bitexact"
    assert option(command, "-framerate") == "10" and option(command, "-pix_fmt") == "yuv420p"
    assert command[-1] == "/x/out.webm" and option(command, "-f") == "image2pipe"


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is not installed (scripts/setup.sh)")


def jpeg(colour: str) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                           f"color=c={colour}:s=64x48", "-frames:v", "1", "-f", "mjpeg", "-"],
                          capture_output=True, check=True).stdout


@needs_ffmpeg
def test_frames_written_become_a_webm_of_as_many_frames(tmp_path: Path) -> None:
    red, blue = jpeg("red"), jpeg("blue")
    out = tmp_path / "x" / "out.webm"
    with WebmEncoder(out, fps=10) as encoder:
        for picture in [red] * 7 + [blue] * 5:
            encoder.write(picture)
    assert encoder.frames == 12 and out.is_file()
    assert not out.with_name("out.webm.partial").exists()
    frames = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                             "stream=nb_read_frames,codec_name", "-of", "csv=p=0", str(out)],
                            capture_output=True, check=True, text=True).stdout.strip()
    assert frames == "vp8,12"


@needs_ffmpeg
def test_what_ffmpeg_refuses_fails_in_words_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    with pytest.raises(ExportFailed, match="ffmpeg") as failed:
        with WebmEncoder(out, fps=10) as encoder:
            for _ in range(400):  # more than its pipe holds: it exits on the first
                encoder.write(b"not a jpeg at all" * 1_000)
    assert "exit status" in str(failed.value) or "stopped taking frames" in str(failed.value)
    assert not out.exists() and not out.with_name("out.webm.partial").exists()


@needs_ffmpeg
def test_an_error_of_the_renderer_kills_ffmpeg_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    with pytest.raises(RuntimeError, match="renderer"):
        with WebmEncoder(out, fps=10) as encoder:
            encoder.write(jpeg("red"))
            raise RuntimeError("the renderer crashed")
    assert not out.exists() and not out.with_name("out.webm.partial").exists()
