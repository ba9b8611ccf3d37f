"""The leader's configuration upkeep and a fresh node's founding rule."""

from __future__ import annotations

from bzzz_edge.consensus import Configuration, Role
from bzzz_edge.consensus._upkeep import may_found, upkeep_change

from .conftest import node_id

A, B, C, D = sorted(node_id(i) for i in range(4))


def _change(config, *, live, left=frozenset(), dead_since=None, caught_up=frozenset(),
            now=100.0):
    return upkeep_change(config, leader=A, live=set(live), left=set(left),
                         dead_since=dead_since or {}, caught_up=set(caught_up), now=now,
                         target=5, dead_after=30.0)


def test_a_live_newcomer_joins_as_learner_and_a_caught_up_one_is_promoted():
    config = Configuration(frozenset({A}))
    change = _change(config, live={A, B, C})
    assert (change.node, change.role) == (B, Role.LEARNER)
    config = Configuration(frozenset({A}), frozenset({B, C}))
    change = _change(config, live={A, B, C}, caught_up={B, C})
    assert (change.node, change.role) == (B, Role.VOTER)


def test_a_member_that_left_is_removed_but_never_the_leader():
    config = Configuration(frozenset({A, B, C}), frozenset({D}))
    change = _change(config, live={A, B, C}, left={D})
    assert (change.node, change.role) == (D, Role.REMOVED)
    assert _change(Configuration(frozenset({A, B, C})), live={A, B, C}, left={A}) is None


def test_a_dead_voter_is_demoted_only_after_dead_after():
    config = Configuration(frozenset({A, B, C}), frozenset({D}))
    assert _change(config, live={A, B, D}, dead_since={C: 90.0}) is None
    change = _change(config, live={A, B, D}, dead_since={C: 60.0})
    assert (change.node, change.role) == (C, Role.LEARNER)


def test_founding_waits_for_answers_and_for_the_lowest_id():
    kw = {"bootstrap_wait": 2.0}
    assert may_found(A, live_peers=set(), answers={}, waited=2.0, **kw)
    assert not may_found(A, live_peers=set(), answers={}, waited=1.0, **kw)
    assert not may_found(A, live_peers={B}, answers={}, waited=5.0, **kw)  # B not asked yet
    assert may_found(A, live_peers={B}, answers={B: False}, waited=5.0, **kw)
    assert not may_found(B, live_peers={A}, answers={A: False}, waited=5.0, **kw)  # A founds
    assert not may_found(A, live_peers={B}, answers={B: True}, waited=5.0, **kw)  # B's group
