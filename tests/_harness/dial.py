"""Connecting one in-process ``ConnectionManager`` to another on loopback."""

from __future__ import annotations

import trio

from bzzz_edge.feed import Subscription
from bzzz_edge.net import ConnectionManager, PeerConnected, PeerEvent, Source


async def dial_and_wait(dialer: ConnectionManager, port: int, events: Subscription[PeerEvent],
                        timeout: float = 10.0) -> None:
    """Have ``dialer`` dial 127.0.0.1:``port`` (as a bootstrap peer) and wait for the
    ``PeerConnected`` on ``events``: its event subscription, taken before it ran, so the
    event cannot be missed."""
    dialer.want(("127.0.0.1", port), Source.BOOTSTRAP)
    with trio.fail_after(timeout):
        async for event in events:
            if isinstance(event, PeerConnected):
                return
