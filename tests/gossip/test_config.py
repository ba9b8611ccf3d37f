"""Router tunables: presets, overrides, validation naming the key."""

from __future__ import annotations

import pytest

from bzzz_edge.errors import ConfigError
from bzzz_edge.gossip import RouterConfig, lan, local, profile


def test_lan_heartbeat_is_well_under_a_second_and_local_is_faster() -> None:
    assert lan().heartbeat_interval <= 0.25
    assert local().heartbeat_interval < lan().heartbeat_interval


def test_profile_applies_overrides() -> None:
    config = profile("lan", {"mesh_degree": 8, "heartbeat_interval": 0.1})
    assert (config.mesh_degree, config.heartbeat_interval) == (8, 0.1)


@pytest.mark.parametrize(
    ("name", "overrides", "key"),
    [
        ("wan", {}, "node.profile"),
        ("lan", {"no_such": 1}, "gossip.no_such"),
        ("lan", {"heartbeat_interval": 0}, "gossip.heartbeat_interval"),
        ("lan", {"mesh_degree": 2.5}, "gossip.mesh_degree"),
        ("lan", {"mesh_low": True}, "gossip.mesh_low"),
        ("lan", {"mesh_degree": 20}, "gossip.mesh_degree"),
        ("lan", {"max_hops": 300}, "gossip.max_hops"),
        ("lan", {"history": 0.1}, "gossip.history"),
        ("lan", {"ban_score": float("inf")}, "gossip.ban_score"),
    ],
)
def test_bad_values_name_their_key(name: str, overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        profile(name, overrides)
    assert info.value.key == key


def test_defaults_validate() -> None:
    RouterConfig()


def test_every_router_config_key_defaults_to_the_lan_preset():
    # The gossip.* router keys override the node.profile preset only when set, so their
    # documented defaults must be the lan preset's values (README and `bzzz-edge config`).
    from bzzz_edge.config import SCHEMA
    from bzzz_edge.gossip import lan

    preset = lan()
    keys = {k.name: k.default for k in SCHEMA if k.section == "gossip"}
    shared = [name for name in keys if hasattr(preset, name)]
    assert len(shared) >= 14
    assert {n: keys[n] for n in shared} == {n: getattr(preset, n) for n in shared}
