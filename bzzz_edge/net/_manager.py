"""The connection manager: listen, dial, handshake, one connection per peer, RPC. Uses trio.

Every TCP connection first runs the Noise handshake (wire/noise.py): a peer without the network
key is dropped before it sends or learns anything. Then both sides exchange a hello (their
listening port and name) and the connection is registered. When two nodes dial each other at
once, both keep the connection opened by the node with the lower node ID, so exactly one
survives, the same one on both sides. Wanted addresses (from discovery, bootstrap peers and
membership) are dialled again with exponential backoff for as long as they are wanted. A peer
that breaks the protocol after the handshake is disconnected and refused for a backoff period.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import BzzzError, DecodeError, RemoteProtocolError
from ..identity import Identity, format_node_id
from ..wire.envelope import Envelope
from ..wire.noise import Handshake, HandshakeResult, SecureStream
from ._connection import HELLO, Connection, ConnectionClosed, NetLimits

__all__ = ["ConnectionManager", "PeerConnected", "PeerDisconnected"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
Handler = Callable[[bytes, bytes], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer_id: bytes
    address: Address  # where the peer listens: its IP as we see it, and its announced port
    hello: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer_id: bytes
    reason: str


PeerEvent = PeerConnected | PeerDisconnected


class ConnectionManager:
    """Owns every peer connection of a node."""

    def __init__(
        self,
        identity: Identity,
        network_key: bytes,
        *,
        listen: Address,
        limits: NetLimits,
        known_types: frozenset[tuple[str, int]] = frozenset(),
        hello: dict[str, Any] | None = None,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.limits = limits
        self.listen_address = listen
        self.port = 0
        self._psk = network_key
        self._static = X25519PrivateKey.generate()  # per run; bound to the identity by signature
        self._known = known_types
        self._hello = dict(hello or {})
        self._connections: dict[bytes, Connection] = {}
        self._wanted: dict[Address, bytes | None] = {}
        self._dialers: dict[Address, trio.CancelScope] = {}
        self._own_addresses: set[Address] = set()
        self._banned_until: dict[bytes, float] = {}
        self._ban_length: dict[bytes, float] = {}
        self._per_ip: Counter[str] = Counter()
        self._closing = False
        self._handlers: dict[str, Handler] = {}
        self._inline: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self.counters: Counter[str] = Counter()
        self._events_in, self.events = trio.open_memory_channel[PeerEvent](1024)
        self._inbound_in, self.inbound = trio.open_memory_channel[tuple[bytes, Envelope]](4096)

    # --- public surface ---------------------------------------------------------------------

    @property
    def connections(self) -> dict[bytes, Connection]:
        return dict(self._connections)

    def handle(self, method: str, handler: Handler, *, inline: bool = False) -> None:
        """Serve RPC ``method`` with ``handler(peer_id, body) -> response body``.

        ``inline`` runs the handler in the connection's reader task, saving a task switch per
        request; only for handlers that never wait on the network (the reader is paused).
        """
        self._handlers[method] = handler
        if inline:
            self._inline.add(method)
        else:
            self._inline.discard(method)

    def want(self, address: Address, peer_id: bytes | None = None) -> None:
        """Keep a connection to ``address`` (redialled with backoff while wanted)."""
        if address in self._own_addresses or peer_id == self.node_id or self._closing:
            return
        if address in self._wanted:
            if peer_id is not None:
                self._wanted[address] = peer_id
            return
        if len(self._wanted) >= self.limits.max_connections:
            self.counters["want_refused"] += 1  # e.g. a member gossiping thousands of fakes
            return
        self._wanted[address] = peer_id
        if self._nursery is not None:
            self._nursery.start_soon(self._dial_loop, address)

    def unwant(self, address: Address) -> None:
        self._wanted.pop(address, None)
        scope = self._dialers.pop(address, None)
        if scope is not None:
            scope.cancel()

    def send(self, peer_id: bytes, payload: bytes) -> bool:
        """Queue an encoded envelope for ``peer_id``; False if not connected or queue full."""
        conn = self._connections.get(peer_id)
        return conn is not None and conn.send_nowait(payload)

    def broadcast(self, payload: bytes, *, exclude: bytes | None = None) -> int:
        return sum(conn.send_nowait(payload) for pid, conn in list(self._connections.items())
                   if pid != exclude)

    def punish(self, peer_id: bytes, reason: str) -> None:
        """Disconnect a misbehaving peer and refuse it for a growing backoff period."""
        conn = self._connections.get(peer_id)
        if conn is not None:
            conn.close(f"protocol error: {reason}")
        else:
            self._ban(peer_id, reason)

    async def request(self, peer_id: bytes, method: str, body: bytes, *,
                      timeout: float = 5.0) -> bytes:
        """RPC to a connected peer.

        Raises:
            ConnectionClosed: not connected, or the connection closed meanwhile.
            RequestFailed: timeout, or the peer's handler failed.
        """
        conn = self._connections.get(peer_id)
        if conn is None:
            raise ConnectionClosed(f"not connected to {format_node_id(peer_id)}")
        return await conn.request(method, body, timeout=timeout)

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and dial until cancelled; ``task_status`` gets the bound port."""
        host, port = self.listen_address
        try:
            listeners = await trio.open_tcp_listeners(port, host=host or None)
        except OSError as exc:
            raise BzzzError(f"cannot listen for peers on {host}:{port}: {exc.strerror}") from None
        self.port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for address in list(self._wanted):
                    nursery.start_soon(self._dial_loop, address)
                nursery.start_soon(trio.serve_listeners, self._accept, listeners)
                log.info("listening for peers on %s:%d", host, self.port)
                task_status.started(self.port)
        finally:
            self._nursery = None

    async def close_all(self, reason: str = "shutting down") -> None:
        """Stop dialling and accepting, and close every connection (flushing its queue)."""
        self._closing = True
        for address in list(self._dialers):
            self.unwant(address)
        async with trio.open_nursery() as nursery:
            for conn in list(self._connections.values()):
                nursery.start_soon(conn.close_gracefully, reason)

    async def _accept(self, stream: trio.SocketStream) -> None:
        """Handle one inbound connection; never raises (serve_listeners would stop)."""
        try:
            await self._accept_checked(stream)
        except Exception:  # a bug must not take the listener down with it
            log.exception("inbound connection handler failed")
            await trio.aclose_forcefully(stream)

    async def _accept_checked(self, stream: trio.SocketStream) -> None:
        try:
            ip = str(stream.socket.getpeername()[0])
        except OSError:  # reset before we looked
            await trio.aclose_forcefully(stream)
            return
        if (self._closing or len(self._connections) >= self.limits.max_connections
                or self._per_ip[ip] >= self.limits.max_per_ip):
            self.counters["refused_limit"] += 1
            await stream.aclose()
            return
        self._per_ip[ip] += 1
        try:
            result = await self._handshake(stream, initiator=False)
            conn = await self._setup_connection(stream, result, initiator=False)
            if conn is not None:
                # serve_listeners closes the stream when this handler returns: stay with it.
                await conn.closed.wait()
        except (BzzzError, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            self.counters["handshake_failed"] += 1
            log.debug("inbound handshake from %s failed: %s", ip, exc)
            await stream.aclose()
        finally:
            self._per_ip[ip] -= 1

    async def _dial_loop(self, address: Address) -> None:
        scope = self._dialers[address] = trio.CancelScope()
        backoff = self.limits.backoff_initial
        with scope:
            while address in self._wanted:
                expected = self._wanted[address]
                if expected is not None and expected in self._connections:
                    await self._connections[expected].closed.wait()
                    continue
                if expected is not None and self._is_banned(expected):
                    await trio.sleep_until(self._banned_until[expected])
                    continue
                if expected is not None and expected < self.node_id and backoff == \
                        self.limits.backoff_initial:
                    # The lower ID is the preferred opener; give its connection a head start.
                    await trio.sleep(self.limits.backoff_initial * 3)
                    if expected in self._connections:
                        continue
                try:
                    conn = await self._dial(address, expected)
                except Exception as exc:  # OSError, handshake, bad host names (UnicodeError)...
                    self.counters["dial_failed"] += 1
                    log.debug("dial %s:%d failed: %s", *address, exc)
                    await trio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, self.limits.backoff_max)
                    continue
                opened = trio.current_time()
                if conn is not None:
                    await conn.closed.wait()
                # Only a connection that lasted resets the backoff, not one closed at once, nor
                # a dial refused after the handshake (the peer bans us): that would redial in a
                # tight loop.
                if conn is not None and trio.current_time() - opened > self.limits.backoff_max:
                    backoff = self.limits.backoff_initial
                else:
                    await trio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, self.limits.backoff_max)
        if self._dialers.get(address) is scope:
            del self._dialers[address]

    async def _dial(self, address: Address, expected: bytes | None) -> Connection | None:
        with trio.fail_after(self.limits.handshake_timeout):
            stream = await trio.open_tcp_stream(*address)
        try:
            result = await self._handshake(stream, initiator=True, expected=expected)
        except BaseException:
            await stream.aclose()
            raise
        if result.peer_id == self.node_id:
            self._own_addresses.add(address)
            self._wanted.pop(address, None)
            await stream.aclose()
            return None
        if address in self._wanted:
            self._wanted[address] = result.peer_id
        return await self._setup_connection(stream, result, initiator=True)

    async def _handshake(self, stream: trio.SocketStream, *, initiator: bool,
                         expected: bytes | None = None) -> HandshakeResult:
        handshake = Handshake(initiator=initiator, static_key=self._static,
                              identity_key=self.identity.private_key, psk=self._psk,
                              expected_peer_id=expected)
        with trio.fail_after(self.limits.handshake_timeout):
            first = handshake.start()
            if first:
                await stream.send_all(first)
            while not handshake.complete:
                data = await stream.receive_some(4096)
                if not data:
                    raise RemoteProtocolError("peer closed the connection during the handshake")
                reply = handshake.feed(data)
                if reply:
                    await stream.send_all(reply)
        return handshake.result

    async def _setup_connection(self, stream: trio.SocketStream, result: HandshakeResult, *,
                                initiator: bool) -> Connection | None:
        """Start a connection after the handshake, exchange hellos, register it.

        Returns the connection, or None when it was refused or lost a duplicate race.
        """
        peer = result.peer_id
        if peer == self.node_id or self._is_banned(peer) or self._nursery is None:
            await stream.aclose()
            return None
        conn = Connection(stream, SecureStream(result.session), peer_id=peer, initiator=initiator,
                          limits=self.limits, known_types=self._known, dispatch=self._dispatch,
                          on_request=self._on_request,
                          leftover=result.leftover)
        self._nursery.start_soon(self._connection_task, conn)
        # "observed" tells a peer listening on all interfaces which address we reach it at.
        conn.send_direct(HELLO, msgpack.packb({**self._hello, "port": self.port,
                                               "observed": conn.remote_ip}))
        try:
            hello = await conn.wait_hello(self.limits.handshake_timeout)
        except BaseException:  # cancelled (unwanted meanwhile): leave no orphan running
            conn.close("setup cancelled")
            raise
        if not hello:
            conn.close("no hello")
            return None
        if not self._register(conn):
            return None
        self._emit(PeerConnected(peer, (conn.remote_ip, int(conn.hello["port"])), conn.hello))
        return conn

    async def _connection_task(self, conn: Connection) -> None:
        await conn.run()
        if self._connections.get(conn.peer_id) is conn:
            del self._connections[conn.peer_id]
            log.info("disconnected from %s: %s", format_node_id(conn.peer_id)[:15],
                     conn.close_reason)
            self._emit(PeerDisconnected(conn.peer_id, conn.close_reason))
        if conn.close_reason.startswith("protocol error"):
            self._ban(conn.peer_id, conn.close_reason)

    def _register(self, conn: Connection) -> bool:
        """Keep one connection per peer: the one the lower node ID opened."""
        existing = self._connections.get(conn.peer_id)
        if existing is not None and not existing.closed.is_set():
            if self._preference(existing) <= self._preference(conn):
                conn.close("duplicate connection")
                self.counters["duplicates"] += 1
                return False
            self._connections[conn.peer_id] = conn
            existing.close("duplicate connection")
            self.counters["duplicates"] += 1
            return True
        self._connections[conn.peer_id] = conn
        log.info("connected to %s (%s)", format_node_id(conn.peer_id)[:15],
                 "outbound" if conn.initiator else "inbound")
        return True

    def _preference(self, conn: Connection) -> tuple[bytes, bytes]:
        """Both sides rank a pair's connections alike: the lower opener's first, then (both
        opened by one node, e.g. to two addresses) the lower handshake hash."""
        opener = self.node_id if conn.initiator else conn.peer_id
        return opener, conn.handshake_hash

    def _dispatch(self, conn: Connection, envelope: Envelope) -> None:
        try:
            self._inbound_in.send_nowait((conn.peer_id, envelope))
        except trio.WouldBlock:
            self.counters["inbound_dropped"] += 1

    async def _on_request(self, conn: Connection, body: bytes) -> None:
        try:
            request_id, method, payload = msgpack.unpackb(body)
            inline = method in self._inline
        except (ValueError, TypeError, msgpack.UnpackException):
            conn.counters["malformed"] += 1
            return
        if inline:
            await self._serve_request(conn, request_id, method, payload)
        elif self._nursery is not None:
            self._nursery.start_soon(self._serve_request, conn, request_id, method, payload)

    async def _serve_request(self, conn: Connection, request_id: Any, method: Any,
                             payload: Any) -> None:
        handler = self._handlers.get(method) if isinstance(method, str) else None
        answer: bytes | str
        if handler is None:
            answer, ok = f"unknown method {str(method)[:64]!r}", False
        else:
            try:
                answer, ok = await handler(conn.peer_id, payload), True
            except (BzzzError, DecodeError) as exc:
                answer, ok = str(exc)[:200], False
            except Exception:  # a handler bug answers with an error; it does not end the node
                log.exception("RPC handler %s failed", method)
                answer, ok = "internal error", False
        try:
            await conn.respond(request_id, ok, answer)
        except ConnectionClosed:
            pass  # the requester will time out or see the close
        except BzzzError as exc:  # e.g. an answer too large for a frame
            log.warning("RPC %s: cannot send the answer: %s", method, exc)

    def _emit(self, event: PeerEvent) -> None:
        try:
            self._events_in.send_nowait(event)
        except trio.WouldBlock:
            self.counters["events_dropped"] += 1

    def _is_banned(self, peer: bytes) -> bool:
        until = self._banned_until.get(peer)
        return until is not None and trio.current_time() < until

    def _ban(self, peer: bytes, reason: str) -> None:
        now = trio.current_time()
        # Forget bans (and their escalation) long over, so the tables stay small.
        for old in [p for p, until in self._banned_until.items() if until + 600 < now]:
            del self._banned_until[old]
            self._ban_length.pop(old, None)
        length = min(self._ban_length.get(peer, 0.5) * 2, 300.0)
        self._ban_length[peer] = length
        self._banned_until[peer] = now + length
        self.counters["banned"] += 1
        log.warning("peer %s misbehaved (%s); refusing it for %gs",
                    format_node_id(peer)[:15], reason, length)
