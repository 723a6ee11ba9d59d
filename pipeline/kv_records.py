"""KVRecords: records kept in Ray's GCS key-value store, one JSON value per key under a
prefix, in rrstream's namespace. The store outlives the actors that keep their state in it
(and, with GCS fault tolerance, the GCS itself: it is kept in Redis): the registry's
session records (pipeline/cluster.py) and the export jobs (pipeline/export/actor.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, Protocol, TypeVar

from pydantic import TypeAdapter
from ray.experimental import internal_kv

from pipeline.errors import describe_error

_log = logging.getLogger(__name__)


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


_R = TypeVar("_R", bound=_Identified)


class KVRecords(Generic[_R]):
    def __init__(self, namespace: str, prefix: str, kind: type[_R], what: str) -> None:
        """`prefix`: of every key (`session:`); `what`: a record's name in the log."""
        self._namespace = f"rrstream:{namespace}"
        self._prefix = prefix
        self._adapter = TypeAdapter(kind)
        self._what = what

    async def load(self) -> list[_R]:
        return await asyncio.to_thread(self._load)

    async def save(self, records: list[_R]) -> None:
        await asyncio.to_thread(self._save, records)

    async def delete(self, ids: list[str]) -> None:
        await asyncio.to_thread(self._delete, ids)

    def _load(self) -> list[_R]:
        records = []
        prefix = self._prefix.encode()
        for listed in internal_kv._internal_kv_list(self._prefix, namespace=self._namespace):
            # Listed keys come back with the namespace in front ("rrstream:session:…").
            key = listed[listed.index(prefix):]
            value = internal_kv._internal_kv_get(key, namespace=self._namespace)
            if value is None:
                continue
            try:
                records.append(self._adapter.validate_json(value))
            except ValueError as exc:
                _log.warning("an unreadable %s was skipped: %s", self._what, describe_error(exc))
        return records

    def _save(self, records: list[_R]) -> None:
        for record in records:
            internal_kv._internal_kv_put(f"{self._prefix}{record.id}",
                                         self._adapter.dump_json(record), overwrite=True,
                                         namespace=self._namespace)

    def _delete(self, ids: list[str]) -> None:
        for record_id in ids:
            internal_kv._internal_kv_del(f"{self._prefix}{record_id}", namespace=self._namespace)


__all__ = ["KVRecords"]
