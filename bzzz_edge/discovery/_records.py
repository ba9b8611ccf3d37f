"""What a bzzz-edge node announces over mDNS, and the events discovery yields. No I/O.

The TXT record carries four keys (RFC 6763 key=value strings, each well under 255 bytes):

- ``id``: the node ID, 64 lowercase hex characters;
- ``v``: the protocol version, a decimal integer;
- ``net``: the public fingerprint of the network key (``identity.network_fingerprint``), so
  nodes of other networks on the same LAN are told apart without revealing anything;
- ``name``: an optional display name, UTF-8.

Unknown keys are ignored so later versions can add some. Nothing here is authenticated: an mDNS
announcement is only a hint where to dial; the Noise handshake proves who answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import DecodeError, LocalProtocolError

__all__ = [
    "SERVICE_TYPE",
    "Announcement",
    "PeerFound",
    "PeerLost",
    "encode_txt",
    "instance_name",
    "parse_txt",
]

SERVICE_TYPE = "_bzzz._tcp.local."
NODE_ID_SIZE = 32
MAX_NAME_BYTES = 63
MAX_PROTOCOL_VERSION = 0xFFFF
_FINGERPRINT = re.compile(r"[0-9A-Za-z_-]{1,64}")
_HEX_ID = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"[0-9]{1,5}")
# 128 bits of the node ID keep the DNS label short (max 63 bytes) and still unique in practice.
_INSTANCE_ID_HEX = 32


@dataclass(frozen=True, slots=True)
class Announcement:
    """The content of one node's TXT record."""

    node_id: bytes
    protocol_version: int
    fingerprint: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class PeerFound:
    """A peer of our network was found, or its addresses or name changed (an upsert)."""

    peer_id: bytes
    addresses: tuple[tuple[str, int], ...]
    protocol_version: int
    name: str


@dataclass(frozen=True, slots=True)
class PeerLost:
    """A peer withdrew its announcement (goodbye packet or expired records)."""

    peer_id: bytes


def instance_name(node_id: bytes) -> str:
    """The DNS-SD instance label we register under, derived from the node ID."""
    _check_node_id(node_id)
    return "bzzz-" + node_id.hex()[:_INSTANCE_ID_HEX]


def encode_txt(announcement: Announcement) -> dict[bytes, bytes]:
    """Our TXT properties, for zeroconf's ``ServiceInfo(properties=...)``.

    Raises:
        LocalProtocolError: a field we were given cannot be announced (named in the message).
    """
    _check_node_id(announcement.node_id)
    version = announcement.protocol_version
    if not 0 < version <= MAX_PROTOCOL_VERSION:
        raise LocalProtocolError(f"protocol_version must be 1..{MAX_PROTOCOL_VERSION}, "
                                 f"got {version}")
    if not _FINGERPRINT.fullmatch(announcement.fingerprint):
        raise LocalProtocolError("network fingerprint must be 1-64 characters of [0-9A-Za-z_-], "
                                 f"got {announcement.fingerprint!r}")
    name = announcement.name.encode()
    if len(name) > MAX_NAME_BYTES or not announcement.name.isprintable():
        raise LocalProtocolError(f"name must be printable and at most {MAX_NAME_BYTES} bytes of "
                                 f"UTF-8, got {len(name)} bytes")
    txt = {b"id": announcement.node_id.hex().encode(), b"v": str(version).encode(),
           b"net": announcement.fingerprint.encode()}
    if name:
        txt[b"name"] = name
    return txt


def parse_txt(properties: Mapping[bytes, bytes | None]) -> Announcement:
    """Parse a peer's TXT properties (as zeroconf's ``ServiceInfo.properties`` gives them).

    Raises:
        DecodeError: a key is missing or a value is malformed; the message names the key.
    """
    node_hex = _ascii(properties, b"id")
    if not _HEX_ID.fullmatch(node_hex):
        raise DecodeError(f"TXT key 'id' must be 64 lowercase hex characters, got {len(node_hex)} "
                          "characters")
    version_text = _ascii(properties, b"v")
    if not _DECIMAL.fullmatch(version_text) or int(version_text) > MAX_PROTOCOL_VERSION:
        raise DecodeError(f"TXT key 'v' must be a decimal protocol version, got {version_text!r}")
    fingerprint = _ascii(properties, b"net")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise DecodeError("TXT key 'net' must be 1-64 characters of [0-9A-Za-z_-]")
    raw_name = properties.get(b"name") or b""
    if len(raw_name) > MAX_NAME_BYTES:
        raise DecodeError(f"TXT key 'name' is {len(raw_name)} bytes, at most {MAX_NAME_BYTES}")
    try:
        name = raw_name.decode()
    except UnicodeDecodeError:
        raise DecodeError("TXT key 'name' is not valid UTF-8") from None
    if not name.isprintable():
        raise DecodeError("TXT key 'name' holds control characters")
    return Announcement(bytes.fromhex(node_hex), int(version_text), fingerprint, name)


def _ascii(properties: Mapping[bytes, bytes | None], key: bytes) -> str:
    value = properties.get(key)
    if value is None:
        raise DecodeError(f"TXT key {key.decode()!r} is missing or has no value")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"TXT key {key.decode()!r} is not ASCII") from None


def _check_node_id(node_id: bytes) -> None:
    if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_SIZE:
        raise LocalProtocolError(f"node_id must be {NODE_ID_SIZE} bytes, got {node_id!r:.80}")
