"""What goes into the membership core (events) and what comes out of it (actions). No I/O.

Events come from the driver: a message a peer sent, or a request from the application (join a
node discovery found, a connection that dropped, leave, new local metadata). Actions are what
the driver must do: send a message, tell the application that a member changed, or charge a
peer that sent what no honest member sends (``Penalise``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from bzzz_edge.membership._messages import Address, Message, Meta, Status

__all__ = [
    "Action",
    "ConnectionLost",
    "Event",
    "ForceLeave",
    "Join",
    "Leave",
    "MemberEvent",
    "MemberForgotten",
    "Offence",
    "Penalise",
    "Received",
    "Send",
    "UpdateSelf",
]


@dataclass(frozen=True, slots=True)
class Received:
    """``sender`` (authenticated by the transport) sent ``payload``.

    ``payload`` is the msgpack-decoded value, which the core decodes strictly; a driver that
    already holds a decoded ``Message`` record may pass that instead.
    """

    sender: bytes
    payload: object


@dataclass(frozen=True, slots=True)
class Join:
    """The application found ``node`` at ``address`` (mDNS, a static peer, an inbound dial).

    The core exchanges full state with it unless it already counts it as alive.
    """

    node: bytes
    address: Address


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The transport lost its connection to ``node``: a hint to probe it now, not a verdict."""

    node: bytes


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave the cluster gracefully: tell every member, then stop probing."""


@dataclass(frozen=True, slots=True)
class UpdateSelf:
    """New address and/or metadata for this node; spread with a higher incarnation."""

    address: Address | None = None
    meta: Meta | None = None


@dataclass(frozen=True, slots=True)
class ForceLeave:
    """An operator retires ``node`` (dead or gone for good): mark it departed on its behalf.

    As Serf's force-leave: the core records and gossips ``node``'s own leave message at the
    incarnation it knows, so every member drops it; a node that is in fact alive refutes it
    with a higher incarnation, as it would any news of its death.
    """

    node: bytes


Event: TypeAlias = Received | Join | ConnectionLost | Leave | UpdateSelf | ForceLeave


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to node ``to``; ``address`` is where it listens, when known."""

    to: bytes
    message: Message
    address: Address | None = None


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A member changed status, address or metadata, or this node's incarnation changed.

    ``old_status`` is None for a member seen for the first time. For this node itself an event
    is emitted whenever its incarnation changes, so the application can persist it and restart
    above it. ``verified`` says the member has sent us something itself; a member known only
    from others' news may be a rumour (or an attacker's invention): it is forgotten
    (``MemberForgotten``) if it never speaks up, and should not be persisted. When it first
    speaks up an event with ``verified=True`` and an unchanged status follows.
    """

    node: bytes
    old_status: Status | None
    new_status: Status
    incarnation: int
    address: Address
    meta: Meta
    verified: bool = False


@dataclass(frozen=True, slots=True)
class MemberForgotten:
    """A dead or departed member's tombstone expired; the application may drop it too."""

    node: bytes


class Offence(enum.Enum):
    """What a peer did that no honest member does."""

    #: A message that does not decode: a field out of range, metadata or a full state beyond
    #: the limits, a list too long.
    MALFORMED = "malformed"
    #: News that raises a member's incarnation implausibly far (``_limits``).
    IMPLAUSIBLE_INCARNATION = "implausible-incarnation"


@dataclass(frozen=True, slots=True)
class Penalise:
    """``peer`` sent a message showing ``offence``: one strike against it, once per message.

    The message itself has been refused (and counted); the driver charges the strike to the
    transport's guard, which bans a peer with too many.
    """

    peer: bytes
    offence: Offence


Action: TypeAlias = Send | MemberEvent | MemberForgotten | Penalise
