"""What the in-page recorder is told (pipeline/recorder.py record_options)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.recorder import record_options


def test_canvases_are_recorded_by_default_at_2_webp_pictures_a_second() -> None:
    options = record_options(Settings())
    assert options["canvasFps"] == 2
    assert options["dataURLOptions"] == {"type": "image/webp", "quality": 0.6}


def test_the_canvas_settings_reach_the_recorder_and_are_bounded() -> None:
    options = record_options(Settings(canvas_fps=0.5, canvas_quality=0.9))
    assert options["canvasFps"] == 0.5
    assert options["dataURLOptions"] == {"type": "image/webp", "quality": 0.9}
    assert record_options(Settings(canvas_fps=0))["canvasFps"] == 0  # off
    for bad in ({"canvas_fps": -1}, {"canvas_fps": 31}, {"canvas_quality": 0},
                {"canvas_quality": 1.5}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_webgl_renders_in_software_unless_turned_off() -> None:
    from pipeline.browser import launch_args

    on, off = launch_args(Settings()), launch_args(Settings(webgl=False))
    assert "--use-angle=swiftshader" in on and "--disable-webgl" not in on
    assert "--use-angle=swiftshader" not in off and "--disable-webgl" in off
