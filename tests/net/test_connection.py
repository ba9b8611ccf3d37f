"""A connection's trio shell over in-memory streams and trio's mock clock: no sockets, no
waiting in real time. The loopback tests in test_manager.py cover the same over TCP."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from bzzz_edge.errors import BzzzError
from bzzz_edge.net import BUSY, CloseReason, Connection, NetLimits, RequestFailed
from bzzz_edge.net._handlers import Handlers
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope
from bzzz_edge.wire.types import SWIM

LIMITS = NetLimits(keepalive_interval=1.0, max_inflight_requests=2)


def _ends(secure_pair, limits=LIMITS, a_handlers=None, b_handlers=None, *,
          b_admits=False):
    pair = secure_pair()
    sa, sb = pair.sessions(max_frame_size=limits.max_frame_size)
    left, right = trio.testing.memory_stream_pair()
    a = Connection(left, sa, peer_id=pair.b.node_id, initiator=True, remote_ip="a",
                   limits=limits, handlers=a_handlers or Handlers())
    b = Connection(right, sb, peer_id=pair.a.node_id, initiator=False, remote_ip="b",
                   limits=limits, handlers=b_handlers or Handlers(),
                   admit_after_hello=b_admits)
    return a, b


def _run(main):
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_rpc_round_trip_and_errors(secure_pair):
    handlers = Handlers()

    async def echo(peer, body):
        return b"echo:" + body

    async def broken(peer, body):
        raise ValueError("bug")

    async def refusing(peer, body):
        raise BzzzError("no such task")

    handlers.on_rpc("echo", echo, inline=True)
    handlers.on_rpc("broken", broken)
    handlers.on_rpc("refusing", refusing)

    async def main():
        a, b = _ends(secure_pair, b_handlers=handlers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            assert await a.request("echo", b"x", timeout=5) == b"echo:x"
            with pytest.raises(RequestFailed, match="internal error"):
                await a.request("broken", b"", timeout=5)
            with pytest.raises(RequestFailed, match="no such task"):
                await a.request("refusing", b"", timeout=5)
            with pytest.raises(RequestFailed, match="unknown method"):
                await a.request("nope", b"", timeout=5)
            assert b.close_reason is None and b.counters["handler_failed"] == 1
            nursery.cancel_scope.cancel()

    _run(main)


def test_what_comes_with_the_hello_waits_until_the_connection_is_admitted(secure_pair):
    # The manager registers a connection once it has the peer's hello; a message in the same
    # read, handled first, would be answered while this node has no connection to its sender.
    handlers, seen = Handlers(), []
    handlers.on_envelope(SWIM, lambda peer, envelope: seen.append(envelope.body))

    async def main():
        a, b = _ends(secure_pair, b_handlers=handlers, b_admits=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            a.send_hello({"port": 1})
            assert a.send_nowait(encode_envelope(DirectMessage(*SWIM.key, b"right behind")))
            assert await b.wait_hello(5)
            await trio.testing.wait_all_tasks_blocked()
            assert seen == []  # held: b is not admitted yet
            b.admit()
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [b"right behind"]
            nursery.cancel_scope.cancel()

    _run(main)


def test_requests_beyond_the_per_peer_limit_are_answered_busy(secure_pair):
    handlers, release = Handlers(), trio.Event()

    async def slow(peer, body):
        await release.wait()
        return b"done"

    handlers.on_rpc("slow", slow)

    async def main():
        a, b = _ends(secure_pair, b_handlers=handlers)
        results = []

        async def ask():
            try:
                results.append(await a.request("slow", b"", timeout=50))
            except RequestFailed as exc:
                results.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            async with trio.open_nursery() as askers:
                for _ in range(5):
                    askers.start_soon(ask)
                await trio.testing.wait_all_tasks_blocked()
                assert results == [f"slow: peer answered with an error: {BUSY}"] * 3
                release.set()
            assert results.count(b"done") == 2
            assert b.counters["requests_busy"] == 3
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_failing_envelope_handler_closes_only_that_connection_without_a_ban(secure_pair):
    handlers = Handlers()

    def explode(peer, envelope):
        raise KeyError("bug in a service")

    handlers.on_envelope(SWIM, explode)

    async def main():
        a, b = _ends(secure_pair, b_handlers=handlers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            a.send_nowait(encode_envelope(DirectMessage(*SWIM.key, b"")))
            with trio.fail_after(5):
                await b.closed.wait()
            assert b.close_reason is CloseReason.HANDLER_FAILED
            assert not b.close_reason.misbehaved
            assert handlers.failures["swim/1"] == 1
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_silent_peer_is_closed_after_the_missed_keepalives(secure_pair):
    async def main():
        _a, b = _ends(secure_pair)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run)  # a never runs: it neither reads nor sends keepalives
            began = trio.current_time()
            await b.closed.wait()
            assert b.close_reason is CloseReason.SILENT
            assert trio.current_time() - began == pytest.approx(
                LIMITS.keepalive_misses * LIMITS.keepalive_interval)
            nursery.cancel_scope.cancel()

    _run(main)


def test_keepalives_keep_a_quiet_connection_open(secure_pair):
    async def main():
        a, b = _ends(secure_pair)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            await trio.sleep(100 * LIMITS.keepalive_interval)  # mock time: instant
            assert a.close_reason is None and b.close_reason is None
            nursery.cancel_scope.cancel()

    _run(main)


def test_keepalives_only_go_out_when_nothing_else_did(secure_pair):
    handlers = Handlers()
    handlers.on_envelope(SWIM, lambda sender, envelope: None)
    probe = encode_envelope(DirectMessage(*SWIM.key, b"probe"))

    async def main():
        a, b = _ends(secure_pair, b_handlers=handlers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            await trio.sleep(LIMITS.keepalive_interval / 10)  # the hellos
            sent = a.session.counters.frames_out
            for _ in range(20):  # traffic every half interval: no keepalive needed
                assert a.send_nowait(probe)
                await trio.sleep(LIMITS.keepalive_interval / 2)
            assert a.session.counters.frames_out - sent == 20
            sent = a.session.counters.frames_out
            await trio.sleep(10 * LIMITS.keepalive_interval)  # quiet: one an interval
            assert a.session.counters.frames_out - sent in (9, 10, 11)
            assert a.close_reason is None and b.close_reason is None
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_message_too_large_for_a_frame_is_refused_and_counted(secure_pair):
    limits = dataclasses.replace(LIMITS, max_frame_size=1024)

    async def main():
        a, b = _ends(secure_pair, limits=limits)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            assert not a.send_nowait(encode_envelope(DirectMessage(*SWIM.key, bytes(4096))))
            assert a.counters["send_too_large"] == 1 and a.close_reason is None
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_flooding_peer_is_paced_not_queued(secure_pair):
    limits = dataclasses.replace(LIMITS, max_frames_per_second=100.0)
    handlers, got = Handlers(), []
    handlers.on_envelope(SWIM, lambda peer, envelope: got.append(trio.current_time()))

    async def main():
        a, b = _ends(secure_pair, limits=limits, b_handlers=handlers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            began = trio.current_time()
            frame = encode_envelope(DirectMessage(*SWIM.key, b""))
            for _ in range(1000):  # a flood: 800 frames past the burst of 200...
                a.send_nowait(frame)
            with trio.fail_after(60):
                while len(got) < 1000:
                    await trio.sleep(0.01)
            a.send_nowait(frame)  # ...so the next frame is read once they are paid for
            with trio.fail_after(60):
                while len(got) < 1001:
                    await trio.sleep(0.01)
            assert got[1000] - began >= (1000 - 200) / 100 - 0.1
            assert b.counters["inbound_throttled"] >= 1 and b.close_reason is None
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_request_flood_past_the_limit_is_a_protocol_error(secure_pair):
    handlers, release = Handlers(), trio.Event()

    async def slow(peer, body):
        await release.wait()
        return b""

    handlers.on_rpc("slow", slow)

    async def main():
        a, b = _ends(secure_pair, b_handlers=handlers)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run)
            nursery.start_soon(b.run)
            for _ in range(30):  # 2 served, 28 busy: within 16 x the limit of 2
                a.send_nowait(a.session.request_frame("slow", b"")[1][4:])
            await trio.testing.wait_all_tasks_blocked()
            assert b.close_reason is None and b.counters["requests_busy"] == 28
            for _ in range(10):
                a.send_nowait(a.session.request_frame("nope", b"")[1][4:])
            with trio.fail_after(5):
                await b.closed.wait()
            assert b.close_reason is CloseReason.PROTOCOL_ERROR
            assert "request flood" in b.close_detail
            release.set()
            nursery.cancel_scope.cancel()

    _run(main)
