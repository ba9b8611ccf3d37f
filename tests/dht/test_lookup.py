"""The iterative lookup, driven by hand over a synthetic network in virtual time: it converges
on the true k closest, asks no node twice, and neither liars nor slow peers hold it past its
deadline."""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable

import pytest

from bzzz_edge.dht import Contact, DhtConfig, Lookup, LookupResult, RoutingTable, distance

CONFIG = DhtConfig(k=8, alpha=3, disjoint_paths=2, rpc_timeout=0.2, lookup_deadline=3.0)
N = 300


def contact(node: bytes) -> Contact:
    return Contact(node, "10.0.0.1", 7947)


IDS = [hashlib.sha256(b"n%d" % i).digest() for i in range(N)]
TABLES: dict[bytes, RoutingTable] = {}
for _own in IDS:
    TABLES[_own] = RoutingTable(_own, CONFIG, 0.0)
    for _other in IDS:
        TABLES[_own].seen(contact(_other), 0.0)

# A behaviour answers a query for ``target`` with (delay, contacts), or None for silence.
Behaviour = Callable[[bytes, bytes], tuple[float, list[Contact]] | None]


def honest(node: bytes, target: bytes) -> tuple[float, list[Contact]] | None:
    table = TABLES.get(node)
    return None if table is None else (0.01, table.closest(target, CONFIG.k))


def run(lookup: Lookup, behave: Behaviour) -> tuple[LookupResult, float, list[bytes]]:
    """Drive ``lookup`` to its end; returns the result, the time it ended, the queries sent."""
    now, events, asked = 0.0, [], []
    order = 0
    while True:
        for c in lookup.next_queries(now):
            asked.append(c.node)
            answer = behave(c.node, lookup.target)
            order += 1
            if answer is not None and answer[0] < CONFIG.rpc_timeout:
                heapq.heappush(events, (now + answer[0], order, "reply", c.node, answer[1]))
            else:
                heapq.heappush(events, (now + CONFIG.rpc_timeout, order, "timeout", c.node, []))
        if lookup.finished:
            return lookup.result(), now, asked
        if not events or events[0][0] >= lookup.deadline:
            now = lookup.deadline
            lookup.tick(now)
            continue
        now, _, kind, node, contacts = heapq.heappop(events)
        if kind == "reply":
            lookup.on_reply(node, contacts)
        else:
            lookup.on_failure(node, timed_out=True)


def start(target: bytes, seed: int, me: bytes = b"\xee" * 32) -> Lookup:
    seeds = random.Random(seed).sample(IDS, 3)
    return Lookup(me, target, [contact(s) for s in seeds], CONFIG, 0.0)


def true_closest(target: bytes, count: int = CONFIG.k) -> list[bytes]:
    return sorted(IDS, key=lambda n: distance(n, target))[:count]


@pytest.mark.parametrize("seed", range(5))
def test_converges_on_the_true_k_closest_asking_no_node_twice(seed: int) -> None:
    target = hashlib.sha256(b"target %d" % seed).digest()
    result, ended, asked = run(start(target, seed), honest)
    assert [c.node for c in result.closest] == true_closest(target)
    assert len(asked) == len(set(asked)) == result.queried
    assert not result.timed_out and ended < 1.0
    assert 1 <= result.hops <= 4


def test_a_silent_peer_is_asked_twice_then_dropped() -> None:
    target = hashlib.sha256(b"silent").digest()
    victim = true_closest(target)[0]

    def behave(node: bytes, t: bytes) -> tuple[float, list[Contact]] | None:
        return None if node == victim else honest(node, t)

    result, _, asked = run(start(target, 1), behave)
    assert asked.count(victim) == 2
    assert victim not in [c.node for c in result.closest]
    assert [c.node for c in result.closest] == true_closest(target, CONFIG.k + 1)[1:]
    assert not result.timed_out


