"""The peer table: the peers a node remembers across restarts, and its own incarnation. Trio.

Kept in the store's ``peers`` database, one record per node ID. Changes are collected and
handed in batches to the store's writer thread (``Store.writer``): an fsync on an SD card can
take tens of milliseconds, too long to stall probes for. The table is bounded
(``max_peers``): when full, records of peers that are neither alive nor suspect make room
first, and a new peer beyond the bound is not remembered (it is still a member while it runs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from ._env import Store

__all__ = ["PeerRecord", "PeerTable"]

log = logging.getLogger(__name__)

_DB = "peers"
_INCARNATION = "incarnation"


@dataclass(frozen=True, slots=True)
class PeerRecord:
    host: str
    port: int
    status: str
    incarnation: int
    name: str
    seen: float  # wall-clock seconds

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


class PeerTable:
    def __init__(self, store: Store, *, max_peers: int = 1024) -> None:
        self._store = store
        self._max = max_peers
        self._known: dict[bytes, str] = {}  # node -> status, of what is stored or pending
        self._dirty: dict[tuple[str, bytes], object] = {}
        self._dirty_event = trio.Event()
        self.counters = {"peer_table_full": 0}

    def remembered(self) -> list[tuple[bytes, PeerRecord]]:
        """The stored peers (at start: whom to dial again)."""
        out = []
        for node, raw in self._store.items(_DB):
            try:
                record = PeerRecord(**raw)
            except TypeError:  # an old or damaged record: skip it, it will be rewritten
                continue
            self._known[node] = record.status
            out.append((node, record))
        return out

    def stored_incarnation(self) -> object:
        """What the last run stored as our incarnation (None if nothing): unchecked."""
        return self._store.get_meta(_INCARNATION, None)

    def store_incarnation_now(self, incarnation: int) -> None:
        """Store our starting incarnation at once, before anyone hears it: a crash must not
        let the next start reuse it."""
        self._store.put_meta(_INCARNATION, incarnation)

    def set_incarnation(self, incarnation: int) -> None:
        self._mark(("meta", _INCARNATION.encode()), incarnation)

    def record(self, node: bytes, record: PeerRecord) -> None:
        if node not in self._known and len(self._known) >= self._max and not self._make_room():
            self.counters["peer_table_full"] += 1
            return
        self._known[node] = record.status
        self._mark((_DB, node), record.as_dict())

    def forget(self, node: bytes) -> None:
        if self._known.pop(node, None) is not None:
            self._mark((_DB, node), None)

    def _make_room(self) -> bool:
        for node, status in self._known.items():
            if status not in ("alive", "suspect"):
                self.forget(node)
                return True
        return False

    def _mark(self, key: tuple[str, bytes], value: object) -> None:
        self._dirty[key] = value
        self._dirty_event.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write changes in batches until cancelled."""
        task_status.started()
        while True:
            await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        changes, self._dirty = self._dirty, {}
        if changes:
            await self._store.write_batch_async(changes)
