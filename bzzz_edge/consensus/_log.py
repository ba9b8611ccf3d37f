"""The in-memory Raft log after a compaction point, with its configuration history. No I/O.

Entries ``base_index + 1 .. last_index`` are held; ``base_index`` and ``base_term`` stand for
what was compacted away (into a snapshot). The configurations of the config entries still in
the log are kept in order, with the configuration in force at ``base_index`` below them, so
truncating a conflicting suffix restores the configuration before it (a configuration takes
effect as soon as it is appended, committed or not). The log stays bounded because the core
compacts it after each snapshot.
"""

from __future__ import annotations

from bzzz_edge.consensus._messages import Configuration, Entry, EntryKind
from bzzz_edge.errors import LocalProtocolError

__all__ = ["RaftLog"]


class RaftLog:
    __slots__ = ("_base_config", "_base_index", "_base_term", "_configs", "_entries")

    def __init__(self, base_index: int, base_term: int, base_config: Configuration) -> None:
        self._base_index = base_index
        self._base_term = base_term
        self._base_config = base_config
        self._entries: list[Entry] = []
        self._configs: list[tuple[int, Configuration]] = []

    # --- views ----------------------------------------------------------------------------------

    @property
    def base_index(self) -> int:
        return self._base_index

    @property
    def base_term(self) -> int:
        return self._base_term

    @property
    def last_index(self) -> int:
        return self._base_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._base_term

    def __len__(self) -> int:
        return len(self._entries)

    def term_at(self, index: int) -> int | None:
        """The term of entry ``index``; None if it is compacted away or beyond the end."""
        if index == self._base_index:
            return self._base_term
        if self._base_index < index <= self.last_index:
            return self._entries[index - self._base_index - 1].term
        return None

    def entry(self, index: int) -> Entry:
        if not self._base_index < index <= self.last_index:
            raise LocalProtocolError(f"raft log: no entry {index}")
        return self._entries[index - self._base_index - 1]

    def slice(self, start: int, max_count: int, max_bytes: int) -> list[Entry]:
        """Entries from ``start`` on, at most ``max_count`` of them and about ``max_bytes``
        (always at least one if there is one)."""
        out: list[Entry] = []
        size = 0
        pos = start - self._base_index - 1
        while pos < len(self._entries) and len(out) < max_count:
            entry = self._entries[pos]
            size += entry.size()
            if out and size > max_bytes:
                break
            out.append(entry)
            pos += 1
        return out

    def config(self) -> Configuration:
        """The latest configuration in the log (in force now)."""
        return self._configs[-1][1] if self._configs else self._base_config

    def config_index(self) -> int:
        """Index of the latest configuration entry (``base_index`` if none is in the log)."""
        return self._configs[-1][0] if self._configs else self._base_index

    def config_at(self, index: int) -> Configuration:
        found = self._base_config
        for at, config in self._configs:
            if at > index:
                break
            found = config
        return found

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (``last_index``, ``last_term``) is at least as recent."""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    # --- changes --------------------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise LocalProtocolError(f"raft log: appending {entry.index} after {self.last_index}")
        self._entries.append(entry)
        if entry.kind is EntryKind.CONFIG and entry.config is not None:
            self._configs.append((entry.index, entry.config))

    def truncate_from(self, index: int) -> None:
        """Drop entries ``index`` and later."""
        if index <= self._base_index:
            raise LocalProtocolError(f"raft log: truncating compacted entry {index}")
        del self._entries[index - self._base_index - 1:]
        while self._configs and self._configs[-1][0] >= index:
            self._configs.pop()

    def compact_through(self, index: int) -> None:
        """Drop entries up to ``index`` (which must be held)."""
        term = self.term_at(index)
        if term is None or index < self._base_index:
            raise LocalProtocolError(f"raft log: cannot compact through {index}")
        self._base_config = self.config_at(index)
        self._entries = self._entries[index - self._base_index:]
        self._configs = [(at, c) for at, c in self._configs if at > index]
        self._base_index, self._base_term = index, term

    def reset(self, base_index: int, base_term: int, base_config: Configuration) -> None:
        """Discard everything: the log restarts after a snapshot at ``base_index``."""
        self.__init__(base_index, base_term, base_config)  # type: ignore[misc]
