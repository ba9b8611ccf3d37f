"""What goes into the Raft core (events) and what comes out (actions). No I/O.

The persistence contract: ``handle`` and ``tick`` return actions in an order that matters.
The shell performs them strictly in list order, and a ``Persist`` must be durable (synced)
before any action after it in the list is performed: every message whose content depends on
the term, vote or log entries (a vote granted, an append acknowledged, a leader's appends)
comes after the ``Persist`` that records them. The shell may merge consecutive ``Persist``
actions into one write transaction (group commit), as long as the write completes before the
next non-``Persist`` action. Actions before a ``Persist`` may be performed while it is being
written. ``Apply`` only ever names committed entries.

Delaying a send is always allowed (the network may delay it anyway), so a shell may also take
the actions of several events (say, every ``Propose`` that queued up), write all their
``Persist`` actions in one transaction, and then perform the rest in order: one sync for a
batch. A crash between a ``Persist`` and the sends after it only loses those sends.

Write-behind (a core made with ``write_behind=True``): the shell may also finish a leader's
``Persist`` of new entries (entries only, no term, vote, truncation or snapshot) in the
background, performing the actions after it at once, as long as the node is leader in the same
term throughout and every other ``Persist`` waits for the background ones to finish (the
writes stay in order); it reports each such write with ``Persisted``. Until then the leader
does not count its own copy of those entries toward a majority, so an entry is committed only
when a majority holds it durably, the leader or not (dissertation 10.2.1): followers' answers
are no longer held up by the leader's own sync.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from bzzz_edge.consensus._messages import Entry, Message, Snapshot

__all__ = [
    "Accepted",
    "Action",
    "Apply",
    "ChangeMember",
    "Event",
    "LeaderLost",
    "Persist",
    "Persisted",
    "Propose",
    "ProposeMany",
    "Received",
    "Rejected",
    "Rejection",
    "RestoreSnapshot",
    "Role",
    "RoleChanged",
    "Send",
    "SnapshotTaken",
    "State",
    "TakeSnapshot",
    "TransferLeadership",
]


class Role(enum.Enum):
    """A member's role in a configuration change."""

    VOTER = "voter"
    LEARNER = "learner"
    REMOVED = "removed"


class State(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Rejection(enum.Enum):
    """Why a proposal or change was refused."""

    NOT_LEADER = "not leader"
    TRANSFERRING = "leadership transfer in progress"
    TOO_LARGE = "command too large"
    BACKLOG = "too many uncommitted proposals"
    CHANGE_PENDING = "a configuration change is not committed yet"
    INVALID_CHANGE = "configuration change not allowed"


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """``sender`` (authenticated by the transport) sent ``payload`` (msgpack-decoded)."""

    sender: bytes
    payload: object


@dataclass(frozen=True, slots=True)
class Propose:
    """Append ``command``; ``ref`` (chosen by the shell) comes back in Accepted/Rejected."""

    ref: int
    command: bytes


@dataclass(frozen=True, slots=True)
class ProposeMany:
    """Several ``Propose`` at once (those that queued up while the shell was busy): all
    appended, then one append per follower carries them, where a lone ``Propose`` each would
    send the first alone."""

    proposals: tuple[Propose, ...]


@dataclass(frozen=True, slots=True)
class ChangeMember:
    """Make ``node`` a voter, a learner, or remove it (one server at a time)."""

    ref: int
    node: bytes
    role: Role


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    """Hand leadership to ``target`` (None: the most up-to-date voter), e.g. on SIGTERM."""

    target: bytes | None = None


@dataclass(frozen=True, slots=True)
class LeaderLost:
    """``node`` looks gone: membership declared it dead, or our connection to it closed (a
    kill -9 closes it at once). If it is our leader, forget it and start an election soon; a
    leader that is in fact alive loses nothing, since the voters that still hear it refuse the
    pre-vote. If it is the candidate we voted for in this term, its rivals may poll us again.
    Any other node: nothing."""

    node: bytes


@dataclass(frozen=True, slots=True)
class SnapshotTaken:
    """The shell's answer to ``TakeSnapshot``: the state machine's bytes at ``index``."""

    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Persisted:
    """A write-behind ``Persist`` is durable: the log through ``index`` (whose entry has
    ``term``) is on disk (see the module docstring)."""

    index: int
    term: int


Event: TypeAlias = (
    Received | Propose | ProposeMany | ChangeMember | TransferLeadership | LeaderLost
    | SnapshotTaken | Persisted
)


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist:
    """Make durable, in this order: store ``snapshot`` (replacing the previous one); delete
    entries from ``truncate_from`` on; delete entries up to ``compact_through``; append
    ``entries``; store ``term`` and ``vote``. Complete it before the next action."""

    term: int
    vote: bytes | None
    entries: tuple[Entry, ...] = ()
    truncate_from: int | None = None
    compact_through: int | None = None
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class Send:
    to: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class Apply:
    """Committed entries, in order, to apply to the state machine (no-ops and configurations
    included, so the shell can track the applied index)."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class RestoreSnapshot:
    """Replace the state machine with ``snapshot`` (a leader sent it; it is already stored)."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class TakeSnapshot:
    """Serialise the state machine as of applied ``index`` and hand it in as SnapshotTaken."""

    index: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """Proposal ``ref`` is in the log at ``index`` in ``term``; it is committed when an
    ``Apply`` carries an entry with that index and term (another term there: it was lost)."""

    ref: int
    index: int
    term: int


@dataclass(frozen=True, slots=True)
class Rejected:
    ref: int
    reason: Rejection
    leader: bytes | None


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This node's state, term or known leader changed."""

    state: State
    term: int
    leader: bytes | None


Action: TypeAlias = (
    Persist | Send | Apply | RestoreSnapshot | TakeSnapshot | Accepted | Rejected | RoleChanged
)
