"""The package's exception tree. No I/O.

One root, so callers can catch everything bzzz-edge raises on purpose. Protocol errors are split
the way h11 splits them: ``LocalProtocolError`` when we misused a protocol, ``RemoteProtocolError``
when a peer misbehaved (counted and logged quietly, never fatal to the node).
"""

from __future__ import annotations

__all__ = [
    "BzzzError",
    "CodecError",
    "ConfigError",
    "DecodeError",
    "IdentityError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SignatureError",
    "StorageError",
]


class BzzzError(Exception):
    """Root of every error bzzz-edge raises on purpose."""


class ConfigError(BzzzError):
    """A configuration key, value or file is wrong; the message names the key."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class IdentityError(BzzzError):
    """The identity (key files, node ID) is missing, malformed or unsafe."""


class StorageError(BzzzError):
    """The local store could not be opened, read or written."""


class DecodeError(BzzzError, ValueError):
    """Bytes that do not decode to what they claim to be."""


class CodecError(DecodeError):
    """Compressed data that is corrupt, truncated or larger than allowed."""


class SignatureError(BzzzError):
    """A signature that is missing or does not verify."""


class ProtocolError(BzzzError):
    """A protocol was violated."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something the protocol does not allow."""
