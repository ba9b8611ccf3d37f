"""One established, authenticated and encrypted connection to a peer. Uses trio.

The secure handshake (wire/noise.py) has already run. A connection owns two tasks: a reader
that decrypts, reassembles frames and decodes envelopes, and a writer that drains a bounded
queue (several frames per system call when they pile up). It answers keepalives, matches RPC
responses to their requests, and hands every other envelope to its owner. Anything a peer does
wrong is counted; a fatal error (bad MAC, oversized frame) or too many malformed envelopes close
the connection.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from ..errors import BzzzError, DecodeError, RemoteProtocolError
from ..wire.envelope import (
    DirectMessage,
    Envelope,
    UnknownMessage,
    decode_envelope,
    encode_envelope,
)
from ..wire.framing import FrameDecoder, encode_frame
from ..wire.noise import SecureStream

__all__ = ["Connection", "ConnectionClosed", "NetLimits", "RequestFailed"]

log = logging.getLogger(__name__)

KEEPALIVE = ("ka", 1)
HELLO = ("hello", 1)
RPC_REQUEST = ("rpc.req", 1)
RPC_RESPONSE = ("rpc.resp", 1)
INTERNAL_TYPES = frozenset({KEEPALIVE, HELLO, RPC_REQUEST, RPC_RESPONSE})
_RECEIVE_SIZE = 256 * 1024
_MAX_WRITE_BATCH = 64
_MAX_WRITE_BYTES = 1024 * 1024


class ConnectionClosed(BzzzError):
    """The connection closed before the operation could finish."""


class RequestFailed(BzzzError):
    """An RPC request timed out, or the peer answered with an error."""


@dataclass(frozen=True, slots=True)
class NetLimits:
    """Tunables of the transport, from the config."""

    max_frame_size: int = 1024 * 1024
    send_queue: int = 1024
    send_queue_bytes: int = 16 * 1024 * 1024
    keepalive_interval: float = 2.0
    # Silence for this many intervals closes the connection. Generous, because on a lossy
    # link (Wi-Fi, powerline) TCP's retransmission backoff alone can stall a healthy
    # connection for several seconds (five losses of one segment: 6.2 s), and a close costs a
    # reconnect and a membership probe; a peer that is really gone is found by membership.
    keepalive_misses: int = 10
    max_malformed: int = 10  # malformed envelopes tolerated before the peer is disconnected
    handshake_timeout: float = 5.0
    write_timeout: float = 10.0  # a write that makes no progress this long closes the link
    max_connections: int = 256
    max_per_ip: int = 16
    backoff_initial: float = 0.1
    backoff_max: float = 10.0


Dispatch = Callable[["Connection", Envelope], None]
OnRequest = Callable[["Connection", bytes], Awaitable[None]]


class Connection:
    """A secure connection to ``peer_id``; start ``run`` in a nursery, then send and request."""

    def __init__(
        self,
        stream: trio.SocketStream,
        secure: SecureStream,
        *,
        peer_id: bytes,
        initiator: bool,
        limits: NetLimits,
        known_types: frozenset[tuple[str, int]],
        dispatch: Dispatch,
        on_request: OnRequest,
        leftover: bytes = b"",
    ) -> None:
        self.stream = stream
        self.peer_id = peer_id
        self.initiator = initiator
        self.remote_ip = _remote_ip(stream)
        self.hello: dict[str, Any] = {}
        self.counters: dict[str, int] = {"frames_in": 0, "frames_out": 0, "bytes_in": 0,
                                         "bytes_out": 0, "malformed": 0, "unknown": 0,
                                         "dropped_sends": 0}
        self.close_reason = ""
        self._secure = secure
        self.handshake_hash = secure.session.handshake_hash
        self._leftover = leftover
        self._limits = limits
        self._known = known_types | INTERNAL_TYPES
        self._dispatch = dispatch
        self._on_request = on_request
        self._decoder = FrameDecoder(limits.max_frame_size)
        self._send_in, self._send_out = trio.open_memory_channel[bytes](limits.send_queue)
        self._pending: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._ids = itertools.count(1)
        self._scope = trio.CancelScope()
        self._hello_received = trio.Event()
        self._writer_done = trio.Event()
        self._write_lock = trio.StrictFIFOLock()
        self._queued_bytes = 0
        self._room = trio.Event()  # set whenever the writer takes frames off the queue
        self.closed = trio.Event()

    # --- sending ----------------------------------------------------------------------------

    def send_nowait(self, payload: bytes) -> bool:
        """Queue an encoded envelope; False (and counted) when the queue is full or closed.

        The queue is bounded twice: in frames (``send_queue``) and in bytes
        (``send_queue_bytes``), so a peer that reads slowly cannot make us hold gigabytes.
        """
        frame = encode_frame(payload, self._limits.max_frame_size)
        if not self._fits(len(frame)):
            self.counters["dropped_sends"] += 1
            return False
        try:
            self._send_in.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.counters["dropped_sends"] += 1
            return False
        self._queued_bytes += len(frame)
        return True

    def _fits(self, size: int) -> bool:
        # An empty queue takes any frame, however large, so nothing waits forever.
        return not self._queued_bytes or self._queued_bytes + size <= self._limits.send_queue_bytes

    async def send(self, payload: bytes) -> None:
        """Send an encoded envelope: at once when nothing is queued, else behind the queue.

        Writing from the caller's task when the line is idle saves two task switches per
        message, which is most of a round trip's cost on a quiet connection.

        Raises:
            ConnectionClosed: the connection is closed.
        """
        frame = encode_frame(payload, self._limits.max_frame_size)
        if self.closed.is_set() or self.close_reason:
            raise ConnectionClosed(f"connection closed: {self.close_reason}")
        if not self._send_out.statistics().current_buffer_used:
            try:
                self._write_lock.acquire_nowait()  # unlike `async with`, no scheduling round
            except trio.WouldBlock:
                pass
            else:
                try:
                    await self._write_locked([frame])
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self.close(f"transport error: {exc}")
                    raise ConnectionClosed(f"connection closed: {self.close_reason}") from None
                finally:
                    self._write_lock.release()
                return
        while not self._fits(len(frame)):
            if self.close_reason:
                raise ConnectionClosed(f"connection closed: {self.close_reason}")
            await self._room.wait()
        try:
            await self._send_in.send(frame)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed(f"connection closed: {self.close_reason}") from None
        self._queued_bytes += len(frame)

    async def _write(self, frames: list[bytes]) -> None:
        async with self._write_lock:
            await self._write_locked(frames)

    async def _write_locked(self, frames: list[bytes]) -> None:
        # Encrypt under the lock: nonces must reach the wire in the order they were used. Once
        # a nonce is spent its message must go out whole, so the write is shielded from
        # cancellation, and bounded in time instead: a peer that stops reading is closed.
        wire = self._secure.send(b"".join(frames))
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._limits.write_timeout) as timer:
                await self.stream.send_all(wire)
        if timer.cancelled_caught:
            self.close(f"peer did not read for {self._limits.write_timeout:g}s")
            raise trio.ClosedResourceError("write timed out")
        self.counters["frames_out"] += len(frames)
        self.counters["bytes_out"] += len(wire)

    def send_direct(self, kind: tuple[str, int], body: bytes) -> bool:
        return self.send_nowait(encode_envelope(DirectMessage(kind[0], kind[1], body)))

    async def request(self, method: str, body: bytes, *, timeout: float) -> bytes:
        """Send an RPC request and wait for its response.

        Raises:
            RequestFailed: no answer within ``timeout``, or the peer reported an error.
            ConnectionClosed: the connection closed first.
        """
        request_id = next(self._ids)
        done, slot = trio.Event(), list[Any]()
        self._pending[request_id] = (done, slot)
        try:
            with trio.move_on_after(timeout):  # a full send queue counts against it too
                await self.send(encode_envelope(DirectMessage(
                    *RPC_REQUEST, msgpack.packb([request_id, method, body]))))
                await done.wait()
        finally:
            self._pending.pop(request_id, None)
        if not done.is_set():
            raise RequestFailed(f"{method}: no answer within {timeout:g}s")
        if not slot:
            raise ConnectionClosed(f"{method}: connection closed: {self.close_reason}")
        ok, payload = slot
        if not ok:
            raise RequestFailed(f"{method}: peer answered with an error: {payload}")
        if not isinstance(payload, bytes):
            raise RequestFailed(f"{method}: the answer is {type(payload).__name__}, not bytes")
        return payload

    async def respond(self, request_id: int, ok: bool, payload: Any) -> None:
        body = msgpack.packb([request_id, ok, payload])
        await self.send(encode_envelope(DirectMessage(*RPC_RESPONSE, body)))

    async def wait_hello(self, timeout: float) -> bool:
        """Wait for the peer's hello; False on timeout or when the connection closed first."""
        with trio.move_on_after(timeout):
            await self._hello_received.wait()  # also set when the connection closes
        return bool(self.hello)

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read and write until closed (by either side, a fatal error or ``close``)."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    nursery.start_soon(self._keepalive_loop)
                    await self._read_loop()
                    nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as group:
            self._set_reason(f"transport error: {group.exceptions[0]}")
        finally:
            with trio.CancelScope(shield=True):
                await self._finish()

    async def close_gracefully(self, reason: str, timeout: float = 1.0) -> None:
        """Send what is queued (within ``timeout``), then close."""
        self._set_reason(reason)
        self._send_in.close()
        with trio.move_on_after(timeout):
            await self._writer_done.wait()
        self._scope.cancel()
        await self.closed.wait()

    def close(self, reason: str) -> None:
        self._set_reason(reason)
        self._scope.cancel()

    def _set_reason(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason

    async def _finish(self) -> None:
        self._set_reason("closed")
        self._send_in.close()
        for done, _ in self._pending.values():
            done.set()
        self._hello_received.set()
        self._room.set()  # senders waiting for room find the connection closed
        await self.stream.aclose()
        self.closed.set()

    async def _read_loop(self) -> None:
        try:
            if self._leftover:
                for request in self._handle_bytes(self._leftover):
                    await self._on_request(self, request)
            await self._read_forever()
        except RemoteProtocolError as exc:
            self._set_reason(f"protocol error: {exc}")

    async def _read_forever(self) -> None:
        silence = self._limits.keepalive_interval * self._limits.keepalive_misses
        while True:
            with trio.move_on_after(silence) as timer:
                data = await self.stream.receive_some(_RECEIVE_SIZE)
            if timer.cancelled_caught:
                self._set_reason(f"peer silent for {silence:g}s")
                return
            if not data:
                self._set_reason("peer closed the connection")
                return
            for request in self._handle_bytes(data):
                await self._on_request(self, request)

    def _handle_bytes(self, data: bytes) -> list[bytes]:
        """Decode what arrived; returns the bodies of RPC requests among it, in order."""
        self.counters["bytes_in"] += len(data)
        requests = []
        for chunk in self._secure.feed(data):
            for frame in self._decoder.feed(chunk):
                self.counters["frames_in"] += 1
                request = self._handle_frame(frame)
                if request is not None:
                    requests.append(request)
        return requests

    def _handle_frame(self, frame: bytes) -> bytes | None:
        try:
            envelope = decode_envelope(frame, self._known)
        except DecodeError as exc:
            self.counters["malformed"] += 1
            if self.counters["malformed"] == 1:
                log.warning("malformed envelope from %s: %s", self.peer_id.hex()[:12], exc)
            else:
                log.debug("malformed envelope from %s: %s", self.peer_id.hex()[:12], exc)
            if self.counters["malformed"] >= self._limits.max_malformed:
                raise RemoteProtocolError(
                    f"{self.counters['malformed']} malformed envelopes") from None
            return None
        if isinstance(envelope, DirectMessage):
            kind = (envelope.type, envelope.version)
            if kind == RPC_REQUEST:
                return envelope.body
            if kind == KEEPALIVE:
                return None
            if kind == RPC_RESPONSE:
                self._handle_response(envelope.body)
                return None
            if kind == HELLO:
                self._handle_hello(envelope.body)
                return None
        elif isinstance(envelope, UnknownMessage):
            self.counters["unknown"] += 1
        self._dispatch(self, envelope)
        return None

    def _handle_response(self, body: bytes) -> None:
        try:
            request_id, ok, payload = msgpack.unpackb(body)
            entry = self._pending.get(request_id)
        except (ValueError, TypeError, msgpack.UnpackException):
            self.counters["malformed"] += 1
            return
        if entry is not None and not entry[0].is_set():  # a repeated response is ignored
            entry[1].extend([bool(ok), payload])
            entry[0].set()

    def _handle_hello(self, body: bytes) -> None:
        try:
            hello = msgpack.unpackb(body)
            port = hello.get("port") if isinstance(hello, dict) else None
            if type(port) is not int or not 1 <= port <= 65535:
                raise ValueError("hello without a valid port")
        except (ValueError, TypeError, msgpack.UnpackException):
            raise RemoteProtocolError("malformed hello") from None
        self.hello = hello
        self._hello_received.set()

    async def _write_loop(self) -> None:
        try:
            await self._write_frames()
        finally:
            self._writer_done.set()

    async def _write_frames(self) -> None:
        async for frame in self._send_out:
            batch = [frame]
            size = len(frame)
            while len(batch) < _MAX_WRITE_BATCH and size < _MAX_WRITE_BYTES:
                try:
                    batch.append(self._send_out.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                size += len(batch[-1])
            self._queued_bytes -= size
            self._room.set()
            self._room = trio.Event()
            await self._write(batch)

    async def _keepalive_loop(self) -> None:
        ping = encode_envelope(DirectMessage(*KEEPALIVE, b""))
        while True:
            await trio.sleep(self._limits.keepalive_interval)
            self.send_nowait(ping)


def _remote_ip(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, IndexError):
        return "?"
