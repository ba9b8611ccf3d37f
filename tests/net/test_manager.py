"""The connection manager over real loopback sockets: handshake, one connection per peer, RPC,
refusal of outsiders, and disconnection of peers that break the protocol."""

from __future__ import annotations

import dataclasses
import secrets
import socket
import struct

import msgpack
import pytest
import trio
import trio.testing

from bzzz_edge.identity import Identity
from bzzz_edge.net import (
    CloseReason,
    ConnectionManager,
    NetLimits,
    PeerConnected,
    PeerDisconnected,
    RequestFailed,
    Source,
)
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope
from bzzz_edge.wire.framing import encode_frame
from bzzz_edge.wire.noise import Handshake, SecureStream
from bzzz_edge.wire.types import SWIM

NOTE = SWIM  # any service envelope type will do; these managers have no membership on top
LIMITS = NetLimits(
    keepalive_interval=0.5,
    handshake_timeout=2.0,
    backoff_initial=0.05,
    backoff_max=0.5,
    max_malformed=3,
)


def _manager(key: bytes, identity: Identity | None = None,
             limits: NetLimits = LIMITS) -> ConnectionManager:
    manager = ConnectionManager(identity or Identity.generate(), key, listen=("127.0.0.1", 0),
                                limits=limits, hello={"name": "t"})
    manager.test_events = manager.events.subscribe()
    return manager


async def _next_event(manager: ConnectionManager, kind: type, timeout: float = 5.0):
    with trio.fail_after(timeout):
        async for event in manager.test_events:
            if isinstance(event, kind):
                return event
    raise AssertionError("event feed closed")


def _failures(manager: ConnectionManager, prefix: str) -> int:
    return sum(n for k, n in manager.figures().items() if k.startswith(prefix))


def _run(fn):
    trio.run(fn)


