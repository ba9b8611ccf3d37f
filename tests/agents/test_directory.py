"""The directory of agents: one entry per signed origin, newer news only, roles kept until
they change, membership's dead and left marked then forgotten, and bounded in all."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.agents import Availability, Directory, profile_digest

ROLES = {"backend": ("src/*",)}
CAPS = frozenset({"python"})
DIGEST = profile_digest(ROLES, CAPS)


def node(i: int) -> bytes:
    return hashlib.sha256(b"directory node %d" % i).digest()


ME = node(0)


def say(*, with_profile: bool = True, **changes: Any) -> Availability:
    fields: dict[str, Any] = dict(
        name="n", load=(0.0, 0.0, 0.0), memory_percent=10.0, memory_available=1,
        cpus=1, capacity=4, held=0, tasks=(), profile=DIGEST,
        roles=ROLES if with_profile else None, capabilities=CAPS if with_profile else None)
    fields.update(changes)
    return Availability(**fields)


def test_one_entry_per_origin_the_newest_message_wins() -> None:
    d = Directory(ME)
    assert d.heard(node(1), 10, 0, say(name="first"), now=1.0)
    assert d.heard(node(1), 11, 0, say(name="second", held=2), now=2.0)
    assert list(d.entries) == [node(1)]
    entry = d.entries[node(1)]
    assert (entry.availability.name, entry.availability.held, entry.heard) == ("second", 2, 2.0)


def test_an_older_message_is_ignored_and_counted() -> None:
    d = Directory(ME)
    d.heard(node(1), 11, 0, say(name="new"), now=1.0)
    assert not d.heard(node(1), 10, 0, say(name="old"), now=2.0)
    assert d.entries[node(1)].availability.name == "new"
    assert d.counters["stale"] == 1


def test_roles_are_kept_from_an_earlier_message_while_the_digest_holds() -> None:
    d = Directory(ME)
    d.heard(node(1), 1, 0, say(), now=1.0)
    d.heard(node(1), 2, 0, say(with_profile=False), now=2.0)
    entry = d.entries[node(1)]
    assert entry.roles == ROLES and entry.capabilities == CAPS and entry.profile_known


def test_a_new_digest_without_roles_leaves_the_profile_unknown_and_lacking() -> None:
    d = Directory(ME)
    d.member(node(1), "alive", now=0.0)
    d.heard(node(1), 1, 0, say(), now=1.0)
    assert d.lacking() == []
    d.heard(node(1), 2, 0, say(with_profile=False, profile="0123456789abcdef"), now=2.0)
    assert not d.entries[node(1)].profile_known
    assert d.lacking() == [node(1)]


def test_alive_members_never_heard_are_lacking_dead_ones_are_not() -> None:
    d = Directory(ME)
    d.member(node(1), "alive", now=0.0)
    d.member(node(2), "dead", now=0.0)
    d.member(ME, "alive", now=0.0)  # this node itself is never a member of its own
    assert d.lacking() == [node(1)]
    assert d.alive_members() == [node(1)]


def test_dead_and_left_are_marked_then_forgotten_after_a_while() -> None:
    d = Directory(ME, forget_after=100.0)
    for i in (1, 2, 3):
        d.member(node(i), "alive", now=0.0)
        d.heard(node(i), 1, 0, say(), now=0.0)
    d.member(node(1), "dead", now=10.0)
    d.member(node(2), "left", now=20.0)
    assert (d.entries[node(1)].status, d.entries[node(2)].status) == ("dead", "left")
    assert d.tick(now=109.0) == []
    assert d.tick(now=110.0) == [node(1)]
    assert d.tick(now=120.0) == [node(2)]
    assert list(d.entries) == [node(3)]  # alive: kept however long it was silent
    assert d.counters["forgotten"] == 2


def test_a_node_back_alive_before_the_deadline_is_kept() -> None:
    d = Directory(ME, forget_after=100.0)
    d.heard(node(1), 1, 0, say(), now=0.0)
    d.member(node(1), "dead", now=0.0)
    d.member(node(1), "alive", now=50.0)
    assert d.tick(now=500.0) == [] and d.entries[node(1)].status == "alive"


def test_a_node_membership_never_named_is_forgotten_when_silent() -> None:
    d = Directory(ME, forget_after=100.0)
    d.heard(node(1), 1, 0, say(), now=0.0)
    assert d.entries[node(1)].status == "unknown"
    assert d.tick(now=99.0) == [] and d.tick(now=100.0) == [node(1)]


def test_this_node_is_never_forgotten() -> None:
    d = Directory(ME, forget_after=1.0)
    d.heard(ME, 1, 0, say(), now=0.0)
    assert d.tick(now=1000.0) == [] and d.entries[ME].status == "alive"


def test_full_directory_refuses_newcomers_while_all_are_alive() -> None:
    d = Directory(ME, max_entries=3)
    for i in (1, 2, 3):
        d.member(node(i), "alive", now=0.0)
        assert d.heard(node(i), 1, 0, say(), now=0.0)
    assert not d.heard(node(4), 1, 0, say(), now=1.0)
    assert len(d.entries) == 3 and node(4) not in d.entries
    assert d.counters["refused_full"] == 1
    assert d.heard(node(2), 2, 0, say(held=1), now=1.0)  # those held still update


def test_full_directory_makes_room_from_the_gone_first() -> None:
    d = Directory(ME, max_entries=3)
    for i in (1, 2, 3):
        d.member(node(i), "alive", now=0.0)
        d.heard(node(i), 1, 0, say(), now=float(i))
    d.member(node(3), "left", now=5.0)
    d.member(node(1), "suspect", now=5.0)
    assert d.heard(node(4), 1, 0, say(), now=6.0)
    assert set(d.entries) == {node(1), node(2), node(4)}
    assert d.counters["evicted"] == 1


def test_member_statuses_mirrored_are_bounded() -> None:
    d = Directory(ME, max_entries=2, forget_after=10.0)
    d.member(node(1), "alive", now=0.0)
    d.member(node(2), "dead", now=0.0)
    d.member(node(3), "alive", now=1.0)
    assert d.counters["members_dropped"] == 1 and d.alive_members() == [node(1)]
    d.member(node(3), "alive", now=10.0)  # the dead one's time is up: room again
    assert sorted(d.alive_members()) == sorted([node(1), node(3)])


def test_a_resync_drops_members_membership_no_longer_holds() -> None:
    d = Directory(ME)
    d.member(node(1), "alive", now=0.0)
    d.member(node(2), "alive", now=0.0)
    d.members([(node(2), "suspect"), (node(3), "alive")], now=1.0)
    assert d.alive_members() == [node(3)]
    assert d.lacking() == [node(3)]


_ops = st.lists(st.tuples(st.sampled_from(["heard", "member", "tick"]), st.integers(0, 9),
                          st.sampled_from(["alive", "suspect", "dead", "left"]),
                          st.integers(0, 5), st.booleans()), max_size=80)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_bounds_hold_over_any_sequence_of_news(ops: list[tuple[str, int, str, int, bool]]
                                               ) -> None:
    d = Directory(ME, max_entries=4, forget_after=3.0)
    now = 0.0
    for op, i, status, step, with_profile in ops:
        now += step
        if op == "heard":
            d.heard(node(i), int(now) + i, 0, say(with_profile=with_profile), now)
        elif op == "member":
            d.member(node(i), status, now)
        else:
            d.tick(now)
        assert len(d.entries) <= 4 and len(d._members) <= 4
        assert all(key == entry.node for key, entry in d.entries.items())
        assert all(e.status == "alive" for e in d.entries.values() if e.node == ME)
        assert all(e.roles is None or e.profile is not None for e in d.entries.values())
