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
    min_suspicion_timeout,
    probe_period,
    profile,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeout,
)


def test_default_profile_bounds_detection_on_fast_and_slow_links() -> None:
    assert MembershipConfig() == lan()
    for n in range(2, 11):
        # Wired (probe timeouts at the floor): worst case, with no confirmations at all.
        assert detection_bound(lan(), n) <= 10.0
        assert detection_bound(local(), n) < detection_bound(lan(), n)
        # A 200 +- 50 ms one-way link measures a probe timeout of about 0.7 s.
        assert detection_bound(lan(), n, 0.7) <= 15.0
    # The slowest link the bounds allow still gets a finite, quoted bound.
    assert detection_bound(lan(), 6, lan().probe_timeout_max) < 50.0


def test_detection_bound_is_first_probe_plus_probe_period_plus_longest_suspicion() -> None:
    cfg = lan()
    rto = cfg.probe_timeout_min
    suspicion = cfg.suspicion_mult * cfg.suspicion_base  # log10(10) = 1
    expected = 9 * cfg.probe_interval + probe_period(rto) + 4 * suspicion
    assert detection_bound(cfg, 10) == pytest.approx(expected)
    # Beyond ten nodes the log10 scaling of the suspicion timeout kicks in.
    scale = math.log10(200)
    assert detection_bound(cfg, 200) == pytest.approx(
        199 * cfg.probe_interval + 3 * rto + 4 * suspicion * scale
    )
    # On a slow link the suspicion lasts at least suspicion_rto_mult probe timeouts.
    assert min_suspicion_timeout(cfg, 10, 1.0) == cfg.suspicion_rto_mult * 1.0
    assert detection_bound(cfg, 10, 1.0) == pytest.approx(
        9 * cfg.probe_interval + 3.0 + 4 * cfg.suspicion_rto_mult
    )
    with pytest.raises(ValueError, match="at least 2"):
        detection_bound(cfg, 1)


def test_probing_less_often_does_not_lengthen_suspicions() -> None:
    slow = profile("lan", {"probe_interval": 2.0})
    assert min_suspicion_timeout(slow, 10, 0.05) == min_suspicion_timeout(lan(), 10, 0.05)
    longer = profile("lan", {"suspicion_base": 0.5})
    assert min_suspicion_timeout(longer, 10, 0.05) == 2 * min_suspicion_timeout(lan(), 10, 0.05)


def test_profiles_take_individual_overrides_and_name_bad_keys() -> None:
    assert profile("lan") == lan() and profile("local") == local()
    tuned = profile("lan", {"probe_interval": 1.0, "suspicion_mult": 6})
    assert (tuned.probe_interval, tuned.suspicion_mult) == (1.0, 6)
    with pytest.raises(ConfigError) as info:
        profile("lan", {"probe_intervall": 1.0})
    assert info.value.key == "membership.probe_intervall"
    with pytest.raises(ConfigError, match=r"node\.profile"):
        profile("wan")


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
        ("probe_timeout_min", "0.04"),
        ("probe_timeout_initial", 5.0),  # above probe_timeout_max
        ("max_message_bytes", 1000),  # cannot carry one member with full metadata
    ],
)
def test_bad_values_are_config_errors_naming_the_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(lan(), **{field: value})
    assert info.value.key == f"membership.{field}"
    assert f"membership.{field}" in str(info.value)
