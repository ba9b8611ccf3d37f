"""Pub/sub control messages: the record and its strict msgpack codec. No I/O.

One control message (envelope type ``PUBSUB_CONTROL``, "pubsub" v1, a direct message: the
secure channel authenticates its sender) carries any of::

    [subscriptions: [[topic: str, subscribed: bool], ...],
     graft: [topic, ...],            # "add me to your mesh of these topics"
     prune: [topic, ...],            # "take me out of it"
     ihave: [[topic, [id: bin 16, ...]], ...],   # recent messages I hold
     iwant: [id: bin 16, ...],       # send me these
     neighbours: [node_id: bin 32, ...] | nil]   # my connected peers (full replacement)

The decoder refuses anything else with a ``DecodeError`` naming the field, and bounds every
list (``MAX_*`` below), so one message cannot make us allocate without limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from bzzz_edge.errors import DecodeError
from bzzz_edge.wire.constants import MAX_TOPIC_LEN, MESSAGE_ID_LEN, NODE_ID_LEN
from bzzz_edge.wire.envelope import DirectMessage, unpack_strict
from bzzz_edge.wire.types import PUBSUB_CONTROL

__all__ = [
    "MAX_CONTROL_IDS",
    "MAX_CONTROL_TOPICS",
    "MAX_NEIGHBOURS",
    "Control",
    "decode_control",
    "encode_control",
]

#: Topics named in one control message (subscriptions, grafts, prunes, IHAVE groups), each.
MAX_CONTROL_TOPICS = 512
#: Message IDs in one control message (IHAVE and IWANT together).
MAX_CONTROL_IDS = 10_000
#: Node IDs in one neighbour list.
MAX_NEIGHBOURS = 1024


@dataclass(frozen=True, slots=True)
class Control:
    subscriptions: tuple[tuple[str, bool], ...] = ()
    graft: tuple[str, ...] = ()
    prune: tuple[str, ...] = ()
    ihave: tuple[tuple[str, tuple[bytes, ...]], ...] = ()
    iwant: tuple[bytes, ...] = ()
    neighbours: tuple[bytes, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.graft or self.prune or self.ihave or self.iwant
                    or self.neighbours is not None)


def encode_control(control: Control) -> DirectMessage:
    """The envelope carrying ``control`` (encode it with ``encode_envelope``)."""
    body = msgpack.packb(
        [
            [list(s) for s in control.subscriptions],
            list(control.graft),
            list(control.prune),
            [[topic, list(ids)] for topic, ids in control.ihave],
            list(control.iwant),
            None if control.neighbours is None else list(control.neighbours),
        ],
        use_bin_type=True,
    )
    return DirectMessage(PUBSUB_CONTROL.name, PUBSUB_CONTROL.version, body)


def _list(value: object, what: str, limit: int) -> list[Any]:
    if type(value) is not list:
        raise DecodeError(f"pubsub control field '{what}': expected array, "
                          f"got {type(value).__name__}")
    if len(value) > limit:
        raise DecodeError(f"pubsub control field '{what}': {len(value)} items, at most {limit}")
    return value


def _topic(value: object, what: str) -> str:
    if type(value) is not str:
        raise DecodeError(f"pubsub control field '{what}': topic must be str, "
                          f"got {type(value).__name__}")
    if not 0 < len(value.encode("utf-8")) <= MAX_TOPIC_LEN:
        raise DecodeError(f"pubsub control field '{what}': topic length outside "
                          f"[1, {MAX_TOPIC_LEN}] bytes")
    return value


def _ids(value: object, what: str, size: int, limit: int) -> tuple[bytes, ...]:
    items = _list(value, what, limit)
    for item in items:
        if type(item) is not bytes or len(item) != size:
            raise DecodeError(f"pubsub control field '{what}': expected bin {size}")
    return tuple(items)


def decode_control(body: bytes) -> Control:
    """Decode a control message body strictly.

    Raises:
        DecodeError: malformed msgpack, a wrong shape or type, or a list past its bound.
    """
    items = unpack_strict(body, what="pubsub control")
    fields = _list(items, "message", 6)
    if len(fields) != 6:
        raise DecodeError(f"pubsub control: {len(fields)} fields, expected 6")
    subs = []
    for entry in _list(fields[0], "subscriptions", MAX_CONTROL_TOPICS):
        pair = _list(entry, "subscriptions", 2)
        if len(pair) != 2 or type(pair[1]) is not bool:
            raise DecodeError("pubsub control field 'subscriptions': expected [topic, bool]")
        subs.append((_topic(pair[0], "subscriptions"), pair[1]))
    graft = tuple(_topic(t, "graft") for t in _list(fields[1], "graft", MAX_CONTROL_TOPICS))
    prune = tuple(_topic(t, "prune") for t in _list(fields[2], "prune", MAX_CONTROL_TOPICS))
    ihave = []
    budget = MAX_CONTROL_IDS
    for entry in _list(fields[3], "ihave", MAX_CONTROL_TOPICS):
        pair = _list(entry, "ihave", 2)
        if len(pair) != 2:
            raise DecodeError("pubsub control field 'ihave': expected [topic, [ids]]")
        ids = _ids(pair[1], "ihave", MESSAGE_ID_LEN, budget)
        budget -= len(ids)
        ihave.append((_topic(pair[0], "ihave"), ids))
    iwant = _ids(fields[4], "iwant", MESSAGE_ID_LEN, budget)
    neighbours = None if fields[5] is None else _ids(
        fields[5], "neighbours", NODE_ID_LEN, MAX_NEIGHBOURS)
    return Control(tuple(subs), graft, prune, tuple(ihave), iwant, neighbours)
