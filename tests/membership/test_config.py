"""Timing profiles, the arithmetic helpers and the detection bound."""

from __future__ import annotations

import dataclasses
import math

import pytest

from bzzz_edge.errors import ConfigError
from bzzz_edge.membership import (
    MembershipConfig,
    detection_bound,
    lan,
    local,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeout,
)


def test_default_profile_detects_a_death_within_three_seconds_up_to_ten_nodes() -> None:
    assert MembershipConfig() == lan()
    for n in range(2, 11):
        assert detection_bound(lan(), n) <= 3.0
        assert detection_bound(local(), n) < detection_bound(lan(), n)


def test_detection_bound_is_first_probe_plus_probe_period_plus_longest_suspicion() -> None:
    cfg = lan()
    expected = 9 * 0.1 + 0.1 + cfg.suspicion_max_timeout_mult * cfg.suspicion_mult * 0.1
    assert detection_bound(cfg, 10) == pytest.approx(expected)
    # Beyond ten nodes the log10 scaling of the suspicion timeout kicks in.
    scale = math.log10(200)
    assert detection_bound(cfg, 200) == pytest.approx(19.9 + 0.1 + 4 * 4 * scale * 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        detection_bound(cfg, 1)


def test_memberlist_arithmetic() -> None:
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 9) == 4
    assert retransmit_limit(4, 10) == 8  # ceil(log10(11)) = 2
    assert retransmit_limit(3, 200) == 9
    assert suspicion_timeout(4, 5, 0.1) == pytest.approx(0.4)
    assert suspicion_timeout(4, 1000, 0.1) == pytest.approx(1.2)
    assert push_pull_scale(15.0, 32) == 15.0
    assert push_pull_scale(15.0, 33) == 30.0
    assert push_pull_scale(15.0, 200) == 15.0 * 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("probe_interval", 0),
        ("probe_interval", float("inf")),
        ("indirect_checks", 2.5),
        ("gossip_nodes", True),
        ("retransmit_mult", -1),
        ("probe_timeout", "0.04"),
        ("probe_timeout", 0.05),  # not under half of probe_interval
    ],
)
def test_bad_values_are_config_errors_naming_the_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(lan(), **{field: value})
    assert info.value.key == f"membership.{field}"
    assert f"membership.{field}" in str(info.value)
