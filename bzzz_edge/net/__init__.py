"""Peer transport over trio: secure connections, one per peer, with RPC. Uses trio.

Services register handlers for their envelope types and RPC methods with the
``ConnectionManager``, follow peers through its ``events`` feed, and say which addresses to
keep connections to with ``want``; the manager and its connections do the rest.
"""

from ._connection import BUSY, Connection, ConnectionClosed, RequestFailed
from ._dialing import DialBook, Source
from ._events import Address, CloseReason, PeerConnected, PeerDisconnected, PeerEvent
from ._guard import Guard, GuardLimits
from ._limits import NetLimits
from ._manager import ConnectionManager

__all__ = [
    "BUSY",
    "Address",
    "CloseReason",
    "Connection",
    "ConnectionClosed",
    "ConnectionManager",
    "DialBook",
    "Guard",
    "GuardLimits",
    "NetLimits",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "RequestFailed",
    "Source",
]
