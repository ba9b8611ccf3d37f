"""DHT messages and their strict wire form. No I/O.

Requests carry an RPC ID chosen by the requester; the reply echoes it. Wire form: a msgpack
array whose first item is the message tag::

    [1, rpc, target: bin 32]                          FIND_NODE
    [2, rpc, key: bin 32, kind: uint]                 FIND_VALUE (kind PROVIDER: GET_PROVIDERS)
    [3, rpc, record]                                  STORE (kind PROVIDER: ADD_PROVIDER)
    [4, rpc, contacts]                                NODES
    [5, rpc, records, contacts]                       VALUES
    [6, rpc, verdict: uint]                           STORED
    contact = [node: bin 32, host: str, port: uint]

Replies are bounded (``MAX_CONTACTS_PER_REPLY``, ``MAX_RECORDS_PER_REPLY``); a bigger one is
malformed. Decoding checks types and sizes only; signatures are the node core's business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, TypeAlias

from bzzz_edge.dht._config import (
    ID_LEN,
    MAX_CONTACTS_PER_REPLY,
    MAX_HOST_LEN,
    MAX_RECORDS_PER_REPLY,
    MAX_RPC_ID,
)
from bzzz_edge.dht._contact import Contact
from bzzz_edge.dht._record import Kind, Record, decode_record, encode_record
from bzzz_edge.errors import DecodeError

__all__ = [
    "FindNode",
    "FindValue",
    "Message",
    "Nodes",
    "Store",
    "Stored",
    "Values",
    "Verdict",
    "decode_message",
    "encode_message",
]


class Verdict(enum.IntEnum):
    """What a node did with a STORE."""

    STORED = 0
    REFRESHED = 1  #: the same record was held already; its expiry moved
    STALE_VERSION = 2
    INVALID = 3
    STORE_FULL = 4
    PUBLISHER_FULL = 5
    KEY_FULL = 6
    RATE_LIMITED = 7

    @property
    def accepted(self) -> bool:
        return self in (Verdict.STORED, Verdict.REFRESHED)


@dataclass(frozen=True, slots=True)
class FindNode:
    rpc: int
    target: bytes


@dataclass(frozen=True, slots=True)
class FindValue:
    rpc: int
    key: bytes
    kind: Kind


@dataclass(frozen=True, slots=True)
class Store:
    rpc: int
    record: Record


@dataclass(frozen=True, slots=True)
class Nodes:
    rpc: int
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Values:
    rpc: int
    records: tuple[Record, ...]
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Stored:
    rpc: int
    verdict: Verdict


Message: TypeAlias = FindNode | FindValue | Store | Nodes | Values | Stored
Request: TypeAlias = FindNode | FindValue | Store
Reply: TypeAlias = Nodes | Values | Stored


def _contact_items(contacts: tuple[Contact, ...]) -> list[list[Any]]:
    return [[c.node, c.host, c.port] for c in contacts]


def encode_message(message: Message) -> list[Any]:
    """The msgpack-ready wire form of ``message``."""
    if isinstance(message, FindNode):
        return [1, message.rpc, message.target]
    if isinstance(message, FindValue):
        return [2, message.rpc, message.key, int(message.kind)]
    if isinstance(message, Store):
        return [3, message.rpc, encode_record(message.record)]
    if isinstance(message, Nodes):
        return [4, message.rpc, _contact_items(message.contacts)]
    if isinstance(message, Values):
        return [5, message.rpc, [encode_record(r) for r in message.records],
                _contact_items(message.contacts)]
    return [6, message.rpc, int(message.verdict)]


def _id(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != ID_LEN:
        raise DecodeError(f"{what}: expected {ID_LEN} bytes")
    return value


def _uint(value: object, what: str, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise DecodeError(f"{what}: expected an int in [0, {maximum}]")
    return value


def _contacts(value: object) -> tuple[Contact, ...]:
    if type(value) is not list or len(value) > MAX_CONTACTS_PER_REPLY:
        raise DecodeError(f"contacts: expected an array of at most {MAX_CONTACTS_PER_REPLY}")
    out: dict[bytes, Contact] = {}
    for item in value:
        if type(item) is not list or len(item) != 3:
            raise DecodeError("contact: expected [node, host, port]")
        node = _id(item[0], "contact node")
        host = item[1]
        if type(host) is not str or not 0 < len(host) <= MAX_HOST_LEN:
            raise DecodeError(f"contact host: expected str of 1 to {MAX_HOST_LEN} characters")
        out.setdefault(node, Contact(node, host, _uint(item[2], "contact port", 65535)))
    return tuple(out.values())


def _kind(value: object) -> Kind:
    try:
        return Kind(_uint(value, "kind", 255))
    except ValueError:
        raise DecodeError(f"kind: unknown kind {value}") from None


_ARITY = {1: 3, 2: 4, 3: 3, 4: 3, 5: 4, 6: 3}  # items of each message, by tag


def decode_message(items: object) -> Message:
    """Decode a message's wire form strictly.

    Raises:
        DecodeError: unknown tag, wrong arity, or a malformed field (named in the message).
    """
    if type(items) is not list or len(items) < 3:
        raise DecodeError("dht message: expected an array [tag, rpc, ...]")
    tag = _uint(items[0], "dht message tag", 255)
    rpc = _uint(items[1], "rpc", MAX_RPC_ID)
    arity = _ARITY.get(tag)
    if arity is None:
        raise DecodeError(f"dht message: unknown tag {tag}")
    if len(items) != arity:
        raise DecodeError(f"dht message {tag}: {len(items)} items, expected {arity}")
    if tag == 1:
        return FindNode(rpc, _id(items[2], "find_node target"))
    if tag == 2:
        return FindValue(rpc, _id(items[2], "find_value key"), _kind(items[3]))
    if tag == 3:
        return Store(rpc, decode_record(items[2]))
    if tag == 4:
        return Nodes(rpc, _contacts(items[2]))
    if tag == 5:
        records = items[2]
        if type(records) is not list or len(records) > MAX_RECORDS_PER_REPLY:
            raise DecodeError(f"records: expected an array of at most {MAX_RECORDS_PER_REPLY}")
        return Values(rpc, tuple(decode_record(r) for r in records), _contacts(items[3]))
    try:
        return Stored(rpc, Verdict(_uint(items[2], "verdict", 255)))
    except ValueError:
        raise DecodeError(f"verdict: unknown verdict {items[2]}") from None
