from __future__ import annotations

import asyncio

from pipeline.busy_watch import BusyWatch


async def test_a_page_that_stops_answering_is_reported_once_and_again_when_it_answers() -> None:
    answering = asyncio.Event()
    answering.set()
    changes: list[bool] = []
    looked = 0

    async def ping() -> None:
        nonlocal looked
        looked += 1
        await answering.wait()

    watch = BusyWatch(lambda since: changes.append(since is not None), interval_s=0.01,
                      answer_s=0.05)
    task = asyncio.create_task(watch.watch(ping))
    try:
        await asyncio.sleep(0.1)
        assert changes == []
        answering.clear()
        await asyncio.sleep(0.4)  # several looks without an answer: one report
        assert changes == [True]
        answering.set()
        await asyncio.sleep(0.1)
        assert changes == [True, False]
        assert looked > 5
    finally:
        task.cancel()
