"""Every envelope type of the protocol, with its version, in one table. No I/O.

A frame's envelope names its type and version (``wire/envelope.py``). This table is the one
place that says which exist; the services register a handler for their own types with the
connection manager at start, and a type nobody registered is counted and ignored. Adding a
message type means adding a row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bzzz_edge.wire.constants import GOSSIP_TYPE, GOSSIP_VERSION

__all__ = [
    "ALL_TYPES",
    "GOSSIP",
    "HELLO",
    "KEEPALIVE",
    "KNOWN_TYPES",
    "PUBSUB_CONTROL",
    "RAFT",
    "RPC_REQUEST",
    "RPC_RESPONSE",
    "SWIM",
    "EnvelopeType",
    "Layer",
]


class Layer:
    """Who handles a type: the connection itself, or a service above it."""

    CONNECTION: Final = "connection"
    SERVICE: Final = "service"


@dataclass(frozen=True, slots=True)
class EnvelopeType:
    """One (type, version) pair and what it is for."""

    name: str
    version: int
    layer: str
    summary: str

    @property
    def key(self) -> tuple[str, int]:
        return self.name, self.version

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


KEEPALIVE: Final = EnvelopeType("ka", 1, Layer.CONNECTION, "empty; keeps a quiet link open")
HELLO: Final = EnvelopeType("hello", 1, Layer.CONNECTION,
                            "first message after the handshake: listening port, name, observed IP")
RPC_REQUEST: Final = EnvelopeType("rpc.req", 1, Layer.CONNECTION, "[id, method, body]")
RPC_RESPONSE: Final = EnvelopeType("rpc.resp", 1, Layer.CONNECTION, "[id, ok, body or error]")
SWIM: Final = EnvelopeType("swim", 1, Layer.SERVICE, "membership: probes, acks, news, sync")
GOSSIP: Final = EnvelopeType(GOSSIP_TYPE, GOSSIP_VERSION, Layer.SERVICE,
                             "origin-signed message relayed to a topic's subscribers")

PUBSUB_CONTROL: Final = EnvelopeType(
    "pubsub", 1, Layer.SERVICE,
    "pub/sub control: subscriptions, GRAFT/PRUNE, IHAVE/IWANT, neighbours (gossip/_control.py)")

RAFT: Final = EnvelopeType("raft", 1, Layer.SERVICE,
                           "consensus: [group, Raft message] (consensus/service.py)")

ALL_TYPES: Final = (KEEPALIVE, HELLO, RPC_REQUEST, RPC_RESPONSE, SWIM, GOSSIP, PUBSUB_CONTROL,
                    RAFT)
KNOWN_TYPES: Final = frozenset(t.key for t in ALL_TYPES)
