"""When a node broadcasts, when its roles and capabilities ride along, and when it asks for
those it lacks: at once at start, every interval, on change at most once per gap, to
newcomers after a short settle, and wants backing off until answered."""

from __future__ import annotations

from dataclasses import replace

from bzzz_edge.agents import Broadcaster, Local, WantTimer

STATE = Local(name="n", capacity=4, held=0, tasks=(), profile="aaaa")


def started(now: float = 0.0) -> Broadcaster:
    b = Broadcaster(30.0, now, min_gap=1.0, settle=0.5)
    assert b.due(now) and b.with_profile  # the first broadcast: at once, with the profile
    b.sent(STATE, now)
    return b


def test_periodic_broadcasts_every_interval_without_the_profile() -> None:
    b = started()
    assert not b.with_profile
    assert not b.due(29.9) and b.due(30.0) and b.next_deadline() == 30.0
    b.sent(STATE, 30.0)
    assert not b.with_profile and b.next_deadline() == 60.0


def test_an_unchanged_state_does_not_bring_the_broadcast_forward() -> None:
    b = started()
    b.local(STATE, 5.0)
    assert not b.due(29.0)


def test_a_change_of_tasks_is_broadcast_at_once_without_the_profile() -> None:
    b = started()
    b.local(replace(STATE, held=1, tasks=("t1",)), 5.0)
    assert b.due(5.0) and not b.with_profile


def test_changes_in_a_burst_are_one_broadcast_per_gap() -> None:
    b = started()
    b.local(replace(STATE, held=1), 0.2)
    assert not b.due(0.9) and b.due(1.0)  # a second after the last one


def test_a_profile_change_carries_the_profile() -> None:
    b = started()
    b.local(replace(STATE, profile="bbbb"), 5.0)
    assert b.due(5.0) and b.with_profile
    b.sent(replace(STATE, profile="bbbb"), 5.0)
    assert not b.with_profile


def test_a_want_is_answered_with_the_profile_rate_limited() -> None:
    b = started()
    b.wanted(0.3)
    assert not b.due(0.9) and b.due(1.0) and b.with_profile
    b.sent(STATE, 1.0)
    for t in (1.1, 1.2, 1.5):  # a flood of wants: still one broadcast a gap
        b.wanted(t)
    assert not b.due(1.9) and b.due(2.0)


def test_a_newcomer_hears_the_profile_after_the_settle() -> None:
    b = started()
    b.newcomer(10.0)
    assert not b.due(10.4) and b.due(10.5) and b.with_profile


def test_a_shorter_interval_applies_from_the_last_broadcast() -> None:
    b = started()
    b.set_interval(5.0, 2.0)
    assert b.next_deadline() == 5.0
    b.set_interval(1.0, 7.0)  # already past: at once
    assert b.due(7.0)


def test_wants_wait_then_back_off_to_the_ceiling() -> None:
    w = WantTimer(delay=1.0, ceiling=4.0)
    x = b"x" * 32
    asked = [t for t in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 9.0, 12.0, 13.0, 16.0)
             if w.due([x], t)]
    assert asked == [1.0, 3.0, 8.0, 12.0, 16.0]  # after 1 s, then 2, 4, 4, 4 s


def test_a_node_no_longer_lacking_is_no_longer_asked_for() -> None:
    w = WantTimer(delay=1.0)
    x, y = b"x" * 32, b"y" * 32
    assert w.due([x, y], 0.0) == []
    assert w.due([y], 1.0) == [y]
    assert w.due([x], 2.0) == []  # x starts over: asked a delay after it lacks again
    assert w.due([x], 3.0) == [x]
    assert w.due([], 10.0) == [] and w.next_deadline() is None


def test_the_want_timer_is_bounded() -> None:
    w = WantTimer(delay=1.0, max_nodes=2)
    nodes = [bytes([i]) * 32 for i in range(5)]
    w.due(nodes, 0.0)
    assert len(w.due(nodes, 1.0)) == 2
