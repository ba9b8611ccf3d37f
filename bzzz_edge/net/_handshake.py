"""The Noise handshake over a fresh TCP stream, and the labels its failures are counted by.
Uses trio.

Both sides run ``wire/noise.py``'s handshake within ``handshake_timeout``: a peer without the
network key learns nothing and is dropped before it sends anything else. ``cause`` names why a
handshake or a dial failed (``handshake_failed_<cause>``, ``dial_failed_<cause>``).
"""

from __future__ import annotations

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import BzzzError, RemoteProtocolError
from ..wire.noise import Handshake, HandshakeError, HandshakeResult, PeerIdentityMismatch

__all__ = ["CAUSES", "cause", "handshake", "remote_ip"]

CAUSES = ("timeout", "identity", "auth", "protocol", "refused", "network")


async def handshake(stream: trio.SocketStream, *, initiator: bool, static_key: X25519PrivateKey,
                    identity_key: Ed25519PrivateKey, psk: bytes, timeout: float,
                    expected: bytes | None = None) -> HandshakeResult:
    """Run the handshake on ``stream``; ``expected``: the node ID the dialled peer must have.

    Raises:
        trio.TooSlowError: not done within ``timeout``.
        HandshakeError, RemoteProtocolError, OSError, trio.BrokenResourceError: it failed.
    """
    state = Handshake(initiator=initiator, static_key=static_key, identity_key=identity_key,
                      psk=psk, expected_peer_id=expected)
    with trio.fail_after(timeout):
        first = state.start()
        if first:
            await stream.send_all(first)
        while not state.complete:
            data = await stream.receive_some(4096)
            if not data:
                raise RemoteProtocolError("peer closed the connection during the handshake")
            reply = state.feed(data)
            if reply:
                await stream.send_all(reply)
    return state.result


def cause(exc: BaseException) -> str:
    """A short label for a handshake or dial failure, for the counters (one of ``CAUSES``)."""
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, PeerIdentityMismatch):
        return "identity"
    if isinstance(exc, HandshakeError):
        return "auth"  # a wrong network key, or forged handshake messages
    if isinstance(exc, RemoteProtocolError):
        return "protocol"
    if isinstance(exc, BzzzError):
        return "refused"
    return "network"


def remote_ip(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, IndexError):
        return "?"
