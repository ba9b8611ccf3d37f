"""What a peer sends before its hello reaches no service: the manager registers a connection
once it has the hello (and may refuse it: connection limit, a losing duplicate), so a message
or a request before it would be handled for a peer this node has no connection to. An honest
peer sends its hello first; anything else first is a protocol error that closes the connection.
Real sockets: a ConnectionManager and a raw peer that runs the handshake and speaks without a
hello (found by a review, review17)."""

from __future__ import annotations

import secrets
import socket
import sys

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope
from bzzz_edge.wire.noise import Handshake, SecureStream
from bzzz_edge.wire.types import SWIM


def _connect_without_hello(port: int, key: bytes):  # type: ignore[no-untyped-def]
    """The handshake only: an ``Insider`` that has not sent its hello."""
    insider = sys.modules["_bzzz_test_harness_insider"]  # loaded by tests/conftest.py
    identity = Identity.generate()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    handshake = Handshake(initiator=True, static_key=X25519PrivateKey.generate(),
                          identity_key=identity.private_key, psk=key)
    sock.sendall(handshake.start())
    while not handshake.complete:
        reply = handshake.feed(sock.recv(4096))
        if reply:
            sock.sendall(reply)
    sock.settimeout(None)
    result = handshake.result
    return insider.Insider(sock, SecureStream(result.session), identity=identity,
                           network_key=key, peer_id=result.peer_id, leftover=result.leftover)


def test_nothing_is_handled_for_a_peer_before_its_hello() -> None:
    limits = NetLimits(keepalive_interval=0.5, handshake_timeout=2.0)
    key = secrets.token_bytes(32)
    heard: list[tuple[bytes, bool]] = []  # (peer, registered when heard)
    served: list[tuple[bytes, bool]] = []

    async def main() -> None:
        manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                    limits=limits, hello={"name": "t"})

        async def echo(peer: bytes, body: bytes) -> bytes:
            served.append((peer, peer in manager.connections))
            return body

        manager.on_rpc("echo", echo)
        manager.on_envelope(SWIM, lambda peer, envelope: heard.append(
            (peer, peer in manager.connections)))
        async with trio.open_nursery() as nursery:
            port = await nursery.start(manager.run)

            def attacker() -> tuple[bool, bool]:
                spy = _connect_without_hello(port, key)
                spy.start_reader()
                request = msgpack.packb([1, "echo", b"before hello"], use_bin_type=True)
                spy.send_payloads([encode_envelope(DirectMessage("swim", 1, b"x")),
                                   encode_envelope(DirectMessage("rpc.req", 1, request))])
                closed = spy.closed.wait(timeout=10)  # the node hangs up on it
                answered = any(isinstance(e, DirectMessage) and e.type == "rpc.resp"
                               for e in spy.received)
                spy.close()
                return closed, answered

            closed, answered = await trio.to_thread.run_sync(attacker)
            nursery.cancel_scope.cancel()
        # Nothing reached a service from a peer the manager never registered, the request got
        # no answer, and the connection was closed for it.
        assert closed
        assert not answered and not heard and not served, (answered, heard, served)

    trio.run(main)
