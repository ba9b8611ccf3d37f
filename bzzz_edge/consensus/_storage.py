"""The persistence contract's reference model: what a store must keep for the core. No I/O.

``DurableState`` applies ``Persist`` actions exactly as the store's writer must (see
``Persist``), and ``stored()`` gives the ``Stored`` record a restarted core is built from. The
simulator uses it as each node's disk; the store's real implementation should be tested
against it with the same sequences of actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from bzzz_edge.consensus._events import Persist
from bzzz_edge.consensus._messages import Entry, Snapshot
from bzzz_edge.errors import StorageError

__all__ = ["DurableState", "Stored"]


@dataclass(frozen=True, slots=True)
class Stored:
    """What a node had made durable: term, vote, latest snapshot and the log entries."""

    term: int = 0
    vote: bytes | None = None
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


class DurableState:
    """A dictionary-backed store that follows the ``Persist`` contract to the letter."""

    def __init__(self) -> None:
        self.term = 0
        self.vote: bytes | None = None
        self.snapshot: Snapshot | None = None
        self.entries: dict[int, Entry] = {}
        self.writes = 0

    def apply(self, persist: Persist) -> None:
        """Perform one ``Persist``.

        Raises:
            StorageError: the action would leave a gap in the log (a bug in the core).
        """
        self.writes += 1
        if persist.snapshot is not None:
            self.snapshot = persist.snapshot
        if persist.truncate_from is not None:
            for index in [i for i in self.entries if i >= persist.truncate_from]:
                del self.entries[index]
        if persist.compact_through is not None:
            for index in [i for i in self.entries if i <= persist.compact_through]:
                del self.entries[index]
        for entry in persist.entries:
            if self.entries and entry.index - 1 not in self.entries:
                raise StorageError(f"raft store: appending entry {entry.index} leaves a gap")
            self.entries[entry.index] = entry
        self.term, self.vote = persist.term, persist.vote

    def stored(self) -> Stored:
        return Stored(self.term, self.vote, self.snapshot,
                      tuple(self.entries[i] for i in sorted(self.entries)))
