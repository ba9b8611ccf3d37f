"""Peer transport over trio: secure connections, one per peer, with RPC."""

from ._connection import Connection, ConnectionClosed, NetLimits, RequestFailed
from ._manager import ConnectionManager, PeerConnected, PeerDisconnected

__all__ = [
    "Connection",
    "ConnectionClosed",
    "ConnectionManager",
    "NetLimits",
    "PeerConnected",
    "PeerDisconnected",
    "RequestFailed",
]
