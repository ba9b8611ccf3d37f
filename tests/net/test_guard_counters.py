"""The guard's counters exist at zero from the start, and its defaults are the protocol
constants (one place each)."""

from __future__ import annotations

from bzzz_edge.net import Guard, GuardLimits
from bzzz_edge.net._guard import COUNTERS
from bzzz_edge.wire import constants


def test_every_guard_counter_is_there_at_zero_before_anything_happens():
    guard = Guard()
    assert dict(guard.counters) == dict.fromkeys(COUNTERS, 0)
    assert "ips_throttled" in guard.counters and "handshakes_throttled" in guard.counters


def test_a_throttled_ip_moves_the_counter_that_was_at_zero():
    guard = Guard(GuardLimits(handshake_failures=2))
    for now in (1.0, 1.5):
        guard.handshake_failed("192.0.2.7", now)
    assert guard.counters["ips_throttled"] == 1
    assert not guard.handshake_allowed("192.0.2.7", 2.0)
    assert guard.counters["handshakes_throttled"] == 1


def test_guard_defaults_are_the_constants():
    limits = GuardLimits()
    assert (limits.max_strikes, limits.strike_ttl, limits.ban_initial, limits.ban_max) == (
        constants.MAX_STRIKES, constants.STRIKE_TTL, constants.BAN_INITIAL, constants.BAN_MAX)
    assert (limits.handshake_failures, limits.handshake_window, limits.throttle,
            limits.max_tracked) == (constants.HANDSHAKE_FAILURES,
                                    constants.HANDSHAKE_FAILURE_WINDOW,
                                    constants.HANDSHAKE_THROTTLE, constants.GUARD_MAX_TRACKED)


def test_an_ip_is_banned_at_its_factor_of_an_identitys_strikes():
    guard = Guard(GuardLimits(max_strikes=3))
    ip = "192.0.2.9"
    strikes_to_ban_ip = constants.IP_STRIKES_FACTOR * 3
    banned_ip = False
    for i in range(strikes_to_ban_ip):
        guard.strike(bytes([i]) * 32, ip, 1.0)  # a fresh identity for every strike
        banned_ip = guard.refused(None, ip, 1.0)
        assert banned_ip == (i == strikes_to_ban_ip - 1)
    assert guard.counters["ip_bans"] == 1
