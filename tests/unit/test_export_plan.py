"""FramePlan: which frames an export shows and which need a new screenshot."""

from __future__ import annotations

import pytest

from pipeline.export.errors import ExportFailed
from pipeline.export.models import ExportRequest
from pipeline.export.plan import FramePlan, Timeline

META, FULL, INCREMENTAL = 4, 2, 3


def events(*spec: tuple[int, int]) -> list[dict]:
    """(type, ms after 1_000_000) pairs as rrweb events."""
    return [{"type": kind, "timestamp": 1_000_000 + ms, "data": {}} for kind, ms in spec]


RECORDING = events((META, 0), (FULL, 40), (INCREMENTAL, 250), (INCREMENTAL, 260),
                   (INCREMENTAL, 1_000), (INCREMENTAL, 2_000))


def test_a_video_has_a_frame_every_tenth_of_a_second_of_the_span() -> None:
    plan = FramePlan(Timeline.of(RECORDING), ExportRequest())
    frames = list(plan)
    assert plan.count == len(frames) == 20  # 2,000 ms at 10 fps
    assert plan.duration_ms == 2_000
    assert [f.index for f in frames] == list(range(20))
    # Frame i shows the events up to i/10 s; before the first snapshot there is no page,
    # so frame 0 is put just after it.
    assert [f.offset_ms for f in frames[:4]] == [41, 101, 201, 301]


def test_only_frames_after_a_change_are_captured() -> None:
    frames = list(FramePlan(Timeline.of(RECORDING), ExportRequest()))
    captured = [f.offset_ms for f in frames if f.capture]
    # The first frame; 301 (after the events at 250 and 260); 1,001 (after 1,000). The
    # event at 2,000 is the end itself: the last frame is at 1,901.
    assert captured == [41, 301, 1_001]
    assert sum(1 for f in frames if not f.capture) == 17


def test_a_span_is_clamped_to_the_recording_and_rounded_up_to_whole_frames() -> None:
    plan = FramePlan(Timeline.of(RECORDING),
                     ExportRequest(start_ms=500, end_ms=60_000, fps=4))
    assert (plan.start_ms, plan.end_ms, plan.fps) == (500, 2_000, 4)
    assert plan.count == 6  # 1.5 s at 4 fps
    assert [f.offset_ms for f in plan] == [501, 751, 1_001, 1_251, 1_501, 1_751]
    assert [f.capture for f in plan] == [True, False, True, False, False, False]
    odd = FramePlan(Timeline.of(RECORDING), ExportRequest(start_ms=0, end_ms=1_050, fps=10))
    assert odd.count == 11 and odd.duration_ms == 1_100


def test_a_still_is_one_frame_at_its_moment() -> None:
    plan = FramePlan(Timeline.of(RECORDING), ExportRequest(format="png", at_ms=1_000))
    assert plan.still and plan.count == 1 and plan.duration_ms == 0
    assert [(f.offset_ms, f.capture) for f in plan] == [(1_001, True)]
    # At 0 the page is not built yet: the first snapshot is shown.
    assert plan.offset(0) == 1_001
    assert FramePlan(Timeline.of(RECORDING), ExportRequest(format="png")).offset(0) == 41


@pytest.mark.parametrize(("request_", "words"), [
    (ExportRequest(start_ms=2_000), "start_ms 2000 is not before the recording's end (2000 ms)"),
    (ExportRequest(format="png", at_ms=2_001), "at_ms 2001 is past the recording's end"),
])
def test_moments_past_the_end_fail_in_words(request_: ExportRequest, words: str) -> None:
    with pytest.raises(ExportFailed, match=words.replace("(", r"\(").replace(")", r"\)")):
        FramePlan(Timeline.of(RECORDING), request_)


def test_a_recording_without_a_page_cannot_be_exported() -> None:
    with pytest.raises(ExportFailed, match="no full snapshot"):
        Timeline.of(events((META, 0), (INCREMENTAL, 10)))
    with pytest.raises(ExportFailed, match="no events"):
        Timeline.of([])


def test_events_out_of_order_are_timed_as_the_replayer_sorts_them() -> None:
    shuffled = [RECORDING[3], RECORDING[0], RECORDING[5], RECORDING[1], RECORDING[2],
                RECORDING[4]]
    assert Timeline.of(shuffled) == Timeline.of(RECORDING)
    assert Timeline.of(RECORDING).applied(250) == 2  # strictly before: the Meta and snapshot
    assert Timeline.of(RECORDING).applied(251) == 3
