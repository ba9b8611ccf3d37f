"""Membership wire messages: records, and strict conversion to and from plain msgpack-able values.

No I/O. The transport frames, encrypts and msgpack-encodes; this module only maps between the
typed records below and nested lists of ints, bytes, strings, bools and string-keyed dicts.
Every message is a list ``[kind, version, *fields]``; every piggybacked update is a list
``[kind, *fields]``. Decoding checks every field's type and range and raises ``DecodeError``
naming the offending field (``ping.updates[2].incarnation: ...``). A well-formed message of a
kind or version this node does not know decodes to ``UnknownMessage``, which callers ignore and
count: newer peers must be able to add message types without breaking older ones.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from bzzz_edge.errors import DecodeError
from bzzz_edge.wire.constants import NODE_ID_LEN

__all__ = [
    "Ack",
    "Address",
    "AliveUpdate",
    "DeadUpdate",
    "Gossip",
    "Message",
    "Meta",
    "MetaValue",
    "Nack",
    "Ping",
    "PingReq",
    "Status",
    "SuspectUpdate",
    "Sync",
    "SyncEntry",
    "UnknownMessage",
    "Update",
    "check_address",
    "check_meta",
    "check_node_id",
    "decode_message",
    "encode_message",
    "freeze_meta",
]

#: Version of every membership message kind defined here.
MESSAGE_VERSION: Final = 1
MAX_HOST_LEN: Final = 253
MAX_META_ENTRIES: Final = 16
MAX_META_KEY_LEN: Final = 64
MAX_META_VALUE_LEN: Final = 256
#: Most piggybacked updates one message may carry (the sender's budget is far smaller).
MAX_UPDATES: Final = 256
#: Most member entries in one full-state exchange.
MAX_SYNC_ENTRIES: Final = 4096
SEQ_MODULUS: Final = 2**32
MAX_INCARNATION: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# Message kinds on the wire.
_PING, _PING_REQ, _ACK, _NACK, _GOSSIP, _SYNC = 1, 2, 3, 4, 5, 6
# Update kinds on the wire.
_U_ALIVE, _U_SUSPECT, _U_DEAD = 1, 2, 3


class Status(enum.IntEnum):
    """A member's state; the values are the wire codes."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4


MetaValue: TypeAlias = str | bytes | int | bool
Meta: TypeAlias = Mapping[str, MetaValue]


@dataclass(frozen=True, slots=True)
class Address:
    """Where a member accepts connections."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class AliveUpdate:
    """News: ``node`` is alive at ``incarnation``, reachable at ``address``."""

    node: bytes
    incarnation: int
    address: Address
    meta: Meta


@dataclass(frozen=True, slots=True)
class SuspectUpdate:
    """News: ``source`` suspects ``node`` at ``incarnation`` has failed."""

    node: bytes
    incarnation: int
    source: bytes


@dataclass(frozen=True, slots=True)
class DeadUpdate:
    """News: ``source`` declared ``node`` dead at ``incarnation``; a node's own is a leave."""

    node: bytes
    incarnation: int
    source: bytes

    @property
    def left(self) -> bool:
        return self.source == self.node


Update: TypeAlias = AliveUpdate | SuspectUpdate | DeadUpdate


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: bytes
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to ping ``target`` and relay its ack (or a nack) under ``seq``."""

    seq: int
    target: bytes
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """From a ping-req relay: the target did not answer me in time (so I, the relay, am fine)."""

    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Gossip:
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """One member as the sender sees it, in a full-state exchange."""

    node: bytes
    incarnation: int
    status: Status
    address: Address
    meta: Meta


@dataclass(frozen=True, slots=True)
class Sync:
    """Full-state exchange (push-pull): a request is answered by a reply with the same shape."""

    reply: bool
    entries: tuple[SyncEntry, ...]


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A well-formed message of a kind or version this node does not speak."""

    kind: int
    version: int


Message: TypeAlias = Ping | PingReq | Ack | Nack | Gossip | Sync

_EMPTY_META: Final[Meta] = MappingProxyType({})


