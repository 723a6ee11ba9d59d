"""ExportFiles: an export's file, read from whichever node rendered it.

A gateway replica on the node that holds the file serves it from disk; any other reads
it in 1 MiB pieces through small tasks pinned to that node, so no replica needs a shared
disk and no Ray call carries more than a piece.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.errors import describe_error, unwrap
from pipeline.export.errors import ExportFileGone

CHUNK_BYTES = 1024 * 1024


def _read_piece(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(size)


_read_remote = ray.remote(num_cpus=0, max_retries=0)(_read_piece)


class ExportFiles:
    def __init__(self) -> None:
        self._node_id: str | None = None

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = ray.get_runtime_context().get_node_id()
        return self._node_id

    def local(self, node_id: str | None, path: Path) -> Path | None:
        """The file on this node's disk, if that is where it is."""
        return path if node_id == self.node_id and path.is_file() else None

    async def pieces(self, job_id: str, node_id: str, path: Path,
                     size: int) -> AsyncIterator[bytes]:
        """The file, piece by piece, from `node_id`."""
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        read = _read_remote.options(scheduling_strategy=strategy)
        for offset in range(0, size, CHUNK_BYTES):
            try:
                yield await read.remote(str(path), offset, CHUNK_BYTES)
            except (RayError, OSError) as exc:
                raise ExportFileGone(job_id, f"it could not be read from node {node_id[:12]} "
                                     f"({describe_error(unwrap(exc))})") from exc


__all__ = ["CHUNK_BYTES", "ExportFiles"]
