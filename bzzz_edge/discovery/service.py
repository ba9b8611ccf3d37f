"""Dial what mDNS finds, and stop dialling what it loses. Trio.

Peers are taken as they are found, while our own registration (a few announcements, most of
a second) is still going on. Found addresses go into the dial book under the ``mdns`` source,
capped like every other source, so a flood of fake services cannot take every dial slot, and
a service that goes away (or never answers) is dialled no more.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..errors import BzzzError
from ..net import ConnectionManager, Source
from . import PeerFound, PeerLost

if TYPE_CHECKING:
    from ._mdns import MdnsDiscovery

__all__ = ["COUNTERS", "LanDiscovery"]

#: Services of other networks seen, records that did not parse, resolutions that timed out,
#: and browser changes dropped because the hand-over queue was full.
COUNTERS = ("mdns_other_network", "mdns_malformed", "mdns_unresolved", "mdns_dropped_changes")

log = logging.getLogger(__name__)


class LanDiscovery:
    def __init__(self, manager: ConnectionManager, *, fingerprint: str, protocol_version: int,
                 name: str) -> None:
        self._manager = manager
        self._fingerprint = fingerprint
        self._version = protocol_version
        self._name = name
        self.mdns: MdnsDiscovery | None = None
        self._found: dict[bytes, tuple[str, int]] = {}

    def counters(self) -> dict[str, int]:
        """mDNS figures for /metrics: each is zero until mDNS runs."""
        mdns = self.mdns
        if mdns is None:
            return dict.fromkeys(COUNTERS, 0)
        return {"mdns_other_network": mdns.ignored_other_network,
                "mdns_malformed": mdns.malformed,
                "mdns_unresolved": mdns.unresolved,
                "mdns_dropped_changes": mdns.dropped_changes}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Started at once: zeroconf (tens of milliseconds to import) and our announcement
        # (most of a second) need not hold up the node's readiness.
        task_status.started()
        from . import MdnsDiscovery

        self.mdns = MdnsDiscovery(self._manager.node_id, self._manager.port, self._fingerprint,
                                  protocol_version=self._version, name=self._name)
        mdns = self.mdns

        async def announce_and_browse() -> None:
            try:
                await mdns.run()
            except (BzzzError, OSError) as exc:
                log.warning("mDNS discovery unavailable: %s", exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(announce_and_browse)
            async for event in mdns.events:
                if isinstance(event, PeerFound) and event.addresses:
                    address = event.addresses[0]
                    previous = self._found.get(event.peer_id)
                    if previous is not None and previous != address:
                        self._manager.unwant(previous, Source.MDNS)
                    self._found[event.peer_id] = address
                    self._manager.want(address, Source.MDNS, event.peer_id)
                elif isinstance(event, PeerLost):
                    lost = self._found.pop(event.peer_id, None)
                    if lost is not None:
                        self._manager.unwant(lost, Source.MDNS)
