from __future__ import annotations

from pipeline.models import WarningKind
from pipeline.warning_log import WarningLog
from tests.unit.test_event_rate import Clock


def test_repeats_under_one_key_are_one_entry_with_the_latest_message_and_time() -> None:
    clock = Clock()
    log = WarningLog(clock=clock)
    log.add(WarningKind.NAVIGATION, "did not open", "http://127.0.0.1/a")
    log.add(WarningKind.POPUP, "one window", key="popup")
    clock.now += 5
    log.add(WarningKind.POPUP, "many windows", key="popup", count=9)
    listed = log.list()
    assert [(w.kind, w.message, w.count) for w in listed] == [
        (WarningKind.NAVIGATION, "did not open", 1), (WarningKind.POPUP, "many windows", 10)]
    assert listed[1].at == clock.now


def test_the_log_is_bounded_and_a_key_pushed_out_starts_anew() -> None:
    log = WarningLog(limit=3)
    log.add(WarningKind.DIALOG, "first", key="dialog")
    for n in range(3):
        log.add(WarningKind.NAVIGATION, f"navigation {n}")
    log.add(WarningKind.DIALOG, "again", key="dialog")
    listed = log.list()
    assert len(listed) == 3
    assert (listed[-1].message, listed[-1].count) == ("again", 1)


def test_listed_warnings_are_copies() -> None:
    log = WarningLog()
    log.add(WarningKind.DIALOG, "x", key="dialog")
    log.list()[0].count = 99
    assert log.list()[0].count == 1
