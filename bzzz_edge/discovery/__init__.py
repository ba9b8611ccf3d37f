"""LAN discovery: mDNS/DNS-SD announcements of ``_bzzz._tcp.local.`` as a trio service.

The package itself is sans-IO: the TXT record format (``_records``) and the bookkeeping that
turns service changes into events (``_book``) are pure. ``MdnsDiscovery`` (``_mdns``), which
does network I/O through zeroconf, is loaded on first use, so importing the pure parts loads no
network library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bzzz_edge.discovery._book import DiscoveryEvent
from bzzz_edge.discovery._records import (
    SERVICE_TYPE,
    Announcement,
    PeerFound,
    PeerLost,
    encode_txt,
    instance_name,
    parse_txt,
)

__all__ = [
    "SERVICE_TYPE",
    "Announcement",
    "DiscoveryEvent",
    "MdnsDiscovery",
    "PeerFound",
    "PeerLost",
    "encode_txt",
    "instance_name",
    "parse_txt",
]

if TYPE_CHECKING:
    from bzzz_edge.discovery._mdns import MdnsDiscovery


def __getattr__(name: str) -> Any:
    if name == "MdnsDiscovery":
        from bzzz_edge.discovery._mdns import MdnsDiscovery

        return MdnsDiscovery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
