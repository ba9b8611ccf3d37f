"""A connection's outbox: urgent frames (membership, keepalives) go first and have room of
their own; bulk frames (relayed gossip) fill half the queue at most. Over a stream whose writes
wait for the test, so what is queued while the line is busy can be seen."""

from __future__ import annotations

import trio
import trio.testing

from bzzz_edge.net._outbox import URGENT_FRAMES, Outbox


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


def test_urgent_frames_overtake_a_full_queue_and_bulk_fills_half_of_it():
    async def main():
        gate, dropped = _Gate(), []
        box = Outbox(gate, _Plain(), frames=8, max_bytes=2**20, write_timeout=60,  # type: ignore[arg-type]
                     on_dropped=lambda: dropped.append(1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            assert box.put_nowait(b"first")
            await trio.testing.wait_all_tasks_blocked()  # the writer holds it, the line busy
            assert [box.put_nowait(b"gossip", bulk=True) for _ in range(5)] == [True] * 4 + [False]
            assert [box.put_nowait(b"rpc") for _ in range(5)] == [True] * 4 + [False]
            assert not box.put_nowait(b"gossip", bulk=True)
            assert box.put_nowait(b"ping", urgent=True)  # the ordinary queue is full
            assert len(dropped) == 3
            gate.opened.set()
            box.close()
            with trio.fail_after(5):
                await box.drained.wait()
        assert b"".join(gate.written).split(b"|")[:-1] == [
            b"first", b"ping", *[b"gossip"] * 4, *[b"rpc"] * 4]

    trio.run(main)


def test_urgent_frames_have_bounds_of_their_own():
    async def main():
        gate, dropped = _Gate(), []
        box = Outbox(gate, _Plain(), frames=8, max_bytes=2**20, write_timeout=60,  # type: ignore[arg-type]
                     on_dropped=lambda: dropped.append(1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            assert box.put_nowait(b"first")
            await trio.testing.wait_all_tasks_blocked()
            accepted = sum(box.put_nowait(b"ping", urgent=True) for _ in range(URGENT_FRAMES + 5))
            assert accepted == URGENT_FRAMES and len(dropped) == 5
            assert box.put_nowait(b"rpc")  # the ordinary queue is untouched
            gate.opened.set()
            box.close()
            with trio.fail_after(5):
                await box.drained.wait()
        assert b"".join(gate.written).split(b"|")[:-1] == [
            b"first", *[b"ping"] * URGENT_FRAMES, b"rpc"]

    trio.run(main)


def test_a_sender_waiting_for_room_is_woken_when_the_writer_takes_frames():
    async def main():
        gate = _Gate()
        box = Outbox(gate, _Plain(), frames=2, max_bytes=2**20, write_timeout=60,  # type: ignore[arg-type]
                     on_dropped=lambda: None)
        sent = trio.Event()

        async def sender():
            await box.put(b"late")  # the queue is full: waits for room
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.run)
            assert box.put_nowait(b"first")
            await trio.testing.wait_all_tasks_blocked()  # the writer holds it, the line busy
            assert box.put_nowait(b"a") and box.put_nowait(b"b")
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            gate.opened.set()  # the writer finishes, takes "a" and "b": room for "late"
            with trio.fail_after(5):
                await sent.wait()
            box.close()
            with trio.fail_after(5):
                await box.drained.wait()
        assert b"".join(gate.written).split(b"|")[:-1] == [b"first", b"a", b"b", b"late"]

    trio.run(main)
