"""LAN discovery: mDNS/DNS-SD announcements of ``_bzzz._tcp.local.`` as a trio service.

``MdnsDiscovery`` does network I/O through zeroconf; the TXT record format (``_records``) and
the bookkeeping that turns service changes into events (``_book``) are pure.
"""

from __future__ import annotations

from bzzz_edge.discovery._book import DiscoveryEvent
from bzzz_edge.discovery._mdns import MdnsDiscovery
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
