"""The automatic voter policy: promote live learners, replace long-dead voters, keep it odd."""

from __future__ import annotations

import pytest

from bzzz_edge.consensus import (
    ChangeMember,
    Configuration,
    Role,
    lan,
    next_change,
    wanted_voters,
)

from .conftest import node_id

A, B, C, D, E, F = sorted(node_id(i) for i in range(6))  # ties go by ID


def config(voters: set[bytes], learners: set[bytes] = frozenset()) -> Configuration:  # type: ignore[assignment]
    return Configuration(frozenset(voters), frozenset(learners))


def decide(cfg: Configuration, live: set[bytes], dead_since: dict[bytes, float] | None = None,
           caught_up: set[bytes] | None = None, now: float = 100.0) -> ChangeMember | None:
    return next_change(cfg, leader=A, live=live, dead_since=dead_since or {},
                       caught_up=caught_up if caught_up is not None else cfg.learners,
                       now=now, target=5, dead_after=30.0)


@pytest.mark.parametrize("target, live, wanted", [
    (5, 1, 1), (5, 2, 1), (5, 3, 3), (5, 4, 3), (5, 5, 5), (5, 20, 5), (3, 20, 3), (4, 20, 3),
])
def test_wanted_voters_is_odd_and_within_target_and_live(target, live, wanted) -> None:
    assert wanted_voters(target, live) == wanted


def test_a_lone_node_stays_its_own_single_voter() -> None:
    assert decide(config({A}), live={A}) is None


def test_a_live_caught_up_learner_is_promoted_when_voters_are_short() -> None:
    assert decide(config({A}, {B, C}), live={A, B, C}) == ChangeMember(0, B, Role.VOTER)


def test_a_learner_that_has_not_caught_up_waits() -> None:
    assert decide(config({A}, {B, C}), live={A, B, C}, caught_up=set()) is None


def test_a_voter_dead_longer_than_the_limit_is_demoted() -> None:
    cfg = config({A, B, C}, {D})
    assert decide(cfg, live={A, B}, dead_since={C: 80.0}) is None  # dead for 20 s only
    change = decide(cfg, live={A, B, D}, dead_since={C: 60.0}, caught_up=set())
    assert change == ChangeMember(0, C, Role.LEARNER)


def test_a_dead_voter_is_replaced_by_promoting_a_learner_first() -> None:
    cfg = config({A, B, C}, {D})
    change = decide(cfg, live={A, B, D}, dead_since={C: 10.0})
    assert change == ChangeMember(0, D, Role.VOTER)  # keeps the fault tolerance meanwhile


def test_an_even_number_of_voters_above_the_wanted_count_is_trimmed() -> None:
    cfg = config({A, B, C, D})
    change = decide(cfg, live={A, B, C, D})
    assert change == ChangeMember(0, D, Role.LEARNER)


def test_the_leader_is_never_demoted() -> None:
    cfg = config({A, B})
    change = decide(cfg, live={A, B})
    assert change == ChangeMember(0, B, Role.LEARNER)
    assert decide(config({A, B}), live={A}, dead_since={}) is None


def test_with_enough_voters_nothing_changes() -> None:
    assert decide(config({A, B, C, D, E}, {F}), live={A, B, C, D, E, F}) is None


def test_timing_keys_override_the_profile_and_contradictions_name_the_key():
    from bzzz_edge.config import load_config
    from bzzz_edge.consensus.wiring import raft_config
    from bzzz_edge.errors import ConfigError

    local = raft_config(load_config(environ={}, flags={"node.profile": "local",
                                                       "coordination.heartbeat_interval": "0.02"}))
    assert local.heartbeat_interval == 0.02 and local.election_timeout_min == 0.06  # local's
    assert raft_config(load_config(environ={}, flags={})) == lan()
    bad = load_config(environ={}, flags={"coordination.heartbeat_interval": "5"})
    with pytest.raises(ConfigError, match=r"^coordination\.heartbeat_interval: must be") as exc:
        raft_config(bad)
    assert exc.value.key == "coordination.heartbeat_interval"
    bad = load_config(environ={}, flags={"coordination.election_timeout_max": "0.1"})
    with pytest.raises(ConfigError, match=r"^coordination\.election_timeout_max: must be"):
        raft_config(bad)
