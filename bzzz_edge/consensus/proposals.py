"""Proposals in flight on this node, and the reasons a proposal fails. Uses trio.

A proposal is settled by what the core says of it: ``Rejected`` (not leader, back pressure,
too large), ``Accepted`` (in the log at an index and term), then the ``Apply`` that reaches that
index: the same term there means committed, another term means it was overwritten (lost in a
leader change, never committed). A proposal accepted but not applied by its deadline may still
commit later: ``TIMEOUT`` and ``NO_QUORUM`` after acceptance say "unknown", never "not done".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import trio

from ..errors import BzzzError
from ..ids import format_node_id
from ._events import Rejection
from ._messages import Entry

__all__ = ["Committed", "Failure", "ProposalError", "Proposals"]


class Failure(enum.Enum):
    """Why ``propose`` raised."""

    NO_QUORUM = "no quorum"  # no coordinator elected, or it lost its majority
    NOT_LEADER = "not leader"  # only with forward=False; ``leader`` names the coordinator
    TIMEOUT = "timeout"  # not committed in time; it may still commit
    REFUSED = "refused"  # too large, or the coordinator's backlog is full
    LOST = "lost"  # overwritten by another entry in a leader change: never committed


class ProposalError(BzzzError):
    """A proposal failed; ``reason`` says why, ``leader`` is the coordinator when known."""

    def __init__(self, reason: Failure, message: str, leader: bytes | None = None) -> None:
        who = f" (the coordinator is {format_node_id(leader)})" if leader else ""
        super().__init__(f"proposal {reason.value}: {message}{who}")
        self.reason = reason
        self.detail = message  # without the prefix: what a forwarded answer carries
        self.leader = leader


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed command: where it is in the decision log."""

    index: int
    term: int
    command: bytes


class _Waiter:
    __slots__ = ("done", "error", "index", "result", "term")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.index: int | None = None
        self.term = 0
        self.result: Committed | None = None
        self.error: ProposalError | None = None


class Proposals:
    """The waiters of local proposals, keyed by ref and, once accepted, by log index."""

    def __init__(self) -> None:
        self._next_ref = 0
        self._by_ref: dict[int, _Waiter] = {}
        self._by_index: dict[int, _Waiter] = {}

    def __len__(self) -> int:
        return len(self._by_ref)

    def open(self) -> tuple[int, _Waiter]:
        self._next_ref += 1
        waiter = _Waiter()
        self._by_ref[self._next_ref] = waiter
        return self._next_ref, waiter

    def close(self, ref: int) -> None:
        waiter = self._by_ref.pop(ref, None)
        if waiter is not None and waiter.index is not None:
            self._by_index.pop(waiter.index, None)

    def accepted(self, ref: int, index: int, term: int) -> None:
        waiter = self._by_ref.get(ref)
        if waiter is not None:
            waiter.index, waiter.term = index, term
            self._by_index[index] = waiter

    def rejected(self, ref: int, reason: Rejection, leader: bytes | None) -> None:
        waiter = self._by_ref.get(ref)
        if waiter is None:
            return
        if reason in (Rejection.NOT_LEADER, Rejection.TRANSFERRING):
            waiter.error = ProposalError(Failure.NOT_LEADER, reason.value, leader)
        else:
            waiter.error = ProposalError(Failure.REFUSED, reason.value, leader)
        waiter.done.set()

    def applied(self, entry: Entry) -> None:
        waiter = self._by_index.pop(entry.index, None)
        if waiter is None:
            return
        if entry.term == waiter.term:
            waiter.result = Committed(entry.index, entry.term, entry.data)
        else:
            waiter.error = ProposalError(
                Failure.LOST, f"index {entry.index} went to another leader's entry")
        waiter.done.set()

    def restored(self, index: int) -> None:
        """A snapshot replaced the log up to ``index``: what waited there cannot be told."""
        for at in [i for i in self._by_index if i <= index]:
            waiter = self._by_index.pop(at)
            waiter.error = ProposalError(
                Failure.TIMEOUT, "a snapshot replaced the log; it may have committed")
            waiter.done.set()
