"""An attacker peer that holds the network key: a library for insider tests. Does I/O.

``Insider.connect`` dials a real node over TCP, runs the project's own Noise handshake
(``wire.noise``) with its own identity, sends the hello the node expects, and from then on
sends whatever a compromised or buggy peer could: raw frames and envelopes, SWIM messages,
RPC requests whose answers it never reads, signed gossip and replays of it. It uses plain
blocking sockets, so tests and benchmarks drive it without an event loop. Reading is opt-in
(``start_reader``): an attacker that never reads is part of the threat model. The reader
thread answers keepalives and SWIM pings (so the node keeps the attacker for alive), sends a
keepalive of its own when nothing went out for ``KEEPALIVE_INTERVAL`` (as a node does: a node
that writes to us sends no pings, and would close us as silent), and keeps what it received
for ``wait_for``.

Also here: ``half_open`` (TCP connections that never start the handshake), ``DialSink``
(listeners that count who dials the fake addresses an attacker hands out) and ``FakeMdns``
(zeroconf service registrations carrying the public network fingerprint).

Use from a test or a script::

    spy = Insider.connect(("127.0.0.1", port), network_key)
    spy.start_reader()
    spy.wait_joined()   # the node registered us (it answers only registered peers)
    spy.send_swim(Gossip((DeadUpdate(victim, 2**63 - 1, spy.node_id),)))
    spy.barrier()       # a SWIM ping answered: the node has handled everything sent before it
"""

from __future__ import annotations

import contextlib
import itertools
import select
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bzzz_edge.identity import Identity, network_id
from bzzz_edge.membership import Ack, Message, Ping, decode_message, encode_message
from bzzz_edge.wire.envelope import (
    DirectMessage,
    Envelope,
    GossipMessage,
    decode_envelope,
    encode_envelope,
    sign_gossip,
)
from bzzz_edge.wire.framing import FrameDecoder
from bzzz_edge.wire.noise import Handshake, SecureStream

__all__ = ["AddressSink", "DialSink", "FakeMdns", "Insider", "InsiderClosed", "frame", "half_open",
           "swim_payload"]

Address = tuple[str, int]

SWIM = ("swim", 1)
HELLO = ("hello", 1)
KEEPALIVE = ("ka", 1)
KEEPALIVE_INTERVAL = 2.0  # the nodes' default network.keepalive_interval
RPC_REQUEST = ("rpc.req", 1)
RPC_RESPONSE = ("rpc.resp", 1)
KNOWN = frozenset({SWIM, HELLO, KEEPALIVE, RPC_REQUEST, RPC_RESPONSE})
#: One Noise message carries at most this much plaintext; a flood packs 16 of them per write.
_NOISE_PLAINTEXT = 65519
_MAX_FRAME = 1024 * 1024


class InsiderClosed(ConnectionError):
    """The node closed the connection (or reset it)."""


def swim_payload(message: Message | list[Any]) -> bytes:
    """An encoded SWIM envelope: a message record, or an already plain list (for malformed
    or oversized variants the record types would refuse)."""
    plain = message if isinstance(message, list) else encode_message(message)
    body = msgpack.packb(plain, use_bin_type=True)
    return encode_envelope(DirectMessage(*SWIM, body))


def frame(payload: bytes) -> bytes:
    """Length-prefix ``payload`` as the transport does, without its size check (so an
    oversized frame can be sent on purpose)."""
    return len(payload).to_bytes(4, "big") + payload


