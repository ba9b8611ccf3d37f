"""What goes into the DHT node core (events) and what comes out of it (actions). No I/O.

Events come from the shell: a message a peer sent, what membership learnt about a node, the
outcome of a liveness check the core asked for, a failed send, and the application's requests.
Actions are what the shell must do: send a message, check a node, persist or delete a record,
and tell the application how its request ended.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeAlias

from bzzz_edge.dht._contact import Contact
from bzzz_edge.dht._lookup import LookupResult
from bzzz_edge.dht._messages import Message
from bzzz_edge.dht._record import Kind, Record
from bzzz_edge.dht._routing import CheckLiveness

__all__ = [
    "Abandoned",
    "Action",
    "CheckLiveness",
    "Departed",
    "Discovered",
    "Event",
    "FindNodes",
    "GetDone",
    "GetRecords",
    "LivenessResult",
    "LookupDone",
    "PutDone",
    "PutRecord",
    "Received",
    "RecordExpired",
    "RecordStored",
    "Send",
    "SendFailed",
]


@dataclass(frozen=True, slots=True)
class Received:
    """``sender`` (authenticated by the transport) sent ``payload``: the msgpack-decoded wire
    form, which the core decodes strictly, or an already decoded ``Message``."""

    sender: Contact
    payload: object


@dataclass(frozen=True, slots=True)
class Discovered:
    """Membership, a static peer or the persisted table names ``contact``: seed the table."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class Departed:
    """Membership holds ``node`` dead or departed: drop it, re-replicate what it held."""

    node: bytes


@dataclass(frozen=True, slots=True)
class LivenessResult:
    """The outcome of a ``CheckLiveness`` the core asked for."""

    node: bytes
    alive: bool


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The shell could not deliver request ``rpc`` to ``node`` (dial failed, connection lost):
    the core counts it as answered with a failure at once, without waiting for the timeout."""

    node: bytes
    rpc: int


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The shell stopped waiting for the answer to request ``rpc`` to ``node`` because the
    operation it served had ended (or its caller went away): the core forgets the RPC, and
    counts nothing against the peer (it did not fail; nobody listened to the end)."""

    node: bytes
    rpc: int


@dataclass(frozen=True, slots=True)
class FindNodes:
    """Application: find the k nodes closest to ``target`` (``op`` names the request)."""

    op: Hashable
    target: bytes


@dataclass(frozen=True, slots=True)
class GetRecords:
    """Application: fetch the records of ``kind`` under ``key`` (FIND_VALUE, GET_PROVIDERS).
    A node holding records under the key answers from its store, unless ``lookup``: then it
    asks the network all the same (``dht find``: what a lookup sees), its own records kept."""

    op: Hashable
    key: bytes
    kind: Kind = Kind.VALUE
    lookup: bool = False


@dataclass(frozen=True, slots=True)
class PutRecord:
    """Application: store ``record`` (signed by us) at the k closest nodes and keep
    republishing it (STORE, ADD_PROVIDER)."""

    op: Hashable
    record: Record


Event: TypeAlias = (Received | Discovered | Departed | LivenessResult | SendFailed | Abandoned
                    | FindNodes | GetRecords | PutRecord)


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` to ``to``; a request the shell fails to deliver is ``SendFailed``."""

    to: Contact
    message: Message


@dataclass(frozen=True, slots=True)
class LookupDone:
    op: Hashable
    target: bytes
    result: LookupResult


@dataclass(frozen=True, slots=True)
class GetDone:
    """The valid records found (the highest version per publisher), newest first."""

    op: Hashable
    key: bytes
    kind: Kind
    records: tuple[Record, ...]
    result: LookupResult


@dataclass(frozen=True, slots=True)
class PutDone:
    """``stored`` nodes accepted the record (ours counts when we are among the closest)."""

    op: Hashable
    key: bytes
    stored: int
    result: LookupResult


@dataclass(frozen=True, slots=True)
class RecordStored:
    """The core now holds ``record`` (new or a newer version): persist it."""

    record: Record


@dataclass(frozen=True, slots=True)
class RecordExpired:
    """The core dropped ``record``: delete it from disk."""

    record: Record


Action: TypeAlias = (Send | CheckLiveness | LookupDone | GetDone | PutDone | RecordStored
                     | RecordExpired)