def freeze_meta(meta: Meta | None) -> Meta:
    """A read-only copy of ``meta``, so records that hold it stay immutable."""
    if not meta:
        return _EMPTY_META
    return MappingProxyType(dict(meta))


# --- encoding -----------------------------------------------------------------------------------


def _encode_update(update: Update) -> list[object]:
    if isinstance(update, AliveUpdate):
        addr = update.address
        return [_U_ALIVE, update.node, update.incarnation, addr.host, addr.port, dict(update.meta)]
    kind = _U_SUSPECT if isinstance(update, SuspectUpdate) else _U_DEAD
    return [kind, update.node, update.incarnation, update.source]


def _encode_updates(updates: tuple[Update, ...]) -> list[object]:
    return [_encode_update(u) for u in updates]


def encode_message(message: Message) -> list[object]:
    """The plain, msgpack-able form of ``message``."""
    if isinstance(message, Ping | PingReq):
        kind = _PING if isinstance(message, Ping) else _PING_REQ
        updates = _encode_updates(message.updates)
        return [kind, MESSAGE_VERSION, message.seq, message.target, updates]
    if isinstance(message, Ack | Nack):
        kind = _ACK if isinstance(message, Ack) else _NACK
        return [kind, MESSAGE_VERSION, message.seq, _encode_updates(message.updates)]
    if isinstance(message, Gossip):
        return [_GOSSIP, MESSAGE_VERSION, _encode_updates(message.updates)]
    entries = [
        [e.node, e.incarnation, int(e.status), e.address.host, e.address.port, dict(e.meta)]
        for e in message.entries
    ]
    return [_SYNC, MESSAGE_VERSION, message.reply, entries]


# --- field checks (shared with the core, which validates what the application hands it) --------


def _fail(path: str, what: str, value: object) -> DecodeError:
    shown = type(value).__name__ if isinstance(value, list | dict | bytes | str) else repr(value)
    return DecodeError(f"{path}: expected {what}, got {shown}")


