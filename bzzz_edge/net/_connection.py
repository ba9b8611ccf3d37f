"""One established, authenticated and encrypted connection to a peer: the trio shell.

The protocol itself (decrypting, deframing, decoding, hello, RPC matching) is the sans-IO
``wire.session.Session``; this class owns the I/O around it. A connection runs a reader, which
feeds the session and calls the registered handler of each message in turn; a writer, which
drains a queue bounded in frames and bytes (several frames per system call when they pile up;
membership's frames and keepalives first, from a small queue of their own); a keepalive when
nothing else went out for a while; and the RPC requests it serves, at most
``max_inflight_requests`` at a time (a peer asking for more gets "busy"). It is typed against
``trio.abc.Stream``, so tests can run it over in-memory streams with a mock clock.

Nothing a peer sends can stop the node: a fatal protocol error closes this connection; a
handler that raises closes this connection (counted, logged once); an answer too large for a
frame is refused and counted.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import BzzzError, LocalProtocolError, RemoteProtocolError
from ..ids import short_id
from ..wire.constants import (
    EVENTS_PER_TURN,
    PACING_BURST_FACTOR,
    RECEIVE_SIZE,
    RECEIVE_SIZE_SMALL,
    REQUEST_FLOOD_FACTOR,
    SHOWN_METHOD_LEN,
)
from ..wire.envelope import Envelope
from ..wire.session import (
    EnvelopeReceived,
    HelloReceived,
    Malformed,
    RequestReceived,
    ResponseReceived,
    Session,
    SessionEvent,
    Unhandled,
)
from ._events import CloseReason
from ._handlers import Handlers
from ._limits import NetLimits
from ._outbox import Outbox, WriteStalled

__all__ = ["Connection", "ConnectionClosed", "RequestFailed"]

log = logging.getLogger(__name__)

BUSY = "busy"  # the error answer to a request over the per-connection limit


class ConnectionClosed(BzzzError):
    """The connection closed before the operation could finish."""


class RequestFailed(BzzzError):
    """An RPC request timed out, or the peer answered with an error."""


class _HandlerFailed(Exception):
    """A registered handler raised: our bug, met while handling this peer's message."""


@dataclass(slots=True)
class _PendingRequest:
    """One of our requests waiting for its answer."""

    done: trio.Event = field(default_factory=trio.Event)
    response: ResponseReceived | None = None


