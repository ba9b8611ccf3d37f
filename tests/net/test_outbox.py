"""A connection's outbox: urgent frames (membership, keepalives) go first and have room of
their own; bulk frames (relayed gossip) fill half the queue at most. Over a stream whose writes
wait for the test, so what is queued while the line is busy can be seen."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bzzz_edge.net._outbox import URGENT_FRAMES, Outbox, WriteStalled


class _Gate:
    """A stream whose writes wait until ``opened`` is set; keeps what was written."""

    def __init__(self) -> None:
        self.opened = trio.Event()
        self.written: list[bytes] = []

    async def send_all(self, data: bytes) -> None:
        await self.opened.wait()
        self.written.append(data)


class _Plain:
    """A session that seals frames as they are (the outbox only calls ``seal``)."""

    @staticmethod
    def seal(frames: list[bytes]) -> bytes:
        return b"|".join(frames) + b"|"


def _outbox(frames: int) -> tuple[_Gate, list[int], Outbox]:
    """An outbox of ``frames`` ordinary frames over a gated stream, and its drop record."""
    gate, dropped = _Gate(), []
    box = Outbox(gate, _Plain(), frames=frames, max_bytes=2**20, write_timeout=60,  # type: ignore[arg-type]
                 on_dropped=lambda: dropped.append(1))
    return gate, dropped, box


async def _occupy(box: Outbox) -> None:
    """One frame in the writer's hands, waiting on the gate: the line is busy."""
    assert box.put_nowait(b"first")
    await trio.testing.wait_all_tasks_blocked()


async def _drain(box: Outbox, gate: _Gate) -> list[bytes]:
    """Open the line, close the outbox and wait for it to drain; the frames written, in order."""
    gate.opened.set()
    box.close()
    with trio.fail_after(5):
        await box.drained.wait()
    return b"".join(gate.written).split(b"|")[:-1]


def test_urgent_frames_overtake_a_full_queue_and_bulk_fills_half_of_it():
    async def main():
        gate, dropped, box = _outbox(frames=8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            await _occupy(box)
            assert [box.put_nowait(b"gossip", bulk=True) for _ in range(5)] == [True] * 4 + [False]
            assert [box.put_nowait(b"rpc") for _ in range(5)] == [True] * 4 + [False]
            assert not box.put_nowait(b"gossip", bulk=True)
            assert box.put_nowait(b"ping", urgent=True)  # the ordinary queue is full
            assert len(dropped) == 3
            written = await _drain(box, gate)
        assert written == [b"first", b"ping", *[b"gossip"] * 4, *[b"rpc"] * 4]

    trio.run(main)


def test_urgent_frames_have_bounds_of_their_own():
    async def main():
        gate, dropped, box = _outbox(frames=8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            await _occupy(box)
            accepted = sum(box.put_nowait(b"ping", urgent=True) for _ in range(URGENT_FRAMES + 5))
            assert accepted == URGENT_FRAMES and len(dropped) == 5
            assert box.put_nowait(b"rpc")  # the ordinary queue is untouched
            written = await _drain(box, gate)
        assert written == [b"first", *[b"ping"] * URGENT_FRAMES, b"rpc"]

    trio.run(main)


def test_a_sender_waiting_for_room_is_woken_when_the_writer_takes_frames():
    async def main():
        gate, _, box = _outbox(frames=2)
        sent = trio.Event()

        async def sender():
            await box.put(b"late")  # the queue is full: waits for room
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            await _occupy(box)
            assert box.put_nowait(b"a") and box.put_nowait(b"b")
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            gate.opened.set()  # the writer finishes, takes "a" and "b": room for "late"
            with trio.fail_after(5):
                await sent.wait()
            written = await _drain(box, gate)
        assert written == [b"first", b"a", b"b", b"late"]

    trio.run(main)


# --- over a real socket: writes straight from ``put_nowait`` ------------------------------------

def _socket_outbox(write_timeout: float = 60) -> tuple[trio.SocketStream, Outbox, list[int]]:
    """An outbox over one end of a real socket pair; the other end, to read from."""
    ours, theirs = trio.socket.socketpair()
    dropped: list[int] = []
    box = Outbox(trio.SocketStream(ours), _Plain(), frames=1024, max_bytes=2**26,  # type: ignore[arg-type]
                 write_timeout=write_timeout, on_dropped=lambda: dropped.append(1))
    return trio.SocketStream(theirs), box, dropped


async def _read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    with trio.fail_after(10):
        while len(data) < size:
            chunk = await stream.receive_some(size - len(data))
            assert chunk, "the socket closed early"
            data += chunk
    return bytes(data)


def test_an_idle_line_is_written_at_once_without_the_writer_task():
    async def main():
        peer, box, _ = _socket_outbox()
        assert box.put_nowait(b"ping", urgent=True) and box.put_nowait(b"answer")
        # No writer task runs: the bytes are on the socket already.
        assert await _read_exactly(peer, len(b"ping|answer|")) == b"ping|answer|"

    trio.run(main)


def test_what_the_socket_does_not_take_goes_first_then_the_queue_in_order():
    async def main():
        peer, box, dropped = _socket_outbox()
        frames = [bytes([65 + i % 26]) * 60_000 + b"#%d" % i for i in range(200)]
        for frame in frames:  # far more than a socket buffer holds
            assert box.put_nowait(frame)
        assert not dropped
        expected = b"".join(frame + b"|" for frame in frames)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            # Until the peer reads, the kernel holds part of it and the writer waits on the rest.
            received = await _read_exactly(peer, len(expected))
            box.close()
            with trio.fail_after(10):
                await box.drained.wait()
        assert received == expected  # nothing lost, doubled or reordered

    trio.run(main)


def test_a_peer_that_stops_reading_a_direct_writes_remainder_stalls_the_writer():
    async def main():
        peer, box, _ = _socket_outbox(write_timeout=5)
        for _ in range(200):  # 12 MB: far more than the socket's buffer
            assert box.put_nowait(b"x" * 60_000)
        with trio.fail_after(60):  # the autojump clock: 5 s of the outbox's time, at once
            with pytest.raises(WriteStalled):
                await box.run()
        del peer  # kept open, and never read

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_closed_socket_is_never_written_directly():
    async def main():
        ours, theirs = trio.socket.socketpair()
        stream, dropped = trio.SocketStream(ours), []
        box = Outbox(stream, _Plain(), frames=8, max_bytes=2**20, write_timeout=60,  # type: ignore[arg-type]
                     on_dropped=lambda: dropped.append(1))
        await stream.aclose()
        assert box.put_nowait(b"late")  # queued for the writer, which meets the closed socket
        with pytest.raises(trio.ClosedResourceError):
            await box.run()
        assert not dropped
        theirs.close()

    trio.run(main)
