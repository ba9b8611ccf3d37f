"""A subscription's queue is bounded: a slow consumer loses the oldest deliveries, counted."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bzzz_edge.gossip.delivery import Delivery, Published, Subscription
from bzzz_edge.gossip.latency import LatencyHistogram
from bzzz_edge.ids import format_node_id

ORIGIN = bytes(range(32))


def _delivery(seq: int, data: bytes = b"x") -> Delivery:
    return Delivery("t", ORIGIN, seq, 1_700_000_000_000, 1, data)


def test_slow_consumer_loses_oldest_counted_and_told():
    closed = []
    sub = Subscription("t", 3, closed.append)
    results = [sub.put(_delivery(seq)) for seq in range(10)]
    assert results == [True] * 3 + [False] * 7
    assert len(sub) == 3 and sub.dropped == 7 and sub.received == 10
    first = sub.receive_nowait()
    assert (first.seq, first.missed) == (7, 7)  # told how many it lost just before
    assert [sub.receive_nowait().missed for _ in range(2)] == [0, 0]
    with pytest.raises(trio.WouldBlock):
        sub.receive_nowait()
    sub.close()
    sub.close()
    assert closed == [sub]
    with pytest.raises(trio.EndOfChannel):
        sub.receive_nowait()


def test_memory_stays_bounded_under_a_flood():
    sub = Subscription("t", 16, lambda s: None)
    for seq in range(100_000):
        sub.put(_delivery(seq))
    assert len(sub) == 16 and sub.dropped == 100_000 - 16


def test_iterator_waits_for_deliveries_and_ends_on_close():
    async def main():
        sub = Subscription("t", 8, lambda s: None)
        got = []

        async def consume():
            async for delivery in sub:
                got.append(delivery.seq)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            sub.put(_delivery(1))
            sub.put(_delivery(2))
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
        assert got == [1, 2]

    trio.run(main)


def test_waiting_receivers_are_woken_cancelled_and_closed_cleanly():
    """Several tasks may wait on one subscription: a delivery wakes them (one gets it, the
    others wait again), a cancelled wait leaves no trace behind, and close ends every wait."""
    async def main():
        sub = Subscription("t", 8, lambda s: None)
        got: list[tuple[str, int]] = []
        ended: list[str] = []

        async def receiver(name: str) -> None:
            try:
                while True:
                    got.append((name, (await sub.receive()).seq))
            except trio.EndOfChannel:
                ended.append(name)

        scopes: list[trio.CancelScope] = []

        async def cancelled_receiver() -> None:
            with trio.CancelScope() as scope:
                scopes.append(scope)
                await receiver("c")
            ended.append("c cancelled")

        async with trio.open_nursery() as nursery:
            for name in ("a", "b"):
                nursery.start_soon(receiver, name)
            nursery.start_soon(cancelled_receiver)
            await trio.testing.wait_all_tasks_blocked()
            scopes[0].cancel()  # c's wait ends with the cancellation (not a delivery)
            await trio.testing.wait_all_tasks_blocked()
            sub.put(_delivery(1))
            await trio.testing.wait_all_tasks_blocked()
            sub.put(_delivery(2))
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
        assert sorted(seq for _, seq in got) == [1, 2]
        assert sorted(ended) == ["a", "b", "c cancelled"]

    trio.run(main)


def test_json_shape_of_a_delivery():
    text = _delivery(5, b"hello").as_json()
    assert text["origin"] == format_node_id(ORIGIN) and text["seq"] == 5
    assert text["id"] == f"{format_node_id(ORIGIN)}:5"
    assert (text["data"], text["data_b64"], text["hops"]) == ("hello", "aGVsbG8=", 1)
    assert text["timestamp"] == 1_700_000_000.0 and text["topic"] == "t"
    binary = _delivery(6, b"\xff\xfe").as_json()
    assert binary["data"] is None and binary["data_b64"] == "//4="
    assert Published("t", ORIGIN, 5).message_id == text["id"]


def test_latency_histogram_buckets_are_cumulative():
    histogram = LatencyHistogram()
    for seconds in (0.0005, 0.0015, 0.003, 20.0, -1.0):
        histogram.observe(seconds)
    cumulative = dict(histogram.cumulative())
    assert cumulative["0.001"] == 2 and cumulative["0.002"] == 3 and cumulative["0.005"] == 4
    assert cumulative["+Inf"] == 5 and histogram.observed == 5
    assert histogram.total == pytest.approx(20.005)


def test_sequence_numbers_count_per_topic_and_restart_from_the_clock():
    from bzzz_edge.gossip.bookkeeping import Sequences

    seqs = Sequences(max_topics=2)
    assert [seqs.next("a", 1000), seqs.next("a", 5), seqs.next("b", 2000)] == [1000, 1001, 2000]
    seqs.next("c", 3000)  # "a" is forgotten: it starts from the clock again, above 1001
    assert seqs.next("a", 4000) == 4000 and seqs.next("c", 1) == 3001


def test_early_envelopes_are_bounded_per_peer_and_in_peers():
    from bzzz_edge.gossip.bookkeeping import EarlyEnvelopes
    from bzzz_edge.wire.envelope import DirectMessage

    early = EarlyEnvelopes(peers=2, per_peer=3)
    for n in range(5):
        early.hold(b"p", DirectMessage("pubsub", 1, bytes([n])))
    assert [e.body for e in early.take(b"p")] == [b"\x02", b"\x03", b"\x04"]
    assert early.dropped == 2 and early.take(b"p") == []
    for peer in (b"x", b"y", b"z"):
        early.hold(peer, DirectMessage("pubsub", 1, peer))
    assert early.take(b"x") == [] and early.dropped == 3  # the oldest peer's went
    assert [e.body for e in early.take(b"z")] == [b"z"]
