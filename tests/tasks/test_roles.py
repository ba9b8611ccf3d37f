"""Roles: built-in and custom definitions, and a profile's wire form."""

from __future__ import annotations

import pytest

from bzzz_edge.tasks import BUILTIN_ROLES, LIMITS, Profile, parse_custom_roles, resolve_roles


def test_builtin_roles_are_the_four_of_the_design() -> None:
    assert set(BUILTIN_ROLES) == {"backend", "frontend", "devops", "qa"}


def test_custom_roles_parse_and_override_builtin_ones() -> None:
    custom = parse_custom_roles(["docs=docs/* *.md", "qa=tests/e2e/*"])
    assert custom == {"docs": ("docs/*", "*.md"), "qa": ("tests/e2e/*",)}
    roles = resolve_roles(["docs", "qa", "backend"], custom)
    assert roles["qa"] == ("tests/e2e/*",) and roles["backend"] == BUILTIN_ROLES["backend"]


@pytest.mark.parametrize("item", ["docs", "=docs/*", "docs="])
def test_custom_role_without_name_or_patterns_refused(item: str) -> None:
    with pytest.raises(ValueError, match="NAME=PATTERN"):
        parse_custom_roles([item])


def test_unknown_role_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="backend"):
        resolve_roles(["wizard"], {})


def test_profile_round_trips_and_bounds_hold() -> None:
    profile = Profile({"qa": ("tests/*",)}, frozenset({"py"}), 3)
    assert Profile.decode(profile.encode()) == profile
    too_many = Profile({f"r{i}": ("x",) for i in range(LIMITS.roles + 1)}, frozenset(), 1)
    with pytest.raises(ValueError):
        Profile.decode(too_many.encode())