async def _settled(condition, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds at a moment when every other task is idle."""
    with trio.fail_after(timeout):
        while True:
            await trio.testing.wait_all_tasks_blocked(cushion=0.02)
            if condition():
                return


def test_two_nodes_connect_exchange_messages_and_rpc():
    async def main():
        key = secrets.token_bytes(32)
        a, b = _manager(key), _manager(key)

        async def echo(peer_id: bytes, body: bytes) -> bytes:
            return peer_id + body

        b.on_rpc("echo", echo)
        notes = []
        b.on_envelope(NOTE, lambda peer, envelope: notes.append((peer, envelope)))
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            port_b = await nursery.start(b.run)
            a.want(("127.0.0.1", port_b), Source.BOOTSTRAP)
            on_a = await _next_event(a, PeerConnected)
            on_b = await _next_event(b, PeerConnected)
            assert on_a.peer_id == b.node_id and on_b.peer_id == a.node_id
            assert on_a.address == ("127.0.0.1", port_b)
            assert on_b.address == ("127.0.0.1", a.port) and on_b.hello["name"] == "t"
            assert await a.request(b.node_id, "echo", b"hi", timeout=2) == a.node_id + b"hi"
            with pytest.raises(RequestFailed, match="unknown method 'nope'"):
                await a.request(b.node_id, "nope", b"", timeout=2)
            assert a.send(b.node_id, encode_envelope(DirectMessage(*NOTE.key, b"payload")))
            await _settled(lambda: notes)
            (peer, envelope), = notes
            assert peer == a.node_id and envelope.body == b"payload"
            await a.close_all()
            gone = await _next_event(b, PeerDisconnected)
            assert gone.peer_id == a.node_id
            nursery.cancel_scope.cancel()

    _run(main)


def test_simultaneous_dials_leave_exactly_one_connection_the_same_on_both_sides():
    async def main():
        key = secrets.token_bytes(32)
        a, b = _manager(key), _manager(key)
        async with trio.open_nursery() as nursery:
            port_a = await nursery.start(a.run)
            port_b = await nursery.start(b.run)
            # Neither knows the other's ID, so neither holds back: both dial at once.
            a.want(("127.0.0.1", port_b), Source.BOOTSTRAP)
            b.want(("127.0.0.1", port_a), Source.BOOTSTRAP)
            await _next_event(a, PeerConnected)
            await _next_event(b, PeerConnected)
            await _settled(lambda: len(a.connections) == len(b.connections) == 1
                           and _failures(a, "dial_failed") == _failures(b, "dial_failed") == 0)
            # Whatever raced, one connection each, and it is the one the lower ID opened.
            lower = min(a.node_id, b.node_id)
            for me, other in ((a, b), (b, a)):
                conns = me.connections
                assert list(conns) == [other.node_id]
                opener = me.node_id if conns[other.node_id].initiator else other.node_id
                assert opener == lower
            nursery.cancel_scope.cancel()

    _run(main)


def test_node_without_network_key_gets_nothing():
    async def main():
        a, outsider = _manager(secrets.token_bytes(32)), _manager(secrets.token_bytes(32))
        async with trio.open_nursery() as nursery:
            port_a = await nursery.start(a.run)
            # A raw connection: the outsider's handshake message 1 gets no byte back.
            stream = await trio.open_tcp_stream("127.0.0.1", port_a)
            handshake = Handshake(
                initiator=True,
                static_key=outsider._static,
                identity_key=outsider.identity.private_key,
                psk=secrets.token_bytes(32),
            )
            await stream.send_all(handshake.start())
            with trio.fail_after(5):
                assert await stream.receive_some(4096) == b""
            await stream.aclose()
            await nursery.start(outsider.run)
            outsider.want(("127.0.0.1", port_a), Source.BOOTSTRAP)
            with trio.move_on_after(1.0):
                await _next_event(a, PeerConnected, timeout=2)
                raise AssertionError("an outsider got connected")
            assert a.connections == {} and outsider.connections == {}
            assert a.figures()["handshake_failed_auth"] >= 2
            nursery.cancel_scope.cancel()

    _run(main)


def test_dial_expecting_another_node_is_refused():
    async def main():
        key = secrets.token_bytes(32)
        a, b = _manager(key), _manager(key)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            port_b = await nursery.start(b.run)
            a.want(("127.0.0.1", port_b), Source.BOOTSTRAP, secrets.token_bytes(32))
            await _settled(lambda: a.figures()["dial_failed_identity"] >= 2)
            assert a.connections == {}
            nursery.cancel_scope.cancel()

    _run(main)


async def _raw_peer(port: int, key: bytes,
                    hello_port: int = 1) -> tuple[trio.SocketStream, SecureStream]:
    """A hand-driven peer that completes the handshake and hello, to misbehave afterwards."""
    identity = Identity.generate()
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    handshake = Handshake(
        initiator=True,
        static_key=X25519PrivateKey.generate(),
        identity_key=identity.private_key,
        psk=key,
    )
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(handshake.start())
    while not handshake.complete:
        reply = handshake.feed(await stream.receive_some(4096))
        if reply:
            await stream.send_all(reply)
    secure = SecureStream(handshake.result.session)
    hello = encode_envelope(DirectMessage("hello", 1, msgpack.packb({"port": hello_port})))
    await stream.send_all(secure.send(encode_frame(hello)))
    return stream, secure


@pytest.mark.parametrize("attack", ["oversized", "garbage"])
def test_peer_breaking_protocol_is_disconnected(attack):
    async def main():
        key = secrets.token_bytes(32)
        a = _manager(key)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.run)
            stream, secure = await _raw_peer(port, key)
            await _next_event(a, PeerConnected)
            if attack == "oversized":
                data = (LIMITS.max_frame_size + 1).to_bytes(4, "big")
            else:
                data = b"".join(encode_frame(b"\xc1not msgpack") for _ in range(3))
            await stream.send_all(secure.send(data))
            gone = await _next_event(a, PeerDisconnected)
            assert gone.reason is CloseReason.PROTOCOL_ERROR
            assert a.figures()["bans"] == 1
            nursery.cancel_scope.cancel()

    _run(main)


def test_connections_beyond_the_per_address_limit_are_refused():
    async def main():
        key = secrets.token_bytes(32)
        a = _manager(key, limits=dataclasses.replace(LIMITS, max_per_ip=1))
        b, c = _manager(key), _manager(key)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.run)
            await nursery.start(b.run)
            await nursery.start(c.run)
            b.want(("127.0.0.1", port), Source.BOOTSTRAP)
            await _next_event(a, PeerConnected)
            c.want(("127.0.0.1", port), Source.BOOTSTRAP)  # same IP (loopback): over the limit
            await _settled(lambda: a.figures()["refused_per_ip"] >= 1)
            assert list(a.connections) == [b.node_id]
            nursery.cancel_scope.cancel()

    _run(main)


def test_hostile_inputs_do_not_take_the_manager_down():
    """Resets before accept, unresolvable names, huge RPC method names."""

    async def main():
        key = secrets.token_bytes(32)
        a, b = _manager(key), _manager(key)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.run)
            await nursery.start(b.run)
            for _ in range(50):  # connect and reset at once (SO_LINGER 0)
                raw = socket.create_connection(("127.0.0.1", port))
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()
            a.want(("a..b", 7340), Source.BOOTSTRAP)  # a name no resolver accepts
            stream, secure = await _raw_peer(port, key)  # a peer whose hello is fine
            await _next_event(a, PeerConnected)
            request = msgpack.packb([7, "\x00" * 300_000, b""])
            await stream.send_all(secure.send(encode_frame(
                encode_envelope(DirectMessage("rpc.req", 1, request)), 4 * 1024 * 1024)))
            # The answer is a short error, not a crash.
            b.want(("127.0.0.1", port), Source.BOOTSTRAP)
            await _next_event(b, PeerConnected)
            with pytest.raises(RequestFailed, match="unknown method"):
                await b.request(a.node_id, "\x00" * 300_000, b"", timeout=5)
            await _settled(lambda: _failures(a, "dial_failed") >= 1)
            assert b.node_id in a.connections
            nursery.cancel_scope.cancel()

    _run(main)


def test_hello_with_invalid_port_is_a_protocol_error():
    async def main():
        key = secrets.token_bytes(32)
        a = _manager(key)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.run)
            stream, _ = await _raw_peer(port, key, hello_port=70000)
            with trio.fail_after(5):
                while await stream.receive_some(65536):
                    pass  # the manager closes the connection
            assert a.connections == {}
            nursery.cancel_scope.cancel()

    _run(main)


def test_peer_that_stops_reading_is_bounded_then_closed():
    async def main():
        key = secrets.token_bytes(32)
        limits = dataclasses.replace(LIMITS, send_queue_bytes=256 * 1024, write_timeout=0.5,
                                     keepalive_interval=60)
        a = _manager(key, limits=limits)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(a.run)
            stream, _ = await _raw_peer(port, key)  # completes the handshake, then never reads
            connected = await _next_event(a, PeerConnected)
            blob = encode_envelope(DirectMessage(*NOTE.key, bytes(64 * 1024)))
            accepted = 0
            while a.send(connected.peer_id, blob):  # kernel buffers first, then our queue
                accepted += 1
                await trio.testing.wait_all_tasks_blocked(0.001)
                assert accepted < 10_000, "the send queue never filled"
            conn = a.connections[connected.peer_id]
            assert conn.counters["dropped_sends"] == 1
            assert conn._outbox.queued_bytes <= limits.send_queue_bytes
            gone = await _next_event(a, PeerDisconnected)
            assert gone.reason is CloseReason.WRITE_TIMEOUT and gone.detail == "for 0.5s"
            await stream.aclose()
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_peer_resetting_during_our_handshake_is_a_failed_dial_not_a_crash():
    async def main():
        a = _manager(secrets.token_bytes(32))
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        resets = 0

        async def reset_every_dial():
            nonlocal resets
            while True:
                sock, _ = await listener.accept()
                await sock.recv(4096)  # the handshake's first message...
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # ...answered with a reset
                resets += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            nursery.start_soon(reset_every_dial)
            a.want(listener.getsockname(), Source.BOOTSTRAP)
            await _settled(lambda: resets >= 2 and _failures(a, "dial_failed") >= 2)
            nursery.cancel_scope.cancel()
        listener.close()

    _run(main)
