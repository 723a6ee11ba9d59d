"""Structured logs: one JSON object per line, carrying the session id where there is one.

Levels follow the seed: DEBUG per batch of events, INFO session lifecycle, WARNING
recoverable trouble (a failed step, a restart), ERROR what ends a session.
"""

from __future__ import annotations

import logging
import os

import orjson

_FIELDS = ("session_id", "viewer", "seq")
# What a part logs through: a session's parts get its adapter, which adds its session id.
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str | None = None) -> None:
    """JSON logs on stderr for rrstream's loggers (`pipeline`, `serve`); idempotent."""
    level = level or os.environ.get("RRSTREAM_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("pipeline", "serve"):
        logger = logging.getLogger(name)
        if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


__all__ = ["JsonFormatter", "Log", "configure_logging"]