@pytest.mark.parametrize("seed", range(8))
def test_liars_pointing_at_phantoms_do_not_stop_the_lookup(seed: int) -> None:
    rng = random.Random(seed)
    target = hashlib.sha256(b"liars %d" % seed).digest()
    liars = set(rng.sample(IDS, N // 10))
    goal = int.from_bytes(target, "big")

    def behave(node: bytes, t: bytes) -> tuple[float, list[Contact]] | None:
        if node in liars:  # phantoms nearer than anyone real; they never answer
            fakes = [(goal ^ rng.getrandbits(200)).to_bytes(32, "big") for _ in range(CONFIG.k)]
            return 0.001, [contact(f) for f in fakes]
        return honest(node, t)

    result, ended, _ = run(start(target, seed + 1000), behave)
    assert ended <= CONFIG.lookup_deadline
    honest_best = next(n for n in true_closest(target, 40) if n not in liars)
    assert honest_best in [c.node for c in result.closest]


def test_a_tarpit_of_slow_liars_ends_at_the_deadline() -> None:
    target = hashlib.sha256(b"tarpit").digest()
    goal = int.from_bytes(target, "big")
    rng = random.Random(7)
    level = [250]

    def behave(node: bytes, t: bytes) -> tuple[float, list[Contact]] | None:
        # Every node, real or phantom, answers just in time with ever nearer phantoms.
        level[0] -= 1
        fakes = [(goal ^ rng.getrandbits(level[0])).to_bytes(32, "big")
                 for _ in range(CONFIG.k)]
        return CONFIG.rpc_timeout * 0.9, [contact(f) for f in fakes]

    result, ended, asked = run(start(target, 3), behave)
    assert result.timed_out
    assert ended == pytest.approx(CONFIG.lookup_deadline)
    assert len(asked) > 10  # it did keep working until then


def test_no_seeds_ends_at_once() -> None:
    lookup = Lookup(b"\x00" * 32, b"\x01" * 32, [], CONFIG, 0.0)
    assert lookup.next_queries(0.0) == [] and lookup.finished
    assert lookup.result().closest == () and not lookup.result().timed_out


def test_an_answer_from_a_node_not_asked_is_ignored() -> None:
    lookup = start(IDS[5], 2)
    lookup.next_queries(0.0)
    assert lookup.on_reply(b"\x42" * 32, [contact(IDS[5])]) is False
    assert lookup.on_failure(b"\x42" * 32) is False


def narrow(target: bytes, seeds: list[bytes]) -> Lookup:
    return Lookup(b"\xee" * 32, target, [contact(s) for s in seeds], CONFIG, 0.0, narrow=True)


def test_a_narrow_start_asks_the_nearest_seed_alone_and_widens_on_its_answer() -> None:
    target = hashlib.sha256(b"narrow").digest()
    seeds = true_closest(target, 6)
    lookup = narrow(target, seeds[::-1])
    assert [c.node for c in lookup.next_queries(0.0)] == [seeds[0]]
    assert lookup.next_queries(0.01) == [] and not lookup.finished
    assert lookup.next_deadline() == CONFIG.hedge_delay
    assert lookup.on_reply(seeds[0], [])  # an answer without the value
    wide = [c.node for c in lookup.next_queries(0.02)]
    assert len(wide) == CONFIG.disjoint_paths * CONFIG.alpha - 1  # path 0 has one answered
    assert seeds[0] not in wide and set(wide) <= set(seeds)
    assert lookup.next_deadline() == CONFIG.lookup_deadline


def test_a_narrow_start_follows_a_nearer_node_it_is_told_of_alone_then_widens() -> None:
    target = hashlib.sha256(b"follow").digest()
    ranked = sorted(IDS, key=lambda n: distance(n, target))
    near, far = ranked[:6], ranked[-3:]
    lookup = narrow(target, far)
    (first,) = lookup.next_queries(0.0)
    assert first.node == far[0]
    assert lookup.on_reply(far[0], [contact(n) for n in near[::-1]])  # it knew nearer ones
    assert [c.node for c in lookup.next_queries(0.01)] == [near[0]]  # the nearest, alone
    assert lookup.next_queries(0.02) == []
    assert lookup.next_deadline() == pytest.approx(0.01 + CONFIG.hedge_delay)
    assert lookup.on_reply(near[0], [contact(n) for n in far[1:]])  # nothing nearer
    wide = [c.node for c in lookup.next_queries(0.03)]
    assert len(wide) > 1 and not {far[0], near[0]} & set(wide)
    assert lookup.next_deadline() == CONFIG.lookup_deadline


def test_a_narrow_start_widens_when_the_nearest_is_slow_or_fails() -> None:
    target = hashlib.sha256(b"hedge").digest()
    seeds = true_closest(target, 6)
    slow = narrow(target, seeds)
    slow.next_queries(0.0)
    assert slow.next_queries(CONFIG.hedge_delay * 0.99) == []
    late = [c.node for c in slow.next_queries(CONFIG.hedge_delay)]
    assert len(late) == CONFIG.disjoint_paths * CONFIG.alpha - 1 and seeds[0] not in late
    failed = narrow(target, seeds)
    failed.next_queries(0.0)
    assert failed.on_failure(seeds[0])
    rest = [c.node for c in failed.next_queries(0.001)]
    assert sorted(rest) == sorted(seeds[1:])  # six seeds, three a path: all but the failed


@pytest.mark.parametrize("seed", range(3))
def test_a_narrow_lookup_still_converges_on_the_true_k_closest(seed: int) -> None:
    target = hashlib.sha256(b"narrow target %d" % seed).digest()
    seeds = random.Random(seed).sample(IDS, 3)
    result, _, asked = run(narrow(target, seeds), honest)
    assert [c.node for c in result.closest] == true_closest(target)
    assert len(asked) == len(set(asked))
