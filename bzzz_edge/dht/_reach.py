"""How the DHT service reaches peers: the contacts membership gave it, dialling on demand, and
who is alive. Uses trio.

A contact is dialled before an RPC to it if no connection is up: a member (an address
membership gave) as a member, a contact only other nodes named as a rumour (few at a time,
so a peer handing out addresses gets little dialling). The dial is waited for up to one RPC
timeout. A peer's contact, for the core, is its member address if it has one, else the
address it connected from with the port it announced.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

from ..net import ConnectionManager, PeerConnected, Source
from ._contact import Contact

__all__ = ["Reach"]

_MAX_DIALLING = 1024  # dials waited for; more (dials that never connected) are forgotten


class Reach:
    """The DHT's way to its peers; ``addresses``: the live members' contacts, by node ID."""

    def __init__(self, manager: ConnectionManager, membership: Any, counters: Counter[str], *,
                 rpc_timeout: float) -> None:
        self._manager = manager
        self._membership = membership
        self._counters = counters
        self._rpc_timeout = rpc_timeout
        self.addresses: dict[bytes, Contact] = {}
        self._dialling: dict[bytes, trio.Event] = {}
        self._peer_events = manager.events.subscribe()

    async def connected(self, to: Contact) -> bool:
        """Whether a connection to ``to`` is up, dialled (and waited for up to one RPC
        timeout) if need be."""
        if to.node in self._manager.connections:
            return True
        if to.port == 0:
            return False
        known = self.addresses.get(to.node) == to
        self._manager.want((to.host, to.port), Source.MEMBERSHIP if known else Source.RUMOUR,
                           to.node)
        self._counters["dials"] += 1
        if len(self._dialling) > _MAX_DIALLING:  # their waiters time out
            self._dialling.clear()
        event = self._dialling.setdefault(to.node, trio.Event())
        with trio.move_on_after(self._rpc_timeout):
            await event.wait()
        return to.node in self._manager.connections

    async def follow_connections(self) -> None:
        """Wake the dials waited for when their peer connects (a task of the service)."""
        async for event in self._peer_events:
            if isinstance(event, PeerConnected):
                waiting = self._dialling.pop(event.peer_id, None)
                if waiting is not None:
                    waiting.set()

    async def request(self, node: bytes, method: str, body: bytes, *, timeout: float) -> bytes:
        """An RPC to ``node``, dialled first if it is a member we are not connected to.

        Raises:
            ConnectionClosed, RequestFailed: as ``ConnectionManager.request``.
        """
        contact = self.addresses.get(node)
        if contact is not None:
            await self.connected(contact)
        return await self._manager.request(node, method, body, timeout=timeout)

    def alive(self, node: bytes) -> bool:
        """Membership's view (the transport's, without membership)."""
        core = self._membership.core
        if core is None:
            return node in self._manager.connections
        return any(m.node == node for m in core.alive_members())

    def contact_of(self, peer: bytes) -> Contact:
        """The contact the core sees for a peer whose request it serves."""
        known = self.addresses.get(peer)
        if known is not None:
            return known
        conn = self._manager.connections.get(peer)
        port = conn.hello.get("port") if conn is not None else None
        if conn is not None and isinstance(port, int) and 0 <= port <= 65535:
            return Contact(peer, conn.remote_ip, port)
        return Contact(peer, "0.0.0.0", 0)  # never dialled by address: the transport uses IDs
