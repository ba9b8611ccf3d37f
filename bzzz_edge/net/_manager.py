"""The connection manager: listen, dial, handshake, one connection per peer. Uses trio.

Every TCP connection first runs the Noise handshake (wire/noise.py): a peer without the network
key is dropped before it sends or learns anything. Then both sides exchange a hello (their
listening port and name) and the connection is registered; what the peer sent after its hello
is read only then, so no service answers a peer this node has no connection to yet. When two
nodes dial each other at once, both keep the connection opened by the node with the lower node
ID, so exactly one survives, the same one on both sides.

Data flows one way: the manager creates connections and hands them the table of handlers
(``on_envelope``, ``on_rpc``) that the services registered; a connection calls those handlers
and never calls back into the manager. What the services learn about peers comes through the
``events`` feed. Which addresses to dial is the dial book's decision (``_dialing``), carried
out by the dialler (``_dialer``); who may connect is the guard's (``_guard``), and whether an
inbound connection is admitted now, admission's (``_admission``); the handshake itself and the
labels of its failures are ``_handshake``'s.

Limits: connections in total and per IP, handshakes in flight in total and per IP, and file
descriptors (``max_connections`` is lowered to fit ``RLIMIT_NOFILE``); running out of
descriptors anyway is counted and waited out, not a traceback.

Every counter the manager keeps exists from the start, at zero (``COUNTERS``), so /metrics
shows each family before anything happened.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from typing import Any

import trio

from ..errors import BzzzError
from ..feed import Feed
from ..identity import Identity
from ..ids import short_id
from ..wire.noise import HandshakeError, HandshakeResult, SecureStream, new_x25519_key
from ..wire.session import Session
from ..wire.types import EnvelopeType
from ._admission import REFUSALS, Admission
from ._connection import Connection, ConnectionClosed
from ._dialer import Dialer
from ._dialing import Source
from ._events import Address, CloseReason, PeerConnected, PeerDisconnected, PeerEvent
from ._guard import Guard
from ._handlers import EnvelopeHandler, Handlers, RpcHandler
from ._handshake import CAUSES, cause, handshake, remote_ip
from ._limits import NetLimits, fit_descriptors

__all__ = ["COUNTERS", "ConnectionManager"]

log = logging.getLogger(__name__)

_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# What a connection counts (net/_connection.py), summed here as conn_<name> once it closes.
_CONNECTION_COUNTERS = ("send_too_large", "dropped_sends", "inbound_throttled", "unhandled",
                        "handler_failed", "requests_busy", "unknown_method")
COUNTERS = ("accept_failed", "accept_out_of_fds", "refused_banned", "duplicates", *REFUSALS,
            *(f"handshake_failed_{c}" for c in CAUSES),
            *(f"conn_{c}" for c in _CONNECTION_COUNTERS))


class ConnectionManager:
    """Owns every peer connection of a node."""

    def __init__(self, identity: Identity, network_key: bytes, *, listen: Address,
                 limits: NetLimits, hello: dict[str, Any] | None = None,
                 guard: Guard | None = None) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.limits = fit_descriptors(limits)
        self.listen_address = listen
        self.port = 0
        self._psk = network_key
        self._static = new_x25519_key()  # per run; bound to the identity by signature
        self._hello = dict(hello or {})
        self.handlers = Handlers()
        self.guard = guard or Guard()
        self.events: Feed[PeerEvent] = Feed("peer events")
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._connections: dict[bytes, Connection] = {}
        self._dialer = Dialer(self.node_id, self.limits, self.guard, connect=self._dial,
                              connections=lambda: self._connections, cause=cause)
        self._admission = Admission(self.limits, self.guard)
        self._closing = False
        self._knocked = False
        self._nursery: trio.Nursery | None = None

    # --- what services register and read --------------------------------------------------------

    def on_envelope(self, kind: EnvelopeType, handler: EnvelopeHandler) -> None:
        """Call ``handler(peer_id, envelope)`` for every envelope of ``kind``."""
        self.handlers.on_envelope(kind, handler)

    def on_rpc(self, method: str, handler: RpcHandler, *, inline: bool = False) -> None:
        """Serve RPC ``method`` with ``handler(peer_id, body) -> answer``.

        ``inline`` runs the handler in the connection's reader task, saving a task switch per
        request; only for handlers that never wait on the network (the reader is paused).
        """
        self.handlers.on_rpc(method, handler, inline=inline)

    @property
    def connections(self) -> dict[bytes, Connection]:
        return dict(self._connections)

    def figures(self) -> Counter[str]:
        """Every transport counter: the manager's, the guard's, the dial book's, and the sums
        over connections (closed ones included: they are added when a connection ends)."""
        totals = Counter(self.counters)
        totals.update(self.guard.counters)
        totals.update(self._dialer.counters)
        totals.update(self._dialer.book.counters)
        for conn in self._connections.values():
            totals.update({f"conn_{k}": v for k, v in conn.figures().items()})
        totals["event_overflows"] = self.events.overflows
        return totals

    # --- what to dial ----------------------------------------------------------------------------

    def want(self, address: Address, source: Source, node: bytes | None = None) -> None:
        """Keep a connection to ``address`` (redialled with backoff while wanted)."""
        if not self._closing:
            self._dialer.want(address, source, node)

    def unwant_node(self, node: bytes) -> None:
        self._dialer.unwant_node(node)

    def unwant(self, address: Address, source: Source | None = None) -> None:
        self._dialer.unwant(address, source)

    # --- talking to peers ------------------------------------------------------------------------

    def send(self, peer_id: bytes, payload: bytes, *, urgent: bool = False,
             bulk: bool = False) -> bool:
        """Queue an encoded envelope for ``peer_id``; False if not connected or queue full.
        ``urgent``: ahead of everything else queued for that peer (membership's probes);
        ``bulk``: best effort, in half of that peer's queue at most (relayed gossip)."""
        conn = self._connections.get(peer_id)
        return conn is not None and conn.send_nowait(payload, urgent=urgent, bulk=bulk)

    def broadcast(self, payload: bytes, *, exclude: bytes | None = None) -> int:
        return sum(conn.send_nowait(payload) for pid, conn in list(self._connections.items())
                   if pid != exclude)

    def strike(self, peer_id: bytes, reason: str, *, weight: int = 1) -> None:
        """A service reports that ``peer_id`` misbehaved; enough strikes ban it."""
        conn = self._connections.get(peer_id)
        ip = conn.remote_ip if conn is not None else ""
        now = trio.current_time()
        strikes = self.guard.strikes(peer_id, now) + weight
        level = logging.WARNING if strikes == weight else logging.DEBUG
        log.log(level, "peer %s misbehaved: %s (strike %d)", short_id(peer_id), reason, strikes)
        if self.guard.strike(peer_id, ip, now, weight=weight) and conn is not None:
            conn.close(CloseReason.PUNISHED, reason)

    async def request(self, peer_id: bytes, method: str, body: bytes, *,
                      timeout: float = 5.0) -> bytes:
        """RPC to a connected peer.

        Raises:
            ConnectionClosed: not connected, or the connection closed meanwhile.
            RequestFailed: timeout, or the peer's handler failed or was busy.
        """
        conn = self._connections.get(peer_id)
        if conn is None:
            raise ConnectionClosed(f"not connected to {short_id(peer_id)}")
        return await conn.request(method, body, timeout=timeout)

    # --- running ---------------------------------------------------------------------------------

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
                self._dialer.start(nursery)
                nursery.start_soon(self._keepalive_sweep)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener)
                log.info("listening for peers on %s:%d", host, self.port)
                task_status.started(self.port)
        finally:
            self._nursery = None

    async def _keepalive_sweep(self) -> None:
        """Every connection's keepalive (``Connection.keepalive``) on one timer: a look every
        interval at all of them, rather than a wake-up per connection and interval. So a ping
        follows the last frame sent within one to two intervals, far inside the peer's
        ``keepalive_misses`` intervals of patience."""
        interval = self.limits.keepalive_interval
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            for conn in list(self._connections.values()):
                conn.keepalive(now)

    async def close_all(self, reason: CloseReason = CloseReason.SHUTDOWN) -> None:
        """Stop dialling and accepting, and close every connection (flushing its queue)."""
        self._closing = True
        self._dialer.stop()
        async with trio.open_nursery() as nursery:
            for conn in list(self._connections.values()):
                nursery.start_soon(conn.close_gracefully, reason)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_FDS:
                    raise
                self.counters["accept_out_of_fds"] += 1
                level = logging.WARNING if self.counters["accept_out_of_fds"] == 1 \
                    else logging.DEBUG
                log.log(level, "cannot accept peer connections: %s; waiting", exc.strerror)
                await trio.sleep(0.1)
                continue
            self._nursery.start_soon(self._accept, stream)

    async def _accept(self, stream: trio.SocketStream) -> None:
        """Handle one inbound connection; never raises (the accept loop would stop)."""
        try:
            await self._accept_checked(stream)
        except Exception:  # a bug must not take the listener down with it
            self.counters["accept_failed"] += 1
            log.exception("inbound connection handler failed")
            await trio.aclose_forcefully(stream)

    async def _accept_checked(self, stream: trio.SocketStream) -> None:
        try:
            ip = str(stream.socket.getpeername()[0])
        except OSError:  # reset before we looked
            await trio.aclose_forcefully(stream)
            return
        refusal = self._admission.refusal(ip, trio.current_time(), closing=self._closing)
        if refusal:
            self.counters[refusal] += 1
            await trio.aclose_forcefully(stream)
            return
        self._admission.opened(ip)
        try:
            try:
                result = await self._handshake(stream, initiator=False)
            finally:
                self._admission.handshake_ended(ip)
            self.guard.handshake_succeeded(ip)
            conn = await self._setup_connection(stream, result, initiator=False, ip=ip)
            if conn is not None:
                await conn.closed.wait()  # the stream belongs to the connection until closed
        except (BzzzError, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            self.counters[f"handshake_failed_{cause(exc)}"] += 1
            self.guard.handshake_failed(ip, trio.current_time())
            if isinstance(exc, HandshakeError) and not self._knocked:
                self._knocked = True  # e.g. a node of another network: say so once
                log.info("refused a handshake from %s: %s (further ones are only counted)",
                         ip, exc)
            else:
                log.debug("inbound handshake from %s failed: %s", ip, exc)
            await trio.aclose_forcefully(stream)
        finally:
            self._admission.closed(ip)

    async def _dial(self, address: Address, expected: bytes | None) -> Connection | None:
        with trio.fail_after(self.limits.handshake_timeout):
            stream = await trio.open_tcp_stream(*address)
        try:
            result = await self._handshake(stream, initiator=True, expected=expected)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        self._dialer.learned(address, result.peer_id)
        if result.peer_id == self.node_id:
            await stream.aclose()
            return None
        return await self._setup_connection(stream, result, initiator=True, ip=address[0])

    async def _handshake(self, stream: trio.SocketStream, *, initiator: bool,
                         expected: bytes | None = None) -> HandshakeResult:
        return await handshake(stream, initiator=initiator, static_key=self._static,
                               identity_key=self.identity.private_key, psk=self._psk,
                               timeout=self.limits.handshake_timeout, expected=expected)

    async def _setup_connection(self, stream: trio.SocketStream, result: HandshakeResult, *,
                                initiator: bool, ip: str) -> Connection | None:
        """Start a connection after the handshake, exchange hellos, register it.

        Returns the connection, or None when it was refused or lost a duplicate race.
        """
        peer = result.peer_id
        if peer == self.node_id or self._nursery is None or \
                self.guard.refused(peer, ip, trio.current_time()):
            self.counters["refused_banned"] += peer != self.node_id
            await trio.aclose_forcefully(stream)
            return None
        session = Session(SecureStream(result.session), self.limits.max_frame_size,
                          max_malformed=self.limits.max_malformed)
        conn = Connection(stream, session, peer_id=peer, initiator=initiator,
                          remote_ip=remote_ip(stream), limits=self.limits,
                          handlers=self.handlers, leftover=result.leftover,
                          own_keepalive=False, admit_after_hello=True)
        self._nursery.start_soon(self._connection_task, conn)
        # "observed" tells a peer listening on all interfaces which address we reach it at.
        conn.send_hello({**self._hello, "port": self.port, "observed": conn.remote_ip})
        try:
            hello = await conn.wait_hello(self.limits.handshake_timeout)
        except BaseException:  # cancelled (unwanted meanwhile): leave no orphan running
            conn.close(CloseReason.SETUP_CANCELLED)
            raise
        if not hello:
            conn.close(CloseReason.NO_HELLO)
            return None
        if not self._register(conn):
            return None
        self.events.publish(PeerConnected(peer, (conn.remote_ip, int(conn.hello["port"])),
                                          conn.hello))
        conn.admit()
        return conn

    async def _connection_task(self, conn: Connection) -> None:
        await conn.run()
        self.counters.update({f"conn_{k}": v for k, v in conn.figures().items()})
        reason = conn.close_reason or CloseReason.CLOSED
        if self._connections.get(conn.peer_id) is conn:
            del self._connections[conn.peer_id]
            log.info("disconnected from %s: %s", conn.short_id, conn.describe_close(),
                     extra={"event": "peer_disconnected", "peer": conn.short_id,
                            "reason": reason.value})
            self.events.publish(PeerDisconnected(conn.peer_id, reason, conn.close_detail))
        if reason is CloseReason.PROTOCOL_ERROR:
            length = self.guard.ban(conn.peer_id, trio.current_time())
            log.warning("peer %s broke the protocol (%s); refusing it for %gs",
                        conn.short_id, conn.close_detail, length)

    def _register(self, conn: Connection) -> bool:
        """Keep one connection per peer: the one the lower node ID opened."""
        existing = self._connections.get(conn.peer_id)
        if existing is not None and not existing.closed.is_set():
            self.counters["duplicates"] += 1
            if self._preference(existing) <= self._preference(conn):
                conn.close(CloseReason.DUPLICATE)
                return False
            self._connections[conn.peer_id] = conn
            existing.close(CloseReason.DUPLICATE)
            return True
        if len(self._connections) >= self.limits.max_connections:
            self.counters["refused_limit"] += 1
            conn.close(CloseReason.CLOSED, "connection limit")
            return False
        self._connections[conn.peer_id] = conn
        log.info("connected to %s (%s)", conn.short_id,
                 "outbound" if conn.initiator else "inbound",
                 extra={"event": "peer_connected", "peer": conn.short_id})
        return True

    def _preference(self, conn: Connection) -> tuple[bytes, bytes]:
        """Both sides rank a pair's connections alike: the lower opener's first, then (both
        opened by one node, e.g. to two addresses) the lower handshake hash."""
        opener = self.node_id if conn.initiator else conn.peer_id
        return opener, conn.handshake_hash

