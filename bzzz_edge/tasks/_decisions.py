"""The decision log's state machine extended with the tasks. No I/O.

``ConsensusService.machine`` (a ``DecisionLog``) is what the Raft driver applies committed
entries to, snapshots and restores; ``TaskDecisionLog`` is that machine with the task state
machine inside it, so task state is applied in the same step as the log itself and travels
in the same snapshots: a snapshot at index N holds the tasks at exactly N, and a follower that
installs one (its log behind the leader's compaction) gets the tasks with it.

The entries that are not commands tell the tasks who the coordinator is: a ``CONFIG``
entry's voters (``TaskMachine.configure``) and a ``NOOP`` entry's term and, once consensus
puts it there, its leader (``TaskMachine.note_leader``).

Its snapshot is ``["bzzz.tasks", <the DecisionLog's snapshot>, <the tasks' snapshot>]``; a
snapshot without the marker (taken before tasks existed) restores the log and no tasks.

At start the task state may come from the store ahead of the Raft snapshot (it is written as
entries apply; the Raft snapshot only every ``snapshot_threshold`` entries): restoring a
snapshot at or behind it keeps it, and replayed entries at or below it are skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import msgpack

from ..consensus._machine import DecisionLog
from ..consensus._messages import Entry, EntryKind
from ..errors import DecodeError
from ._machine import Outcome, TaskMachine

__all__ = ["TaskDecisionLog"]

_MARKER = "bzzz.tasks"


class TaskDecisionLog(DecisionLog):
    """A ``DecisionLog`` that applies task commands to ``tasks`` and calls ``on_applied``
    (index, outcome or None) after each entry, and ``on_restored`` (the index the tasks were
    at before) after a snapshot replaced the tasks."""

    def __init__(self, tasks: TaskMachine,
                 on_applied: Callable[[int, Outcome | None], None], *,
                 on_restored: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.tasks = tasks
        self._on_applied = on_applied
        self._on_restored = on_restored

    def apply(self, entry: Entry) -> None:
        super().apply(entry)
        if entry.kind is EntryKind.CONFIG and entry.config is not None:
            self.tasks.configure(entry.index, entry.config.voters)
        elif entry.kind is EntryKind.NOOP:
            self.tasks.note_leader(entry.index, entry.term, entry.data)
        data = entry.data if entry.kind is EntryKind.COMMAND else b""
        self._on_applied(entry.index, self.tasks.apply(entry.index, data, entry.term))

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb([_MARKER, super().snapshot(), self.tasks.snapshot()],
                                      use_bin_type=True)
        return packed

    def restore(self, index: int, data: bytes) -> None:
        """Raises: DecodeError: not a snapshot of ours."""
        try:
            raw = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise DecodeError("decision log snapshot: not msgpack") from None
        if isinstance(raw, list) and len(raw) == 3 and raw[0] == _MARKER:
            base, tasks = raw[1], raw[2]
            if not isinstance(base, bytes) or not isinstance(tasks, bytes):
                raise DecodeError("decision log snapshot: parts are not bytes")
        else:
            base, tasks = data, None
        super().restore(index, base)
        before = self.tasks.applied
        if before >= index:
            return  # the store's state is this log's, further along
        if tasks is None:
            self.tasks.load(index, [])
        else:
            self.tasks.restore(index, tasks)
        if self._on_restored is not None:
            self._on_restored(before)
        self._on_applied(index, None)
