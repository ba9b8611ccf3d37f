"""The driver's inbox wait: woken by a queued event or at its deadline, whichever comes
first, with one timer task instead of a cancel scope per wait (``_inbox``)."""

from __future__ import annotations

from collections import Counter

import trio
import trio.testing

from bzzz_edge.consensus._events import LeaderLost
from bzzz_edge.consensus._inbox import Inbox


def _run(test):
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_wait_returns_at_once_when_something_is_queued_or_the_deadline_passed():
    async def main():
        inbox = Inbox(Counter())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.keep_time)
            inbox.put(LeaderLost(b"n" * 32))
            began = trio.current_time()
            await inbox.wait(began + 100)
            await inbox.wait(began - 1)  # (still queued)
            assert trio.current_time() == began
            assert inbox.take() is not None and inbox.take() is None
            await inbox.wait(began - 1)
            assert trio.current_time() == began
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_put_wakes_the_waiter_before_its_deadline():
    async def main():
        inbox = Inbox(Counter())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.keep_time)
            began = trio.current_time()

            async def later():
                await trio.sleep(2)
                inbox.put(LeaderLost(b"n" * 32))

            nursery.start_soon(later)
            await inbox.wait(began + 10)
            assert trio.current_time() - began == 2 and len(inbox) == 1
            nursery.cancel_scope.cancel()

    _run(main)


def test_the_deadline_wakes_the_waiter_whether_it_moved_earlier_or_later():
    async def main():
        inbox = Inbox(Counter())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.keep_time)
            await trio.testing.wait_all_tasks_blocked()
            began = trio.current_time()
            await inbox.wait(began + 5)
            assert trio.current_time() - began == 5
            await inbox.wait(began + 6)  # earlier than nothing: the timer was idle
            assert trio.current_time() - began == 6

            async def put_at(t):
                await trio.sleep_until(began + t)
                inbox.put(LeaderLost(b"n" * 32))

            # A wait woken early by a put, then a wait with a later deadline: the timer,
            # armed for the first, wakes at its time and waits again for the second.
            nursery.start_soon(put_at, 7)
            await inbox.wait(began + 8)
            assert trio.current_time() - began == 7
            inbox.take()
            await inbox.wait(began + 20)
            assert trio.current_time() - began == 20
            # A deadline earlier than the one the timer waits for moves it.
            nursery.start_soon(put_at, 40)
            await inbox.wait(began + 30)  # (the timer rests at infinity after firing)
            assert trio.current_time() - began == 30
            await inbox.wait(began + 100)
            assert trio.current_time() - began == 40
            inbox.take()
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_cancelled_waiter_leaves_the_inbox_usable():
    async def main():
        inbox = Inbox(Counter())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.keep_time)
            with trio.move_on_after(1):
                await inbox.wait(trio.current_time() + 10)
            inbox.put(LeaderLost(b"n" * 32))  # nobody parked: no reschedule of a gone task
            await inbox.wait(trio.current_time() + 10)
            assert len(inbox) == 1
            nursery.cancel_scope.cancel()

    _run(main)
