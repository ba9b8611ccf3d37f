"""The task record, its states, the field bounds and the reasons a command is refused. No I/O.

A task is announced (state ``announced``), claimed by exactly one node (``claimed``), worked on
(``in_progress`` after its first progress report) and finished (``completed`` or ``failed``).
A released task (its owner gave it up, died, or missed its deadline) is ``reassigned``: it
has no owner and may be claimed again. ``deadline`` is the number of seconds an owner has from
its claim to finish; each claim starts it afresh.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Final

__all__ = [
    "ACTIVE",
    "CLAIMABLE",
    "FINISHED",
    "HISTORY_KEPT",
    "LIMITS",
    "HistoryItem",
    "Limits",
    "Reason",
    "State",
    "Task",
]


class State(enum.Enum):
    ANNOUNCED = "announced"
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    REASSIGNED = "reassigned"


CLAIMABLE: Final = frozenset({State.ANNOUNCED, State.REASSIGNED})
ACTIVE: Final = frozenset({State.CLAIMED, State.IN_PROGRESS})
FINISHED: Final = frozenset({State.COMPLETED, State.FAILED})


class Reason(enum.Enum):
    """Why the state machine refused a command (the same on every node)."""

    MALFORMED = "malformed"  # not a well-formed command of a known version
    TOO_LONG = "too_long"  # a field over its bound (``Limits``)
    DUPLICATE = "duplicate"  # announce: the ID is taken
    FULL = "full"  # announce, progress: ``Limits.max_tasks`` tasks or ``max_bytes`` held
    UNKNOWN_TASK = "unknown_task"
    FINISHED = "finished"  # completed or failed already
    OWNED = "owned"  # claim: another node holds it (the claimant lost)
    NOT_OWNER = "not_owner"  # progress/complete/fail/release by a node that does not hold it
    NOT_CLAIMED = "not_claimed"  # progress/complete/fail/release of a task nobody holds
    ROLE = "role"  # claim: the claimant lacks the task's role
    CAPABILITIES = "capabilities"  # claim: the claimant lacks a required capability
    CAPACITY = "capacity"  # claim: the claimant holds as many tasks as its capacity
    SCOPE = "scope"  # claim: a task scope is outside the claimant's role patterns
    STALE = "stale"  # claim/release: the task changed hands since it was decided
    FORGED = "forged"  # not signed by the node it names (for this network)
    REPLAY = "replay"  # a command applied already, or older than one applied (its ``seq``)
    NOT_COORDINATOR = "not_coordinator"  # release/expire: not signed by the coordinator


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on every field; a command over one is refused with ``Reason.TOO_LONG``."""

    id: int = 64
    title: int = 200
    description: int = 4000
    role: int = 64
    capability: int = 64
    capabilities: int = 32
    scope: int = 256
    scopes: int = 32
    address: int = 1024
    text: int = 1000  # progress text, failure reason
    roles: int = 16  # in a claimant's profile
    patterns: int = 64  # per role in a claimant's profile
    max_tasks: int = 100_000
    max_bytes: int = 256 * 1024 * 1024  # of all tasks together, as ``Task.footprint`` counts
    max_priority: int = 1_000_000
    max_deadline: float = 365 * 86400.0


