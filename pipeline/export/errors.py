"""The export's errors, under rrstream's root error (pipeline/errors.py).

RRStreamError
 └── ExportError
      ├── ExportNotFound         no such job for this recording
      ├── ExportNotReady         its file is asked for before it is done (or it failed)
      ├── ExportFileGone         it was done, but its file is no longer there
      ├── TooManyExports         the queue is full; try again later
      ├── ExportsUnavailable     the jobs actor does not answer
      └── ExportFailed           rendering or encoding failed; `reason` in words
"""

from __future__ import annotations

from pipeline.errors import RRStreamError


class ExportError(RRStreamError):
    """Root of the export's errors."""


class ExportNotFound(ExportError):
    def __init__(self, recording_id: str, job_id: str) -> None:
        self.recording_id, self.job_id = recording_id, job_id
        super().__init__(f"no export {job_id!r} of recording {recording_id!r}")


class ExportNotReady(ExportError):
    def __init__(self, job_id: str, state: str, detail: str) -> None:
        self.job_id, self.state, self.detail = job_id, state, detail
        if state == "failed":
            super().__init__(f"export {job_id!r} failed, so it has no file: {detail}")
        else:
            super().__init__(f"export {job_id!r} is {state}: {detail}")


class ExportFileGone(ExportError):
    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id, self.reason = job_id, reason
        super().__init__(f"the file of export {job_id!r} is gone: {reason}")


class TooManyExports(ExportError):
    def __init__(self, unfinished: int, limit: int, scope: str) -> None:
        self.unfinished, self.limit, self.scope = unfinished, limit, scope
        super().__init__(f"{unfinished} exports {scope} are queued or running (at most "
                         f"{limit}); try again once one has finished")


class ExportsUnavailable(ExportError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the export service is not answering ({reason}); try again in a "
                         "few seconds")


class ExportFailed(ExportError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


__all__ = ["ExportError", "ExportFailed", "ExportFileGone", "ExportNotFound", "ExportNotReady",
           "ExportsUnavailable", "TooManyExports"]