def _int(value: object, path: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(path, f"an int in [{lo}, {hi}]", value)
    return value


def _list(value: object, path: str, length: int | None = None, max_len: int = 0) -> list[object]:
    if not isinstance(value, list | tuple):
        raise _fail(path, "a list", value)
    if length is not None and len(value) != length:
        raise DecodeError(f"{path}: expected {length} fields, got {len(value)}")
    if max_len and len(value) > max_len:
        raise DecodeError(f"{path}: at most {max_len} items allowed, got {len(value)}")
    return list(value)


def check_node_id(value: object, path: str = "node") -> bytes:
    """Return ``value`` if it is a node ID; raise ``DecodeError`` otherwise."""
    if not isinstance(value, bytes) or len(value) != NODE_ID_LEN:
        raise _fail(path, f"a node ID of {NODE_ID_LEN} bytes", value)
    return value


def _host(value: object, path: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_HOST_LEN:
        raise _fail(path, f"a host name of 1 to {MAX_HOST_LEN} characters", value)
    return value


def check_address(host: object, port: object, path: str = "address") -> Address:
    """Build an ``Address`` from untrusted parts; raise ``DecodeError`` if they are invalid."""
    return Address(_host(host, f"{path}.host"), _int(port, f"{path}.port", 0, 65535))


def check_meta(value: object, path: str = "meta") -> Meta:
    """Return a frozen copy of untrusted metadata; raise ``DecodeError`` if it breaks a limit."""
    if not isinstance(value, Mapping):
        raise _fail(path, "a map", value)
    if len(value) > MAX_META_ENTRIES:
        raise DecodeError(f"{path}: at most {MAX_META_ENTRIES} entries allowed, got {len(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_META_KEY_LEN:
            raise _fail(f"{path} key", f"a string key of 1 to {MAX_META_KEY_LEN} characters", key)
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            _int(item, f"{path}[{key!r}]", _INT64_MIN, _INT64_MAX)
        elif isinstance(item, str | bytes):
            if len(item) > MAX_META_VALUE_LEN:
                raise DecodeError(
                    f"{path}[{key!r}]: at most {MAX_META_VALUE_LEN} characters or bytes allowed, "
                    f"got {len(item)}"
                )
        else:
            raise _fail(f"{path}[{key!r}]", "a str, bytes, int or bool", item)
    return freeze_meta(value)


# --- decoding -----------------------------------------------------------------------------------


def _decode_update(value: object, path: str) -> Update:
    fields = _list(value, path)
    if not fields:
        raise DecodeError(f"{path}: empty update")
    kind = _int(fields[0], f"{path}.kind", _U_ALIVE, _U_DEAD)
    if kind == _U_ALIVE:
        _list(fields, path, 6)
        return AliveUpdate(
            node=check_node_id(fields[1], f"{path}.node"),
            incarnation=_int(fields[2], f"{path}.incarnation", 0, MAX_INCARNATION),
            address=check_address(fields[3], fields[4], f"{path}.address"),
            meta=check_meta(fields[5], f"{path}.meta"),
        )
    _list(fields, path, 4)
    cls = SuspectUpdate if kind == _U_SUSPECT else DeadUpdate
    return cls(
        node=check_node_id(fields[1], f"{path}.node"),
        incarnation=_int(fields[2], f"{path}.incarnation", 0, MAX_INCARNATION),
        source=check_node_id(fields[3], f"{path}.source"),
    )


def _decode_updates(value: object, path: str) -> tuple[Update, ...]:
    items = _list(value, path, max_len=MAX_UPDATES)
    return tuple(_decode_update(item, f"{path}[{i}]") for i, item in enumerate(items))


def _decode_entry(value: object, path: str) -> SyncEntry:
    fields = _list(value, path, 6)
    return SyncEntry(
        node=check_node_id(fields[0], f"{path}.node"),
        incarnation=_int(fields[1], f"{path}.incarnation", 0, MAX_INCARNATION),
        status=Status(_int(fields[2], f"{path}.status", Status.ALIVE, Status.LEFT)),
        address=check_address(fields[3], fields[4], f"{path}.address"),
        meta=check_meta(fields[5], f"{path}.meta"),
    )


def _decode_sync(fields: list[object]) -> Sync:
    _list(fields, "sync", 4)
    if not isinstance(fields[2], bool):
        raise _fail("sync.reply", "a bool", fields[2])
    items = _list(fields[3], "sync.entries", max_len=MAX_SYNC_ENTRIES)
    entries = tuple(_decode_entry(item, f"sync.entries[{i}]") for i, item in enumerate(items))
    return Sync(reply=fields[2], entries=entries)


def decode_message(value: object) -> Message | UnknownMessage:
    """Decode a msgpack-decoded value into a message record.

    Raises:
        DecodeError: the value is not a well-formed membership message; the text names the
            field that is wrong.
    """
    fields = _list(value, "message")
    if len(fields) < 2:
        raise DecodeError(f"message: expected at least kind and version, got {len(fields)} fields")
    kind = _int(fields[0], "message.kind", 0, _INT64_MAX)
    version = _int(fields[1], "message.version", 0, _INT64_MAX)
    if version != MESSAGE_VERSION or not _PING <= kind <= _SYNC:
        return UnknownMessage(kind, version)
    if kind in (_PING, _PING_REQ):
        name = "ping" if kind == _PING else "ping_req"
        _list(fields, name, 5)
        seq = _int(fields[2], f"{name}.seq", 0, SEQ_MODULUS - 1)
        target = check_node_id(fields[3], f"{name}.target")
        updates = _decode_updates(fields[4], f"{name}.updates")
        return Ping(seq, target, updates) if kind == _PING else PingReq(seq, target, updates)
    if kind in (_ACK, _NACK):
        name = "ack" if kind == _ACK else "nack"
        _list(fields, name, 4)
        seq = _int(fields[2], f"{name}.seq", 0, SEQ_MODULUS - 1)
        updates = _decode_updates(fields[3], f"{name}.updates")
        return Ack(seq, updates) if kind == _ACK else Nack(seq, updates)
    if kind == _GOSSIP:
        _list(fields, "gossip", 3)
        return Gossip(_decode_updates(fields[2], "gossip.updates"))
    return _decode_sync(fields)
