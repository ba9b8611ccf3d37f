"""What one connection has yet to write: two queues, bounded in frames and bytes. Uses trio.

Frames are encrypted as they are written, under a lock, because Noise nonces must reach the
wire in the order they were used; once a nonce is spent its message must go out whole, so a
write is shielded from cancellation and bounded in time instead (``write_timeout``): a peer
that stops reading is closed, never waited on for ever. When nothing is queued, a sender
writes from its own task (saving two task switches, most of a quiet round trip); otherwise the
writer task drains the queues, several frames per system call. Over a socket, a write when
the line is idle is one non-blocking ``send`` straight from the sender's task, no wake-up of
the writer: for a sender that cannot wait (``put_nowait``: membership, Raft, RPC answers) what
the kernel does not take at once (its buffer is full) is left to the writer, which sends it
before anything else, under the write timeout; a sender that can wait (``put``: RPC requests)
sends the rest itself through ``send_all``, under the same timeout.

Urgent frames (membership probes and acks, keepalives: what tells a live peer from a dead
one) have their own small queue, written before anything else, and their own bounds. Without
it, eight insiders flooding one node at once filled its 1,024-frame queue to an honest peer
with relayed gossip: the SWIM pings and acks to that peer were dropped as "queue full", or
waited behind a second of gossip, and the two honest nodes declared each other dead. Frames
are queued unencrypted, so reordering them is free (nonces are spent at write time).
Bulk frames (relayed gossip: best effort, repaired by the protocol when lost) may fill half of
the ordinary queue only, so a flood relayed to a peer leaves room for its RPC answers and
consensus messages.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable

import trio

from ..wire.session import Session

__all__ = ["Outbox", "WriteStalled"]

_MAX_WRITE_BATCH = 64
_MAX_WRITE_BYTES = 1024 * 1024
# The urgent queue's bounds: membership sends a few small messages a second to a peer (a
# full-state exchange is split into messages of 64 KiB at most), so this is room for seconds
# of them, and at most 4 MiB more than the ordinary queue's bound.
URGENT_FRAMES = 256
URGENT_BYTES = 4 * 1024 * 1024


class WriteStalled(trio.ClosedResourceError):
    """The peer read nothing for ``write_timeout`` seconds."""


class Outbox:
    """Args:
        frames: most ordinary frames queued; max_bytes: most bytes of them queued (an empty
            queue takes any single frame, so nothing waits for ever). Urgent frames have their
            own bounds (``URGENT_FRAMES``, ``URGENT_BYTES``).
        on_dropped: called once per frame refused (queue full or closed).

    ``put_nowait(frame, urgent=True)`` queues ahead of the rest; ``bulk=True`` only while the
    ordinary queue is less than half full (in frames and bytes).
    """

    def __init__(self, stream: trio.abc.Stream, session: Session, *, frames: int,
                 max_bytes: int, write_timeout: float, on_dropped: Callable[[], None]) -> None:
        self._stream = stream
        self._session = session
        self._max_frames = frames
        self._max_bytes = max_bytes
        self._write_timeout = write_timeout
        self._on_dropped = on_dropped
        self._queue: deque[bytes] = deque()
        self._urgent: deque[bytes] = deque()
        self._closed = False
        self._lock = trio.StrictFIFOLock()
        self._idle = trio.lowlevel.ParkingLot()  # the writer, waiting for frames or close
        self._room = trio.Event()  # set when the writer takes frames off the queue...
        self._room_wanted = False  # ...and a sender waits for room
        self.queued_bytes = 0
        self.urgent_bytes = 0
        self.drained = trio.Event()  # the writer finished (queue closed and written)
        self.last_write = -math.inf  # trio time the writer last handed frames to the stream
        # The socket, for writes straight from ``put_nowait`` (None: another kind of stream).
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        # Sealed bytes a direct write left over: the writer's, before anything else.
        self._unsent: bytes | memoryview = b""

    def fits(self, size: int, share: int = 1) -> bool:
        """Whether a frame of ``size`` bytes fits in ``1 / share`` of the ordinary queue."""
        return not self._queue or (len(self._queue) < self._max_frames // share
                                   and self.queued_bytes + size <= self._max_bytes // share)

    def _urgent_fits(self, size: int) -> bool:
        return not self._urgent or (len(self._urgent) < URGENT_FRAMES
                                    and self.urgent_bytes + size <= URGENT_BYTES)

    def put_nowait(self, frame: bytes, *, urgent: bool = False, bulk: bool = False) -> bool:
        """Queue ``frame`` (``urgent``: ahead of every ordinary frame; ``bulk``: in half the
        ordinary queue at most); False (and reported as dropped) when there is no room."""
        size = len(frame)
        room = self._urgent_fits(size) if urgent else self.fits(size, 2 if bulk else 1)
        if self._closed or not room:
            self._on_dropped()
            return False
        if self._written_now(frame):
            return True
        if urgent:
            self._urgent.append(frame)
            self.urgent_bytes += len(frame)
        else:
            self._queue.append(frame)
            self.queued_bytes += len(frame)
        if self._idle:
            self._idle.unpark_all()
        return True

    def _written_now(self, frame: bytes) -> bool:
        """Over a socket with nothing queued, left over or being written: seal ``frame`` and
        write it from the caller's task (True); what the socket does not take at once (a full
        buffer, or an error the writer will meet) goes to the writer."""
        if self._socket is None or self._queue or self._urgent or self._unsent or \
                self._lock.locked():
            return False
        fd = self._socket.fileno()  # read at each write: a closed socket's is -1, never reused
        if fd < 0:
            return False
        wire = self._session.seal([frame])
        self.last_write = trio.current_time()
        try:
            sent = os.write(fd, wire)
        except OSError:  # EAGAIN, or a broken connection: the writer's send reports it
            sent = 0
        if sent < len(wire):
            self._unsent = memoryview(wire)[sent:]  # (no copy of a large frame)
            self._idle.unpark_all()
        return True

    async def put(self, frame: bytes, *, checkpoint: bool = True) -> None:
        """Write ``frame`` now if the line is idle, else queue it, waiting for room.

        ``checkpoint=False``: a caller that waits right after (an RPC request waits for its
        answer) skips the scheduling round a write that the kernel took whole would add.

        Raises:
            trio.ClosedResourceError: the outbox is closed, or the write stalled.
            trio.BrokenResourceError, OSError: the transport failed.
        """
        if self._closed:
            raise trio.ClosedResourceError("the outbox is closed")
        if not self._queue and not self._urgent and not self._unsent:
            try:
                self._lock.acquire_nowait()  # unlike `async with`, no scheduling round
            except trio.WouldBlock:
                pass
            else:
                try:
                    await self._write_idle(frame, checkpoint)
                finally:
                    self._lock.release()
                return
        await trio.lowlevel.checkpoint()  # a checkpoint even when there is room at once
        while not self._closed and not self.fits(len(frame)):
            self._room_wanted = True
            await self._room.wait()
        if self._closed:
            raise trio.ClosedResourceError("the outbox is closed")
        self.put_nowait(frame)

    def close(self) -> None:
        """Take no more frames; the writer finishes what is queued."""
        self._closed = True
        self._idle.unpark_all()
        self._room.set()  # senders waiting for room find it closed

    def _take(self) -> list[bytes]:
        """The next batch to write: urgent frames first, then ordinary ones."""
        batch: list[bytes] = []
        size = 0
        for queue in (self._urgent, self._queue):
            while queue and len(batch) < _MAX_WRITE_BATCH and size < _MAX_WRITE_BYTES:
                batch.append(queue.popleft())
                size += len(batch[-1])
                if queue is self._urgent:
                    self.urgent_bytes -= len(batch[-1])
                else:
                    self.queued_bytes -= len(batch[-1])
        return batch

    async def run(self) -> None:
        """The writer: drain the queues until the outbox is closed and empty."""
        try:
            while True:
                if self._unsent:  # a direct write's remainder: nonces spent, it goes first
                    await self._write_unsent()
                    continue
                batch = self._take()
                if not batch:
                    if self._closed:
                        return
                    await self._idle.park()
                    continue
                if self._room_wanted:  # only a sender waiting for room needs the wake-up
                    self._room_wanted = False
                    self._room.set()
                    self._room = trio.Event()
                await trio.lowlevel.checkpoint_if_cancelled()  # what `async with` checked
                try:
                    self._lock.acquire_nowait()  # a free lock costs no scheduling round
                except trio.WouldBlock:
                    await self._lock.acquire()
                try:
                    await self._write_locked(batch)
                finally:
                    self._lock.release()
        finally:
            self.drained.set()

    async def _write_unsent(self) -> None:
        await self._lock.acquire()  # free: a direct write is only made when it is
        try:
            wire, self._unsent = self._unsent, b""
            await self._send_locked(wire)
        finally:
            self._lock.release()

    async def _write_idle(self, frame: bytes, checkpoint: bool) -> None:
        """Under the lock, nothing queued: one non-blocking write of the sealed frame from the
        caller's task (no ``send_all``: its scope, conflict detector and socket wrapper cost
        more than the write for a small frame), then ``send_all`` for what the kernel did not
        take at once, so a bulk frame waits for the kernel here, not in the writer (leaving
        remainders to the writer cost a third of one connection's throughput)."""
        fd = self._socket.fileno() if self._socket is not None else -1
        if fd < 0:  # another kind of stream, or a closed socket: send_all says what is wrong
            await self._write_locked([frame])
            return
        wire = self._session.seal([frame])
        try:
            sent = os.write(fd, wire)
        except BlockingIOError:
            sent = 0
        except OSError:  # a broken connection: send_all raises it as trio does
            sent = 0
        if sent < len(wire):
            await self._send_locked(memoryview(wire)[sent:] if sent else wire)
            return
        self.last_write = trio.current_time()
        if checkpoint:
            await trio.lowlevel.checkpoint()

    async def _write_locked(self, frames: list[bytes]) -> None:
        await self._send_locked(self._session.seal(frames))

    async def _send_locked(self, wire: bytes | memoryview) -> None:
        self.last_write = now = trio.current_time()
        # Shielded from the outside, bounded by its own deadline (one scope, not two).
        with trio.CancelScope(shield=True, deadline=now + self._write_timeout) as timer:
            await self._stream.send_all(wire)
        if timer.cancelled_caught:
            raise WriteStalled(f"for {self._write_timeout:g}s")