class Connection:
    """A secure connection to ``peer_id``; start ``run`` in a nursery, then send and request."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        session: Session,
        *,
        peer_id: bytes,
        initiator: bool,
        remote_ip: str,
        limits: NetLimits,
        handlers: Handlers,
        leftover: bytes = b"",
        own_keepalive: bool = True,
        admit_after_hello: bool = False,
    ) -> None:
        """``own_keepalive``: run a keepalive timer of its own; False when the caller calls
        ``keepalive`` for it (the manager, one timer for all its connections).
        ``admit_after_hello``: after the peer's hello, read nothing more until ``admit``. The
        manager registers a connection once it has the hello; a message that came with the
        hello, handled before that, would be answered while this node has no connection to
        its sender (the answer fails, and membership takes the peer's connection for lost:
        a probe that fails, an honest peer suspected). For the same reason a message or a
        request before the hello is a protocol error (an honest peer sends its hello first):
        nothing reaches a service from a peer the manager has not registered, or would refuse
        (connection limit, a losing duplicate)."""
        self.stream = stream
        self.session = session
        self.peer_id = peer_id
        self.short_id = short_id(peer_id)  # for log lines, computed once
        self.initiator = initiator
        self.remote_ip = remote_ip
        self.handshake_hash = session.secure.session.handshake_hash
        self.counters: Counter[str] = Counter()
        self.close_reason: CloseReason | None = None
        self.close_detail = ""
        self._limits = limits
        self._handlers = handlers
        self._leftover = leftover
        self._outbox = Outbox(stream, session, frames=limits.send_queue,
                              max_bytes=limits.send_queue_bytes,
                              write_timeout=limits.write_timeout, on_dropped=self._dropped)
        self._pending: dict[int, _PendingRequest] = {}
        self._inflight = 0
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._hello_received = trio.Event()
        self._admitted: trio.Event | None = trio.Event() if admit_after_hello else None
        self._before_hello = admit_after_hello  # messages are refused until the hello
        self._tokens = PACING_BURST_FACTOR * limits.max_frames_per_second
        # The run's clock itself: ``trio.current_time`` finds it through two more calls, and
        # pacing reads it after every read.
        self._clock = trio.lowlevel.current_clock()
        self._paced_at, self._paced_frames = self._clock.current_time(), 0
        self._handling = False  # the reader is handling what it read (not silent meanwhile)
        self._own_keepalive = own_keepalive
        self._ping: bytes | None = None
        self.closed = trio.Event()

    @property
    def hello(self) -> dict[str, Any]:
        return self.session.hello or {}

    def figures(self) -> dict[str, int]:
        """Traffic and error counts of this connection (session and shell)."""
        return {**self.session.counters.as_dict(), **self.counters}

    # --- sending ----------------------------------------------------------------------------

    def send_nowait(self, payload: bytes, *, urgent: bool = False, bulk: bool = False) -> bool:
        """Queue an encoded envelope; False (and counted) when it cannot be queued.

        The queue is bounded twice: in frames (``send_queue``) and in bytes
        (``send_queue_bytes``), so a peer that reads slowly cannot make us hold gigabytes.
        ``urgent`` (membership: probes, acks) goes in a small queue of its own, written first,
        so no amount of other traffic queued for the peer delays or drops it. ``bulk`` (relayed
        gossip, best effort) may fill half the ordinary queue only.
        """
        try:
            frame = self.session.frame_payload(payload)
        except LocalProtocolError as exc:  # our message is too large: refuse it, go on
            self.counters["send_too_large"] += 1
            if self.counters["send_too_large"] == 1:
                log.warning("not sent to %s: %s", self.short_id, exc)
            return False
        return self._outbox.put_nowait(frame, urgent=urgent, bulk=bulk)

    def _dropped(self) -> None:
        self.counters["dropped_sends"] += 1

    async def send(self, payload: bytes) -> None:
        """Send an encoded envelope: at once when nothing is queued, else behind the queue.

        Raises:
            ConnectionClosed: the connection is closed.
            LocalProtocolError: the envelope does not fit in a frame.
        """
        await self._send_frame(self.session.frame_payload(payload))

    async def _send_frame(self, frame: bytes, *, checkpoint: bool = True) -> None:
        if self.closed.is_set() or self.close_reason is not None:
            raise self._closed_error()
        try:
            await self._outbox.put(frame, checkpoint=checkpoint)
        except WriteStalled as exc:
            self.close(CloseReason.WRITE_TIMEOUT, str(exc))
            raise self._closed_error() from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if self.close_reason is None:
                self.close(CloseReason.TRANSPORT_ERROR, str(exc))
            raise self._closed_error() from None

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(f"connection closed: {self.describe_close()}")

    async def request(self, method: str, body: bytes, *, timeout: float) -> bytes:
        """Send an RPC request and wait for its response.

        Raises:
            RequestFailed: no answer within ``timeout``, or the peer reported an error.
            ConnectionClosed: the connection closed first.
        """
        request_id, frame = self.session.request_frame(method, body)
        name = method[:SHOWN_METHOD_LEN]
        pending = self._pending[request_id] = _PendingRequest()
        try:
            with trio.move_on_after(timeout):  # a full send queue counts against it too
                await self._send_frame(frame, checkpoint=False)  # the wait is the checkpoint
                await pending.done.wait()
        finally:
            self._pending.pop(request_id, None)
            self.session.cancel_request(request_id)
        if not pending.done.is_set():
            raise RequestFailed(f"{name}: no answer within {timeout:g}s")
        response = pending.response
        if response is None:
            raise ConnectionClosed(f"{name}: connection closed: {self.describe_close()}")
        if not response.ok:
            raise RequestFailed(f"{name}: peer answered with an error: {response.payload}")
        if not isinstance(response.payload, bytes):
            raise RequestFailed(f"{name}: the answer is {type(response.payload).__name__}, "
                                "not bytes")
        return response.payload

    def send_hello(self, fields: dict[str, Any]) -> bool:
        return self._outbox.put_nowait(self.session.hello_frame(fields), urgent=True)

    def admit(self) -> None:
        """The connection is registered: handle what the peer sends after its hello."""
        if self._admitted is not None:
            self._admitted.set()

    async def wait_hello(self, timeout: float) -> bool:
        """Wait for the peer's hello; False on timeout or when the connection closed first."""
        with trio.move_on_after(timeout):
            await self._hello_received.wait()  # also set when the connection closes
        return self.session.hello is not None and self.close_reason is None

    # --- closing ----------------------------------------------------------------------------

    async def close_gracefully(self, reason: CloseReason, timeout: float = 1.0) -> None:
        """Send what is queued (within ``timeout``), then close."""
        self._set_reason(reason)
        self._outbox.close()
        with trio.move_on_after(timeout):
            await self._outbox.drained.wait()
        self._scope.cancel()
        await self.closed.wait()

    def close(self, reason: CloseReason, detail: str = "") -> None:
        self._set_reason(reason, detail)
        self._scope.cancel()

    def describe_close(self) -> str:
        if self.close_reason is None:
            return "open"
        return f"{self.close_reason.value}: {self.close_detail}" if self.close_detail \
            else self.close_reason.value

    def _set_reason(self, reason: CloseReason, detail: str = "") -> None:
        if self.close_reason is None:
            self.close_reason, self.close_detail = reason, detail

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read and write until closed (by either side, a fatal error or ``close``)."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._write_loop)
                    if self._own_keepalive:
                        nursery.start_soon(self._keepalive_loop)
                    await self._read_loop()
                    nursery.cancel_scope.cancel()
        except* WriteStalled as group:
            self._set_reason(CloseReason.WRITE_TIMEOUT, str(group.exceptions[0]))
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            self._set_reason(CloseReason.TRANSPORT_ERROR, str(group.exceptions[0]))
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._finish()

    async def _finish(self) -> None:
        self._set_reason(CloseReason.CLOSED)
        self._outbox.close()
        for pending in self._pending.values():
            pending.done.set()
        self._hello_received.set()
        await self.stream.aclose()
        self.closed.set()

    async def _read_loop(self) -> None:
        try:
            if self._leftover:
                await self._handle_bytes(self._leftover)
                if self._over_pace():
                    await self._throttle()
            # No deadline per read: the keepalive task closes a peer silent for too long
            # (``_paced_at`` is when a read was last handled, ``_handling`` says one is).
            # Over a socket: ``receive_some``, cheaper. trio's tries the read first, and after
            # a frame the socket is nearly always empty: a failed ``recv`` (an exception), then
            # the wait, then the read, inside two context managers; a read per frame is most of
            # what a quiet pub/sub node does, and this way costs about 5 us less each (nine
            # trio readers on loopback, one frame each: 180 -> 130 us of CPU a round). Here, in
            # the loop itself (no coroutine per read): wait until readable (the checkpoint
            # every read must be), then one read.
            socket = self.stream.socket if isinstance(self.stream, trio.SocketStream) else None
            size = RECEIVE_SIZE_SMALL  # (RECEIVE_SIZE while reads come back full)
            while True:
                if socket is not None:
                    fd = socket.fileno()
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data: bytes | bytearray = os.read(fd, size)
                    except BlockingIOError:  # readable, yet nothing (spurious): wait again
                        continue
                else:
                    data = await self.stream.receive_some(size)
                size = RECEIVE_SIZE if len(data) == size else RECEIVE_SIZE_SMALL
                if not data:
                    self._set_reason(CloseReason.PEER_CLOSED)
                    return
                self._handling = True
                events = self.session.receive_data(bytes(data))
                if len(events) == 1 and type(events[0]) is EnvelopeReceived \
                        and not self._before_hello:
                    # Most reads carry one envelope for a service: handed over without the
                    # coroutine and the dispatch that ``_handle_events`` is.
                    self._deliver(events[0].envelope)
                else:
                    await self._handle_events(events)
                if self._over_pace():
                    await self._throttle()
                self._handling = False
        except _HandlerFailed as exc:
            self._set_reason(CloseReason.HANDLER_FAILED, str(exc))
        except RemoteProtocolError as exc:
            self._set_reason(CloseReason.PROTOCOL_ERROR, str(exc))

    def _over_pace(self) -> bool:
        """Hold a peer to ``max_frames_per_second`` (bursts of ``PACING_BURST_FACTOR`` times
        that): refill its frame tokens, take what it sent since; True when it is over, and the
        reader stops for a while (``_throttle``), so its TCP window fills and it waits, not our
        CPU or memory. A plain call, not a coroutine: it runs after every read."""
        now, rate = self._clock.current_time(), self._limits.max_frames_per_second
        frames = self.session.counters.frames_in
        self._tokens = min(PACING_BURST_FACTOR * rate, self._tokens + (now - self._paced_at)
                           * rate) - (frames - self._paced_frames)
        self._paced_at, self._paced_frames = now, frames
        return self._tokens < 0

    async def _throttle(self) -> None:
        self.counters["inbound_throttled"] += 1
        await trio.sleep(-self._tokens / self._limits.max_frames_per_second)

    async def _handle_bytes(self, data: bytes) -> None:
        await self._handle_events(self.session.receive_data(data))

    async def _handle_events(self, events: list[SessionEvent]) -> None:
        for count, event in enumerate(events, 1):
            if not count % EVENTS_PER_TURN:
                # One read can hold a thousand messages, each maybe a signature check: let the
                # other peers' readers and the timers have their turn between slices of it.
                await trio.lowlevel.checkpoint()
            if self._before_hello and isinstance(event, (EnvelopeReceived, RequestReceived)):
                raise RemoteProtocolError("a message before the hello")
            if isinstance(event, EnvelopeReceived):
                self._deliver(event.envelope)
            elif isinstance(event, RequestReceived):
                await self._on_request(event)
            elif isinstance(event, ResponseReceived):
                pending = self._pending.get(event.request_id)
                if pending is not None:
                    pending.response = event
                    pending.done.set()
            elif isinstance(event, HelloReceived):
                self._before_hello = False
                self._hello_received.set()
                if self._admitted is not None:  # the rest waits for registration (__init__)
                    await self._admitted.wait()
            elif isinstance(event, Malformed):
                level = logging.WARNING if self.session.counters.malformed == 1 else logging.DEBUG
                log.log(level, "malformed envelope from %s: %s", self.short_id,
                        event.error)
            elif isinstance(event, Unhandled):
                log.debug("ignored envelope of unknown type %s/%d from %s", event.type,
                          event.version, self.short_id)

    def _deliver(self, envelope: Envelope) -> None:
        handler = self._handlers.envelopes.get(envelope.kind)
        if handler is None:
            self.counters["unhandled"] += 1
            return
        try:
            handler(self.peer_id, envelope)
        except Exception as exc:  # our bug, triggered by this peer: drop the peer, not the node
            self.counters["handler_failed"] += 1
            kind = "{}/{}".format(*envelope.kind)
            self._handlers.failures[kind] += 1
            if self._handlers.failures[kind] == 1:
                log.exception("handling %s from %s failed; closing that connection", kind,
                              self.short_id)
            raise _HandlerFailed(f"{kind}: {type(exc).__name__}") from None

    async def _on_request(self, request: RequestReceived) -> None:
        """Serve a request: inline, as a task, or "busy" past the per-peer limit.

        Raises:
            RemoteProtocolError: the peer keeps asking far past what it is answered (many
                times the in-flight limit refused as busy, or unknown methods): a flood.
        """
        refused = self.counters["requests_busy"] + self.counters["unknown_method"]
        if refused > REQUEST_FLOOD_FACTOR * self._limits.max_inflight_requests:
            raise RemoteProtocolError(f"request flood: {refused} requests refused")
        method = self._handlers.methods.get(request.method)
        if method is None or method.inline:  # unknown methods are answered at once, too
            self._answer(request.request_id, *await self._call(request))
        elif self._inflight >= self._limits.max_inflight_requests or self._nursery is None:
            self.counters["requests_busy"] += 1
            self._answer(request.request_id, False, BUSY)
        else:
            self._inflight += 1
            self._nursery.start_soon(self._serve, request)

    async def _serve(self, request: RequestReceived) -> None:
        try:
            self._answer(request.request_id, *await self._call(request))
        finally:
            self._inflight -= 1

    async def _call(self, request: RequestReceived) -> tuple[bool, bytes | str]:
        method = self._handlers.methods.get(request.method)
        if method is None:
            self.counters["unknown_method"] += 1
            return False, f"unknown method {request.method[:SHOWN_METHOD_LEN]!r}"
        try:
            return True, await method.handler(self.peer_id, request.body)
        except BzzzError as exc:
            return False, str(exc)[:200]
        except Exception:  # a handler bug answers with an error; it does not end the node
            self.counters["handler_failed"] += 1
            log.exception("RPC handler %s failed", request.method)
            return False, "internal error"

    def _answer(self, request_id: int, ok: bool, answer: bytes | str) -> None:
        """Queue an answer. Never waits: a peer that does not read its answers loses them
        (the byte-bounded queue holds our memory; the write timeout closes the peer)."""
        try:
            frame = self.session.response_frame(request_id, ok, answer)
        except LocalProtocolError as exc:
            self.counters["send_too_large"] += 1
            log.warning("RPC answer to %s not sent: %s", self.short_id, exc)
            frame = self.session.response_frame(request_id, False, "answer too large")
        self._outbox.put_nowait(frame)

    async def _write_loop(self) -> None:
        await self._outbox.run()

    def keepalive(self, now: float) -> float | None:
        """One look: a ping when nothing else went out for ``keepalive_interval`` (any frame is
        a sign of life to the peer, so a connection that carries probes or heartbeats sends no
        pings: fewer frames and wake-ups on both sides), and the close of a peer that sent
        nothing for ``keepalive_misses`` intervals, checked here rather than by a deadline set
        and cleared around every read. Returns when the next look is due (None: closed)."""
        if self.close_reason is not None:
            return None
        interval = self._limits.keepalive_interval
        silence = interval * self._limits.keepalive_misses
        heard = now if self._handling else self._paced_at
        if now - heard >= silence:
            self.close(CloseReason.SILENT, f"for {silence:g}s")
            return None
        due = self._outbox.last_write + interval
        if due <= now:
            if self._ping is None:
                self._ping = self.session.keepalive_frame()
            self._outbox.put_nowait(self._ping, urgent=True)
            due = now + interval
        return min(due, heard + silence)

    async def _keepalive_loop(self) -> None:
        due: float | None = trio.current_time() + self._limits.keepalive_interval
        while due is not None:
            await trio.sleep_until(due)
            due = self.keepalive(trio.current_time())
