"""How a proposal reaches the coordinator, wherever it is, and how its answer comes back, read
with suspicion. Uses trio (to wait for a coordinator).

``follow_coordinator`` is the loop both kinds of proposal run: proposed here when this node is
the coordinator, sent to it when another node is, following it as it changes (a few hops at
most, within the caller's deadline). The request is ``[group, command, seconds]``; the answer
``{"index", "term"}`` (committed), ``{"error": <Failure name>, "message", "leader"}``, or what
a layer above adds (the task layer's ``{"decided": index}``). Two RPCs use it: the log's own
``raft.propose`` (consensus/_forward.py) and the task layer's ``tasks.claim``
(tasks/_desk.py). Either side may be an insider holding the network key, so nothing read here
is trusted: a request with seconds that are not a finite number, an index that is not one, an
answer that does not decode, are errors with a reason, never a crash further in.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgpack
import trio

from .proposals import Failure, ProposalError

__all__ = ["MALFORMED_ANSWER", "Following", "answer_body", "error_answer", "follow_coordinator",
           "index", "read_answer", "read_request", "request_body"]

MALFORMED_ANSWER = "the coordinator's answer is malformed"
_MIN_SECONDS = 0.01  # what a request may ask for at least: time to propose and answer at all
_MAX_HOPS = 4  # coordinators followed for one proposal before it is NO_QUORUM

T = TypeVar("T")


class Following(Protocol):
    """What the loop needs of ``ConsensusService`` (its public API)."""

    node_id: bytes

    @property
    def leader(self) -> bytes | None: ...

    async def wait_for_leader(self, deadline: float) -> bool: ...

    async def next_role_change(self) -> None: ...


async def follow_coordinator(consensus: Following, timeout: float,
                             here: Callable[[float], Awaitable[T]],
                             there: Callable[[bytes, float], Awaitable[T | None]] | None) -> T:
    """``here(deadline)`` while this node is the coordinator, else ``there(leader, deadline)``
    (None: it is not, or no longer, the coordinator), following a new coordinator after a
    NOT_LEADER either way. ``there`` None: never send, NOT_LEADER naming the coordinator.

    Raises:
        ProposalError: what ``here`` or ``there`` raised, or NO_QUORUM (no coordinator within
            ``timeout``, or it kept changing).
    """
    deadline = trio.current_time() + timeout
    hops = 0
    while True:
        leader = consensus.leader
        if leader is None:
            if not await consensus.wait_for_leader(deadline):
                raise ProposalError(Failure.NO_QUORUM,
                                    f"no coordinator elected within {timeout:g}s")
            continue
        if leader == consensus.node_id:
            try:
                return await here(deadline)
            except ProposalError as exc:
                if exc.reason is not Failure.NOT_LEADER or there is None:
                    raise
        elif there is None:
            raise ProposalError(Failure.NOT_LEADER, "this node is not the coordinator", leader)
        else:
            hops += 1
            if hops > _MAX_HOPS:
                raise ProposalError(Failure.NO_QUORUM, "the coordinator keeps changing", leader)
            answer = await there(leader, deadline)
            if answer is not None:
                return answer
        with trio.move_on_at(deadline):  # until another coordinator is known
            while consensus.leader in (None, leader):
                await consensus.next_role_change()
        if trio.current_time() >= deadline:
            raise ProposalError(Failure.NO_QUORUM, f"no coordinator took it within {timeout:g}s",
                                consensus.leader)


def request_body(group: bytes | None, command: bytes, seconds: float) -> bytes:
    packed: bytes = msgpack.packb([group, command, seconds], use_bin_type=True)
    return packed


def read_request(body: bytes, *, group: bytes | None, limit: float) -> tuple[bytes, float]:
    """The command of a request for ``group`` and the seconds it may take, within
    ``[0.01, limit]``.

    Raises:
        ValueError: not ``[group, command, seconds]``, another group, a command that is not
            bytes, or seconds that are not a finite number (NaN would reach trio's deadlines).
    """
    try:
        asked_group, command, seconds = msgpack.unpackb(body)
        seconds = float(seconds)
    except (TypeError, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not [group, command, seconds]: {exc}") from None
    if asked_group != group or not isinstance(command, bytes):
        raise ValueError("another group, or a command that is not bytes")
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number, not {seconds!r}")
    return command, min(max(seconds, _MIN_SECONDS), limit)


def error_answer(exc: ProposalError) -> dict[str, object]:
    # The bare detail: the receiver makes its own ProposalError of it (reason, coordinator).
    return {"error": exc.reason.name, "message": exc.detail, "leader": exc.leader}


def answer_body(answer: dict[str, object]) -> bytes:
    packed: bytes = msgpack.packb(answer, use_bin_type=True)
    return packed


def read_answer(raw: bytes, leader: bytes) -> dict[Any, Any] | None:
    """The coordinator's answer when it took the command; None when it says it is not the
    coordinator (the caller follows the new one).

    Raises:
        ProposalError: the coordinator's error (an unknown reason is REFUSED), or TIMEOUT for an
            answer that does not decode: it may have committed the command all the same.
    """
    try:
        answer: Any = msgpack.unpackb(raw)
    except (TypeError, ValueError, msgpack.UnpackException):
        answer = None
    if not isinstance(answer, dict):
        raise ProposalError(Failure.TIMEOUT, MALFORMED_ANSWER, leader)
    if "error" in answer:
        try:
            reason = Failure[str(answer["error"])]
        except KeyError:
            reason = Failure.REFUSED
        if reason is Failure.NOT_LEADER:
            return None
        new_leader = answer.get("leader") if isinstance(answer.get("leader"), bytes) else None
        raise ProposalError(reason, str(answer.get("message", ""))[:500], new_leader)
    return answer


def index(value: Any) -> int:
    """A log index or term from an answer.

    Raises:
        ValueError: not a non-negative integer.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not an index")
    return value
