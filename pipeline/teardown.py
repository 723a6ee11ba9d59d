"""Bounded teardown steps: a stop that must finish in time whatever the page does.

Each step of closing a session (a flush, detaching CDP, closing the context, stopping
Playwright) can hang on a page whose main thread never yields; each gets at most its own
bound and what is left of the whole stop's, is logged if it fails or times out, and the
teardown goes on to the next (and, at the end, to force).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from pipeline.errors import describe_error


def time_left(deadline: float, most: float) -> float:
    """At most `most` seconds, and no later than `deadline` (time.monotonic())."""
    return max(0.05, min(most, deadline - time.monotonic()))


async def bounded(awaitable: Awaitable[Any], seconds: float, what: str,
                  log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> bool:
    """Awaits one teardown step for at most `seconds`; False (and logged) if it failed or
    took longer."""
    try:
        await asyncio.wait_for(awaitable, seconds)
        return True
    except TimeoutError:
        log.warning("%s took longer than %.1f s; going on", what, seconds)
    except Exception as exc:
        log.warning("%s failed: %s", what, describe_error(exc))
    return False


__all__ = ["bounded", "time_left"]
