"""The write-ahead log's records as steps (a record's payload: msgpack, a list of steps,
see ``_STEP_*``), and the log as the steps so far leave it (``WalState``: the reference
model's rules, ``DurableState``), which a checkpoint writes out whole. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgpack

from ..errors import DecodeError
from ._events import Persist
from ._messages import Entry, Limits, _decode_entry, _encode_entry

__all__ = ["STEP_RESET", "WalState", "pack", "steps_of"]

# Steps of a record (a list of lists, applied in order as ``DurableState`` applies a Persist).
_STEP_MARK = 0  # [0, index, term]: the snapshot at (index, term) was stored
_STEP_TRUNCATE = 1  # [1, index]: entries from index on are gone
_STEP_COMPACT = 2  # [2, index]: entries up to index are gone
_STEP_ENTRY = 3  # [3, entry]: appended (the entry's wire form)
_STEP_HARD = 4  # [4, term, vote]
STEP_RESET = 5  # [5]: a checkpoint starts: forget everything before
# Our own records: only the format is checked on reading, not a peer's limits.
_OWN = Limits(max_entries=1 << 30, max_command_bytes=1 << 30, max_snapshot_bytes=1 << 40)


def pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def steps_of(actions: Sequence[Persist]) -> list[list[Any]]:
    """The steps recording ``actions`` (their snapshots are stored apart, before)."""
    steps: list[list[Any]] = []
    for p in actions:
        if p.snapshot is not None:
            steps.append([_STEP_MARK, p.snapshot.index, p.snapshot.term])
        if p.truncate_from is not None:
            steps.append([_STEP_TRUNCATE, p.truncate_from])
        if p.compact_through is not None:
            steps.append([_STEP_COMPACT, p.compact_through])
        steps.extend([_STEP_ENTRY, _encode_entry(e)] for e in p.entries)
    if actions:
        steps.append([_STEP_HARD, actions[-1].term, actions[-1].vote])
    return steps


class WalState:
    """The log as the records so far leave it (the reference model's rules, ``DurableState``),
    plus the latest snapshot mark.

    The entries written (not those replayed) are also held as their checkpoint step, packed:
    a roll's checkpoint joins those bytes instead of encoding the live log again in the log's
    thread, which holds the GIL the event loop needs (``benchmarks/bench_wal_roll.py``:
    10,000 live entries of 200 bytes, about 17 ms of encoding against 0.2 ms of joining).
    It costs as many bytes again as the live entries' commands, and a pack of each entry in
    the writer's thread (about a microsecond).
    """

    __slots__ = ("_packer", "entries", "first", "mark", "packed", "term", "vote")

    def __init__(self) -> None:
        self.term = 0
        self.vote: bytes | None = None
        self.entries: dict[int, Entry] = {}
        self.packed: dict[int, bytes] = {}  # index -> its checkpoint step, when written
        self._packer = msgpack.Packer(use_bin_type=True)  # (the writer's: one at a time)
        self.first = 0  # the lowest index held (when entries is not empty)
        self.mark: tuple[int, int] | None = None

    @property
    def last(self) -> int:
        return self.first + len(self.entries) - 1

    def apply_steps(self, steps: Iterable[list[Any]], decoded: Sequence[Entry] | None) -> None:
        """Apply recorded steps; ``decoded``: the entries of the ``_STEP_ENTRY`` steps when
        the caller has them (a write), else they are decoded here (a replay)."""
        position = 0
        for step in steps:
            kind = step[0]
            if kind == _STEP_ENTRY:
                if decoded is not None:
                    entry = decoded[position]
                    position += 1
                    self._put(entry, self._packer.pack([_STEP_ENTRY, _encode_entry(entry)]))
                else:
                    self._put(_decode_entry(step[1], "stored", _OWN))
            elif kind == _STEP_HARD:
                term, vote = step[1], step[2]
                if not isinstance(term, int) or not (vote is None or isinstance(vote, bytes)):
                    raise DecodeError("raft log: hard state has the wrong types")
                self.term, self.vote = term, vote
            elif kind == _STEP_TRUNCATE:
                self._drop(max(step[1], self.first), self.last)
            elif kind == _STEP_COMPACT:
                self._drop(self.first, min(step[1], self.last))
            elif kind == _STEP_MARK:
                self.mark = (int(step[1]), int(step[2]))
            elif kind == STEP_RESET:
                self.__init__()  # type: ignore[misc]
            else:
                raise DecodeError(f"raft log: unknown step {kind!r}")

    def check(self, steps: Iterable[list[Any]], decoded: Sequence[Entry]) -> None:
        """Raise what ``apply_steps`` would raise for a gap, changing nothing: a write is
        checked before it is made (a record on disk that replays into an error would make
        every later open refuse the log).

        Raises:
            DecodeError: an entry would leave a gap, or the hard state has the wrong types.
        """
        empty, first, last = not self.entries, self.first, self.last
        position = 0
        for step in steps:
            kind = step[0]
            if kind == _STEP_ENTRY:
                index = decoded[position].index
                position += 1
                if empty:
                    empty, first, last = False, index, index
                elif first <= index <= last + 1:
                    last = max(last, index)
                else:
                    raise DecodeError(f"raft log: entry {index} leaves a gap after {last}")
            elif kind == _STEP_HARD:
                if not isinstance(step[1], int) or \
                        not (step[2] is None or isinstance(step[2], bytes)):
                    raise DecodeError("raft log: hard state has the wrong types")
            elif kind == _STEP_TRUNCATE:  # (as ``_drop``: from the step's index on)
                if not empty and step[1] <= last:
                    empty = step[1] <= first
                    last = step[1] - 1
            elif kind == _STEP_COMPACT:  # (up to the step's index)
                if not empty and step[1] >= first:
                    empty = step[1] >= last
                    first = step[1] + 1
            elif kind == STEP_RESET:
                empty = True

    def _put(self, entry: Entry, packed: bytes | None = None) -> None:
        """Hold ``entry`` (``packed``: its checkpoint step, if the caller made it)."""
        if self.entries and not self.first <= entry.index <= self.last + 1:
            raise DecodeError(f"raft log: entry {entry.index} leaves a gap after {self.last}")
        if not self.entries:
            self.first = entry.index
        self.entries[entry.index] = entry  # (over an entry held: the model's put)
        if packed is not None:
            self.packed[entry.index] = packed
        else:
            self.packed.pop(entry.index, None)  # (the one it replaces is not its step)

    def _drop(self, start: int, end: int) -> None:
        if end < start or not self.entries:
            return
        for index in range(start, end + 1):
            self.entries.pop(index, None)
            self.packed.pop(index, None)
        if not self.entries:
            self.first = 0
        elif start <= self.first:
            self.first = end + 1

    def ordered(self) -> tuple[Entry, ...]:
        return tuple(self.entries[i] for i in range(self.first, self.first + len(self.entries)))

    def checkpoint(self) -> Iterator[bytes]:
        """The steps that rebuild this state from nothing, packed (one msgpack list), in
        pieces: a checkpoint of a large log is never one object in memory. The state must
        not change meanwhile (only the writer changes it, and the writer is the caller)."""
        packer = msgpack.Packer(use_bin_type=True)
        yield packer.pack_array_header(2 + (self.mark is not None) + len(self.entries))
        yield packer.pack([STEP_RESET])
        if self.mark is not None:
            yield packer.pack([_STEP_MARK, *self.mark])
        packed = self.packed
        for index in range(self.first, self.first + len(self.entries)):
            step = packed.get(index)
            yield step if step is not None else \
                packer.pack([_STEP_ENTRY, _encode_entry(self.entries[index])])
        yield packer.pack([_STEP_HARD, self.term, self.vote])
