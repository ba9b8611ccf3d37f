"""What one connection has yet to write: a queue bounded in frames and bytes. Uses trio.

Frames are encrypted as they are written, under a lock, because Noise nonces must reach the
wire in the order they were used; once a nonce is spent its message must go out whole, so a
write is shielded from cancellation and bounded in time instead (``write_timeout``): a peer
that stops reading is closed, never waited on for ever. When nothing is queued, a sender
writes from its own task (saving two task switches, most of a quiet round trip); otherwise the
writer task drains the queue, several frames per system call.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..wire.session import Session

__all__ = ["Outbox", "WriteStalled"]

_MAX_WRITE_BATCH = 64
_MAX_WRITE_BYTES = 1024 * 1024


class WriteStalled(trio.ClosedResourceError):
    """The peer read nothing for ``write_timeout`` seconds."""


class Outbox:
    """Args:
        frames: most frames queued; max_bytes: most bytes queued (an empty queue takes any
            single frame, so nothing waits for ever).
        on_dropped: called once per frame refused (queue full or closed).
    """

    def __init__(self, stream: trio.abc.Stream, session: Session, *, frames: int,
                 max_bytes: int, write_timeout: float, on_dropped: Callable[[], None]) -> None:
        self._stream = stream
        self._session = session
        self._max_bytes = max_bytes
        self._write_timeout = write_timeout
        self._on_dropped = on_dropped
        self._in, self._out = trio.open_memory_channel[bytes](frames)
        self._lock = trio.StrictFIFOLock()
        self._room = trio.Event()  # set whenever the writer takes frames off the queue
        self.queued_bytes = 0
        self.drained = trio.Event()  # the writer finished (queue closed and written)

    def fits(self, size: int) -> bool:
        return not self.queued_bytes or self.queued_bytes + size <= self._max_bytes

    def put_nowait(self, frame: bytes) -> bool:
        """Queue ``frame``; False (and reported as dropped) when there is no room."""
        if not self.fits(len(frame)):
            self._on_dropped()
            return False
        try:
            self._in.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._on_dropped()
            return False
        self.queued_bytes += len(frame)
        return True

    async def put(self, frame: bytes) -> None:
        """Write ``frame`` now if the line is idle, else queue it, waiting for room.

        Raises:
            trio.ClosedResourceError: the outbox is closed, or the write stalled.
            trio.BrokenResourceError, OSError: the transport failed.
        """
        if not self._out.statistics().current_buffer_used:
            try:
                self._lock.acquire_nowait()  # unlike `async with`, no scheduling round
            except trio.WouldBlock:
                pass
            else:
                try:
                    await self._write_locked([frame])
                finally:
                    self._lock.release()
                return
        while not self.fits(len(frame)):
            await self._room.wait()
        await self._in.send(frame)
        self.queued_bytes += len(frame)

    def close(self) -> None:
        """Take no more frames; the writer finishes what is queued."""
        self._in.close()
        self._room.set()  # senders waiting for room find it closed

    async def run(self) -> None:
        """The writer: drain the queue until it is closed and empty."""
        try:
            async for frame in self._out:
                batch, size = [frame], len(frame)
                while len(batch) < _MAX_WRITE_BATCH and size < _MAX_WRITE_BYTES:
                    try:
                        batch.append(self._out.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    size += len(batch[-1])
                self.queued_bytes -= size
                self._room.set()
                self._room = trio.Event()
                async with self._lock:
                    await self._write_locked(batch)
        finally:
            self.drained.set()

    async def _write_locked(self, frames: list[bytes]) -> None:
        wire = self._session.seal(frames)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._write_timeout) as timer:
                await self._stream.send_all(wire)
        if timer.cancelled_caught:
            raise WriteStalled(f"for {self._write_timeout:g}s")