class Insider:
    """One authenticated connection from an attacker identity to a node."""

    def __init__(self, sock: socket.socket, secure: SecureStream, *, identity: Identity,
                 network_key: bytes, peer_id: bytes, leftover: bytes) -> None:
        self.sock = sock
        self.identity = identity
        self.node_id = identity.node_id
        self.peer_id = peer_id  #: the node we are connected to
        self.network_id = network_id(network_key)
        self.received: list[Envelope] = []
        self.swim: list[Any] = []  #: decoded SWIM messages from the node, in order
        self.closed = threading.Event()
        self.bytes_sent = 0
        self.frames_sent = 0
        self._secure = secure
        self._decoder = FrameDecoder(_MAX_FRAME)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._leftover = leftover
        self._reader: threading.Thread | None = None
        self._seq = itertools.count(time.time_ns() // 1000)
        self._swim_seq = itertools.count(1)
        self._rpc_ids = itertools.count(1)
        self.auto_answer = True  #: the reader acks pings, answers and sends keepalives
        self._sent_at = time.monotonic()

    # --- connecting --------------------------------------------------------------------------

    @classmethod
    def connect(cls, address: Address, network_key: bytes, *, identity: Identity | None = None,
                source_ip: str | None = None, listen_port: int = 9, name: str = "insider",
                timeout: float = 5.0) -> Insider:
        """Dial ``address``, complete the handshake and send our hello.

        ``listen_port`` is what the hello announces; nothing listens there unless the caller
        makes it so (the node's dials to it fail, which is what a vanished peer looks like).

        Raises:
            OSError, bzzz_edge.errors.BzzzError: the dial or the handshake failed.
        """
        identity = identity or Identity.generate()
        sock = socket.create_connection(address, timeout=timeout,
                                        source_address=(source_ip, 0) if source_ip else None)
        try:
            handshake = Handshake(initiator=True, static_key=X25519PrivateKey.generate(),
                                  identity_key=identity.private_key, psk=network_key)
            sock.sendall(handshake.start())
            while not handshake.complete:
                data = sock.recv(4096)
                if not data:
                    raise InsiderClosed("node closed the connection during the handshake")
                reply = handshake.feed(data)
                if reply:
                    sock.sendall(reply)
            result = handshake.result
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        peer = cls(sock, SecureStream(result.session), identity=identity,
                   network_key=network_key, peer_id=result.peer_id, leftover=result.leftover)
        hello = {"name": name, "v": 1, "port": listen_port}
        peer.send_direct(HELLO, msgpack.packb(hello, use_bin_type=True))
        return peer

    def close(self) -> None:
        """Close the TCP connection (an abrupt leave: no goodbye)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.closed.set()

    def __enter__(self) -> Insider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending -----------------------------------------------------------------------------

    def send_plaintext(self, data: bytes) -> None:
        """Encrypt ``data`` (any byte string: frames, garbage) onto the secure channel.

        Raises:
            InsiderClosed: the node closed or reset the connection.
        """
        with self._send_lock:
            wire = self._secure.send(data)
            self._sent_at = time.monotonic()
            try:
                self.sock.sendall(wire)
            except OSError as exc:
                self.closed.set()
                raise InsiderClosed(f"send failed: {exc}") from exc
            self.bytes_sent += len(wire)

    def send_payloads(self, payloads: Iterable[bytes]) -> int:
        """Frame and send envelopes, packing as many frames as fit into each Noise message
        (so a flood costs the attacker little CPU). Returns the number sent."""
        batch: list[bytes] = []
        size = count = 0
        for payload in payloads:
            framed = frame(payload)
            if batch and size + len(framed) > _NOISE_PLAINTEXT * 16:
                self.send_plaintext(b"".join(batch))
                batch, size = [], 0
            batch.append(framed)
            size += len(framed)
            count += 1
        if batch:
            self.send_plaintext(b"".join(batch))
        self.frames_sent += count
        return count

    def send_envelope(self, message: GossipMessage | DirectMessage) -> None:
        self.send_payloads([encode_envelope(message)])

    def send_direct(self, kind: tuple[str, int], body: bytes) -> None:
        self.send_envelope(DirectMessage(kind[0], kind[1], body))

    def send_swim(self, *messages: Message | list[Any]) -> None:
        self.send_payloads(swim_payload(m) for m in messages)

    def rpc_payloads(self, method: str, count: int, body: bytes = b"") -> Iterable[bytes]:
        """``count`` encoded RPC requests (fresh request IDs each)."""
        for _ in range(count):
            request = msgpack.packb([next(self._rpc_ids), method, body], use_bin_type=True)
            yield encode_envelope(DirectMessage(*RPC_REQUEST, request))

    def sign(self, topic: str, body: bytes | None = None, *, seq: int | None = None,
             timestamp_ms: int | None = None) -> GossipMessage:
        """A gossip message originated and validly signed by this insider."""
        return sign_gossip(self.identity.private_key, network_id=self.network_id,
                           seq=next(self._seq) if seq is None else seq,
                           timestamp_ms=int(time.time() * 1000) if timestamp_ms is None
                           else timestamp_ms, topic=topic, body=body)

    def gossip_payloads(self, topic: str, count: int, body: bytes | None = None) -> list[bytes]:
        """``count`` distinct, validly signed gossip envelopes (signing is the costly part)."""
        return [encode_envelope(self.sign(topic, body)) for _ in range(count)]

    # --- reading -----------------------------------------------------------------------------

    def start_reader(self) -> None:
        """Read in a thread from now on: keep what arrives, answer pings and keepalives."""
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, daemon=True,
                                            name=f"insider-{self.node_id.hex()[:8]}")
            self._reader.start()

    def _read(self) -> None:
        data = self._leftover
        try:
            while True:
                if data:
                    self._handle(data)
                if self.auto_answer and time.monotonic() - self._sent_at >= KEEPALIVE_INTERVAL:
                    self.send_direct(KEEPALIVE, b"")
                data = b""
                # (select, not a socket timeout: that would bound the other thread's sends)
                if select.select([self.sock], [], [], KEEPALIVE_INTERVAL / 2)[0]:
                    data = self.sock.recv(256 * 1024)
                    if not data:
                        break
        except Exception:  # reset, closed by us, or garbage: the connection is over either way
            pass
        self.closed.set()
        with self._cond:
            self._cond.notify_all()

    def _handle(self, data: bytes) -> None:
        for chunk in self._secure.feed(data):
            for raw in self._decoder.feed(chunk):
                envelope = decode_envelope(raw, KNOWN)
                swim = None
                if isinstance(envelope, DirectMessage):
                    kind = (envelope.type, envelope.version)
                    if kind == SWIM:
                        swim = decode_message(msgpack.unpackb(envelope.body))
                    elif kind == KEEPALIVE and self.auto_answer:
                        self.send_direct(KEEPALIVE, b"")
                if isinstance(swim, Ping) and self.auto_answer:
                    self.send_swim(Ack(swim.seq))
                with self._cond:
                    self.received.append(envelope)
                    if swim is not None:
                        self.swim.append(swim)
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every arrival) or the connection
        closes; returns the predicate's last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed.is_set():
                    return predicate()
                self._cond.wait(remaining)
            return True

    def wait_joined(self, timeout: float = 10.0) -> bool:
        """Wait for the node's first SWIM message. The node registers a connection only after
        our hello, and answers only registered peers: a ping sent before that can go
        unanswered, so wait for this before relying on ``barrier``."""
        return self.wait_for(lambda: bool(self.swim), timeout)

    def ping(self) -> int | None:
        """Send the node a SWIM ping; its sequence number, or None if the send failed."""
        seq = next(self._swim_seq) + 2**31
        try:
            self.send_swim(Ping(seq, self.peer_id))
        except InsiderClosed:
            return None
        return seq

    def wait_ack(self, seq: int | None, timeout: float = 10.0) -> bool:
        """Wait for the node's ack to ping ``seq``; False if closed first or on timeout."""
        if seq is None:
            return False
        return self.wait_for(
            lambda: any(isinstance(m, Ack) and m.seq == seq for m in self.swim), timeout)

    def barrier(self, timeout: float = 10.0, *, attempts: int = 1) -> bool:
        """Ping the node and wait for its ack. The node handles one connection's messages in
        order through one inbound queue, so an ack means everything sent before it has been
        handled (or dropped). False if the node closed the connection or never answered.

        ``attempts`` pings, ``timeout / attempts`` apart: after a flood, a node may drop
        the first pings along with the flood, where its inbound queue is full."""
        return any(self.wait_ack(self.ping(), timeout / attempts) for _ in range(attempts))


def half_open(address: Address, count: int, *, source_ips: Sequence[str] = ("127.0.0.1",),
              per_ip: int | None = None, timeout: float = 5.0) -> list[socket.socket]:
    """Open ``count`` TCP connections that never send a byte (each holds a descriptor and a
    handshake slot on the node until its handshake timeout). Spread over ``source_ips``,
    ``per_ip`` at most from each (loopback has all of 127.0.0.0/8). Stops early, without
    raising, when the node stops accepting; returns the sockets (the caller closes them)."""
    sockets: list[socket.socket] = []
    per_ip = per_ip or count
    for ip in source_ips:
        for _ in range(per_ip):
            if len(sockets) >= count:
                return sockets
            try:
                sock = socket.create_connection(address, timeout=timeout,
                                                source_address=(ip, 0))
            except OSError:
                return sockets
            sock.settimeout(None)  # so MSG_DONTWAIT peeks do not wait out the timeout
            sockets.append(sock)
    return sockets


class DialSink:
    """Listening sockets that count the dials each gets, by caller IP (and hang up at once).

    Advertise ``ports`` (on ``host``) as fake members' addresses, then see what a node dials
    and how often. ``on_dial(source_ip, port)``, if given, runs in the sink's thread.
    """

    def __init__(self, count: int, host: str = "127.0.0.1",
                 on_dial: Callable[[str, int], None] | None = None) -> None:
        self.selector = selectors.DefaultSelector()
        self.host = host
        self.ports: list[int] = []
        self.dials: Counter[int] = Counter()  #: by port
        self.sources: Counter[tuple[str, int]] = Counter()  #: by (caller IP, port)
        self.cond = threading.Condition()
        self._on_dial = on_dial
        for _ in range(count):
            listener = socket.create_server((host, 0))
            listener.setblocking(False)
            self.ports.append(listener.getsockname()[1])
            self.selector.register(listener, selectors.EVENT_READ)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self.selector.select(0.2):
                listener = key.fileobj
                assert isinstance(listener, socket.socket)
                try:
                    conn, (source, _) = listener.accept()
                except OSError:
                    continue
                conn.close()
                port = listener.getsockname()[1]
                with self.cond:
                    self.dials[port] += 1
                    self.sources[(source, port)] += 1
                    self.cond.notify_all()
                if self._on_dial is not None:
                    self._on_dial(source, port)

    def wait_distinct(self, more_than: int, timeout: float) -> int:
        """Wait until more than ``more_than`` ports were dialled, or ``timeout``; the count."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.dials) > more_than, timeout)
            return len(self.dials)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


class AddressSink:
    """One listening port on every local address: counts dials by the address dialled.

    Hand out ``addresses(n)`` (``n`` distinct loopback addresses, 127.1.0.1 on, all at
    ``port``) as fake members' addresses; every dial of one reaches this sink, which tells them
    apart by the local address of the accepted connection, and hangs up at once. It listens on
    0.0.0.0 (no narrower bind covers all of 127.0.0.0/8) for as long as the test runs.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("0.0.0.0", 0), backlog=256)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.dials: Counter[str] = Counter()  #: by the IP dialled
        self.cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def addresses(self, count: int) -> list[Address]:
        return [(f"127.{1 + i // 65024}.{1 + i // 254 % 256}.{1 + i % 254}", self.port)
                for i in range(count)]

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the timeout, or closed
                continue
            dialled = conn.getsockname()[0]
            conn.close()
            with self.cond:
                self.dials[dialled] += 1
                self.cond.notify_all()

    def total(self) -> int:
        with self.cond:
            return sum(self.dials.values())

    def wait_distinct(self, more_than: int, timeout: float) -> int:
        """Wait until more than ``more_than`` addresses were dialled, or ``timeout``; the
        count."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.dials) > more_than, timeout)
            return len(self.dials)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.listener.close()


class FakeMdns:
    """Fake bzzz-edge services with our network's public fingerprint, one per address.

    Each names a random node ID at its address (host, port); a node with mDNS on wants to dial
    all of them. Bind to ``interface`` (an IP of the LAN, e.g. inside a network namespace: run
    the owning process there). ``close`` unregisters them (goodbye packets).
    """

    def __init__(self, fingerprint: str, addresses: Sequence[Address], *,
                 interface: str) -> None:
        import os

        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        from bzzz_edge.discovery._records import SERVICE_TYPE, Announcement, encode_txt

        self._zc = Zeroconf(interfaces=[interface], ip_version=IPVersion.V4Only)
        self.infos: list[ServiceInfo] = []
        for address in addresses:
            node = os.urandom(32)
            name = f"bzzz-{node.hex()[:32]}.{SERVICE_TYPE}"
            txt = encode_txt(Announcement(node, 1, fingerprint, "fake"))
            self.infos.append(ServiceInfo(SERVICE_TYPE, name, port=address[1], properties=txt,
                                          addresses=[socket.inet_aton(address[0])],
                                          server=f"{name[:40]}.local."))

    def register(self) -> None:
        """Announce every service (in zeroconf's loop, all at once: no probing first)."""
        import asyncio

        async def register_all() -> None:
            tasks = [await self._zc.async_register_service(info, cooperating_responders=True)
                     for info in self.infos]
            await asyncio.gather(*tasks)

        assert self._zc.loop is not None
        asyncio.run_coroutine_threadsafe(register_all(), self._zc.loop).result(120)

    def close(self) -> None:
        self._zc.unregister_all_services()
        self._zc.close()
