"""The transport's policies without I/O: the guard (strikes, bans, throttles) and the dial
book (which addresses, from which source)."""

from __future__ import annotations

import trio
import trio.testing

from bzzz_edge.feed import Feed, Overflowed
from bzzz_edge.net import DialBook, Guard, GuardLimits, Source

A, B = b"a" * 32, b"b" * 32


def test_strikes_outlive_reconnections_and_ban_with_growing_length():
    guard = Guard(GuardLimits(max_strikes=3, ban_initial=1.0))
    assert not guard.strike(A, "10.0.0.1", 0.0)
    assert not guard.strike(A, "10.0.0.1", 1.0)  # a new connection: the count goes on
    assert guard.strike(A, "10.0.0.1", 2.0)
    assert guard.refused(A, "10.0.0.9", 2.5) and not guard.refused(A, "10.0.0.9", 3.1)
    for t in (4.0, 5.0, 6.0):
        banned = guard.strike(A, "10.0.0.1", t)
    assert banned and guard.banned_until(A) == 8.0  # the second ban lasts twice as long


def test_fresh_identities_from_one_address_get_the_address_banned():
    guard = Guard(GuardLimits(max_strikes=3))
    for n in range(6):  # six identities, one strike each: none banned alone
        guard.strike(bytes([n]) * 32, "10.0.0.7", float(n))
    assert guard.refused(None, "10.0.0.7", 5.5)
    assert not guard.refused(None, "10.0.0.8", 5.5)


def test_loopback_is_never_banned_as_a_whole():
    guard = Guard(GuardLimits(max_strikes=2))
    for n in range(10):
        guard.strike(bytes([n]) * 32, "127.0.0.1", float(n))
    assert not guard.refused(None, "127.0.0.1", 10.0)


def test_strikes_expire():
    guard = Guard(GuardLimits(max_strikes=2, strike_ttl=10.0))
    guard.strike(A, "10.0.0.1", 0.0)
    assert not guard.strike(A, "10.0.0.1", 20.0)
    assert guard.strikes(A, 20.0) == 1


def test_failed_handshakes_throttle_an_address_before_any_crypto():
    guard = Guard(GuardLimits(handshake_failures=5, handshake_window=10.0, throttle=2.0))
    for n in range(5):
        assert guard.handshake_allowed("10.0.0.3", float(n))
        guard.handshake_failed("10.0.0.3", float(n))
    assert not guard.handshake_allowed("10.0.0.3", 5.0)
    assert guard.handshake_allowed("10.0.0.4", 5.0)
    assert guard.handshake_allowed("10.0.0.3", 6.1)


def test_tables_stay_bounded_under_a_flood_of_identities():
    guard = Guard(GuardLimits(max_tracked=100))
    for n in range(10_000):
        guard.strike(n.to_bytes(32, "big"), f"10.{n % 250}.0.1", 0.0)
    assert len(guard._ids) <= 100 and len(guard._ips) <= 100


def test_dial_book_takes_ip_literals_one_address_per_node_and_caps_each_source():
    book = DialBook(b"me" + bytes(30), max_per_source=2)
    assert book.want(("evil.example", 1), Source.MEMBERSHIP) == []
    assert book.counters["address_refused"] == 1
    assert [c.dial for c in book.want(("10.0.0.1", 1), Source.MDNS, A)] == [True]
    moved = book.want(("10.0.0.2", 1), Source.MDNS, A)  # A moved: the old address goes
    assert [(c.address, c.dial) for c in moved] == [(("10.0.0.1", 1), False),
                                                    (("10.0.0.2", 1), True)]
    book.want(("10.0.0.3", 1), Source.MDNS, B)
    assert book.want(("10.0.0.4", 1), Source.MDNS) == []  # mDNS has its two
    assert book.counters["want_refused"] == 1
    assert book.want(("10.0.0.4", 1), Source.BOOTSTRAP) != []  # other sources do not
    assert book.forget_address(("10.0.0.4", 1)) == []  # static: kept for good
    assert [c.dial for c in book.forget_node(B)] == [False]


def test_feed_overflow_is_reported_to_the_subscriber_not_dropped_silently():
    async def main():
        feed: Feed[int] = Feed("test", buffer=3)
        slow, fast = feed.subscribe(), feed.subscribe(buffer=100)
        for n in range(5):  # 0-2 fill the queue; 3 overflows it: 0-3 are missed
            feed.publish(n)
        assert await slow.receive() == Overflowed(missed=4)
        feed.publish(5)
        assert [await slow.receive(), await slow.receive()] == [4, 5]
        assert [await fast.receive() for _ in range(6)] == [0, 1, 2, 3, 4, 5]
        assert feed.overflows == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_one_host_announcing_many_services_gets_a_few_dialled():
    book = DialBook(b"me" + bytes(30), max_per_source=256)
    dialled = [book.want(("10.0.0.66", 9000 + n), Source.MDNS, bytes([n]) * 32)
               for n in range(100)]
    assert sum(1 for changes in dialled if changes) == 4
    assert book.want(("10.0.0.67", 9000), Source.MDNS) != []  # another host still gets in
    book.forget_node(bytes([0]) * 32)
    assert book.want(("10.0.0.66", 9999), Source.MDNS) != []  # room again once one goes
