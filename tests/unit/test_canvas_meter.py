"""The canvas bytes a session's status shows: in all, and a second over the last 10 s."""

from __future__ import annotations

from pipeline.canvas_meter import WINDOW_S, CanvasMeter


def test_bytes_a_second_are_over_the_last_window_and_the_total_keeps_everything() -> None:
    now = [100.0]
    meter = CanvasMeter(lambda: now[0])
    assert (meter.total, meter.per_s()) == (0, 0.0)
    meter.add(30_000)
    now[0] += 5
    meter.add(20_000)
    meter.add(0)
    assert (meter.total, meter.per_s()) == (50_000, 50_000 / WINDOW_S)
    now[0] += 6  # the first picture is older than the window now
    assert (meter.total, meter.per_s()) == (50_000, 20_000 / WINDOW_S)
    now[0] += WINDOW_S
    assert (meter.total, meter.per_s()) == (50_000, 0.0)
