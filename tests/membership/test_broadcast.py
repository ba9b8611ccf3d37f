"""The transmit-limited news queue."""

from __future__ import annotations

from bzzz_edge.membership import AliveUpdate, DeadUpdate, SuspectUpdate
from bzzz_edge.membership._broadcast import BroadcastQueue

from .conftest import addr, nid


def alive(i: int, inc: int = 0) -> AliveUpdate:
    return AliveUpdate(nid(i), inc, addr(i), {})


def test_newer_news_about_a_node_replaces_older() -> None:
    queue = BroadcastQueue()
    queue.queue(alive(1))
    queue.take(1, 10)
    queue.queue(SuspectUpdate(nid(1), 0, nid(2)))
    queue.queue(DeadUpdate(nid(1), 0, nid(2)))
    assert len(queue) == 1
    assert queue.transmits(nid(1)) == 0  # the new news starts its own count
    assert queue.take(5, 10) == [DeadUpdate(nid(1), 0, nid(2))]


def test_each_update_is_sent_at_most_limit_times() -> None:
    queue = BroadcastQueue()
    queue.queue(alive(1))
    sent = sum(len(queue.take(4, 3)) for _ in range(10))
    assert sent == 3 and len(queue) == 0


def test_least_sent_news_goes_first_then_newest() -> None:
    queue = BroadcastQueue()
    for i in range(3):
        queue.queue(alive(i))
    assert queue.take(1, 5) == [alive(2)]  # newest of the never-sent
    assert queue.take(2, 5) == [alive(1), alive(0)]
    queue.queue(alive(3))
    taken = queue.take(2, 5)
    assert taken[0] == alive(3)  # never-sent first, then a once-sent one
    assert taken[1] in [alive(0), alive(1), alive(2)]
    assert queue.transmits(nid(3)) == 1 and queue.transmits(nid(0)) == 1


def test_take_respects_budget_and_skip() -> None:
    queue = BroadcastQueue()
    for i in range(5):
        queue.queue(alive(i))
    assert queue.take(0, 5) == []
    taken = queue.take(10, 5, skip=nid(4))
    assert alive(4) not in taken and len(taken) == 4
    queue.discard(nid(4))
    assert nid(4) not in queue and len(queue) == 4
