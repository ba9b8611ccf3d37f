"""What the transport tells the services above it: peers connected and lost, and why. No I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["Address", "CloseReason", "PeerConnected", "PeerDisconnected", "PeerEvent"]

Address = tuple[str, int]


class CloseReason(enum.Enum):
    """Why a connection closed; ``misbehaved`` decides whether the peer is banned."""

    CLOSED = "closed"  # closed by us, no particular reason
    SHUTDOWN = "shutting down"
    LEAVING = "node leaving"
    PEER_CLOSED = "peer closed the connection"
    SILENT = "peer silent"
    TRANSPORT_ERROR = "transport error"
    WRITE_TIMEOUT = "peer did not read"
    DUPLICATE = "duplicate connection"
    NO_HELLO = "no hello"
    SETUP_CANCELLED = "setup cancelled"
    PROTOCOL_ERROR = "protocol error"  # the peer broke the protocol
    PUNISHED = "misbehaved"  # a service above reported the peer (bad gossip, floods...)
    HANDLER_FAILED = "handler failed"  # our bug handling the peer's message: close, go on

    @property
    def misbehaved(self) -> bool:
        return self in (CloseReason.PROTOCOL_ERROR, CloseReason.PUNISHED)


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer_id: bytes
    address: Address  # where the peer listens: its IP as we see it, and its announced port
    hello: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer_id: bytes
    reason: CloseReason
    detail: str = ""


PeerEvent = PeerConnected | PeerDisconnected
