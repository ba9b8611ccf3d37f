"""Two authenticated ends of one connection, made in memory (no sockets): a real Noise
handshake between two identities, then a session for each side."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bzzz_edge.identity import Identity
from bzzz_edge.wire.noise import Handshake, HandshakeResult, SecureStream
from bzzz_edge.wire.session import Session


@dataclass
class Pair:
    a: Identity
    b: Identity
    a_result: HandshakeResult
    b_result: HandshakeResult

    def sessions(self, max_frame_size: int = 1024 * 1024, **kw) -> tuple[Session, Session]:
        return (Session(SecureStream(self.a_result.session), max_frame_size, **kw),
                Session(SecureStream(self.b_result.session), max_frame_size, **kw))


def handshake_pair() -> Pair:
    psk = secrets.token_bytes(32)
    a, b = Identity.generate(), Identity.generate()
    ini = Handshake(initiator=True, static_key=X25519PrivateKey.generate(),
                    identity_key=a.private_key, psk=psk)
    res = Handshake(initiator=False, static_key=X25519PrivateKey.generate(),
                    identity_key=b.private_key, psk=psk)
    message = ini.start()
    while not (ini.complete and res.complete):
        reply = res.feed(message)
        if not reply:
            break
        message = ini.feed(reply)
        if message:
            res.feed(message)
            break
    assert ini.complete and res.complete
    return Pair(a, b, ini.result, res.result)


@pytest.fixture
def secure_pair():
    """Make a fresh authenticated pair: ``secure_pair().sessions()``."""
    return handshake_pair