LIMITS: Final = Limits()
HISTORY_KEPT: Final = 32  # the most recent events of a task; older ones are dropped


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One event of a task: the log index that decided it, the proposer's wall time, what
    happened, which node, and a text (progress, failure reason, why released)."""

    index: int
    at: float
    event: str
    node: bytes
    text: str = ""

    def encode(self) -> list[Any]:
        return [self.index, self.at, self.event, self.node, self.text]

    @classmethod
    def decode(cls, raw: Any) -> HistoryItem:
        index, at, event, node, text = raw
        if not (isinstance(index, int) and isinstance(at, int | float) and isinstance(event, str)
                and isinstance(node, bytes) and isinstance(text, str)):
            raise ValueError("history item: wrong field types")
        return cls(index, float(at), event, node, text)


@dataclass(frozen=True, slots=True)
class Task:
    """One task as every node holds it after applying the log."""

    id: str
    address: str
    title: str
    description: str = ""
    role: str = ""
    capabilities: tuple[str, ...] = ()
    priority: int = 0
    scopes: tuple[str, ...] = ()
    deadline: float | None = None
    state: State = State.ANNOUNCED
    owner: bytes | None = None
    announced_by: bytes = b""
    announced_at: float = 0.0
    claimed_at: float | None = None
    result: str | None = None
    updated: int = 0  # the log index of the last change
    history: tuple[HistoryItem, ...] = field(default=())
    claims: int = 0  # how many claims of it were decided (a claim or release names its own)
    seq: int = 0  # the owner's ``seq`` of its last command on it since its claim

    @property
    def last_at(self) -> float:
        """The latest proposer time of its announce and its events (what expiry goes by)."""
        return max(self.announced_at, self.history[-1].at if self.history else 0.0)

    def with_event(self, item: HistoryItem, **changes: Any) -> Task:
        """A copy with ``changes`` and ``item`` appended to the (bounded) history."""
        history = (*self.history, item)[-HISTORY_KEPT:]
        return replace(self, history=history, updated=item.index, **changes)

    def footprint(self) -> int:
        """About how many bytes the task takes in its msgpack form (a close upper bound for
        the variable fields, a fixed allowance for the rest): what ``Limits.max_bytes``
        bounds, the same on every node."""
        size = 400 + sum(len(s.encode()) for s in (self.id, self.address, self.title,
                                                   self.description, self.role,
                                                   self.result or ""))
        size += sum(len(s.encode()) + 3 for s in (*self.capabilities, *self.scopes))
        return size + sum(96 + len(h.text.encode()) for h in self.history)

    def due_at(self) -> float | None:
        """When the owner's deadline passes (wall clock), or None."""
        if self.deadline is None or self.claimed_at is None or self.state not in ACTIVE:
            return None
        return self.claimed_at + self.deadline

    def encode(self) -> dict[str, Any]:
        """The task's msgpack form (in snapshots and the store)."""
        return {"id": self.id, "address": self.address, "title": self.title,
                "description": self.description, "role": self.role,
                "capabilities": list(self.capabilities), "priority": self.priority,
                "scopes": list(self.scopes), "deadline": self.deadline,
                "state": self.state.value, "owner": self.owner,
                "announced_by": self.announced_by, "announced_at": self.announced_at,
                "claimed_at": self.claimed_at, "result": self.result, "updated": self.updated,
                "history": [h.encode() for h in self.history], "claims": self.claims,
                "seq": self.seq}

    @classmethod
    def decode(cls, raw: Any) -> Task:
        """Raises: ValueError, TypeError or KeyError for anything not a task's form."""
        if not isinstance(raw, dict):
            raise ValueError("task: not a map")
        task = cls(
            id=_str(raw["id"]), address=_str(raw["address"]), title=_str(raw["title"]),
            description=_str(raw["description"]), role=_str(raw["role"]),
            capabilities=tuple(_str(c) for c in raw["capabilities"]),
            priority=_int(raw["priority"]), scopes=tuple(_str(s) for s in raw["scopes"]),
            deadline=_opt_float(raw["deadline"]), state=State(raw["state"]),
            owner=_opt_bytes(raw["owner"]), announced_by=_bytes(raw["announced_by"]),
            announced_at=float(raw["announced_at"]), claimed_at=_opt_float(raw["claimed_at"]),
            result=None if raw["result"] is None else _str(raw["result"]),
            updated=_int(raw["updated"]),
            history=tuple(HistoryItem.decode(h) for h in raw["history"]),
            claims=_int(raw.get("claims", 0)), seq=_int(raw.get("seq", 0)))
        return task


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("expected bytes")
    return value


def _opt_bytes(value: Any) -> bytes | None:
    return None if value is None else _bytes(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)
