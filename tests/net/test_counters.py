"""The transport's counters exist from the start, at zero: /metrics shows every family before
the first event, so dashboards and alerts can key on them."""

from __future__ import annotations

import secrets

from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits

# Named here rather than taken from the manager, so a counter that goes back to being created
# on its first increment fails this test.
EXPECTED_AT_ZERO = (
    "accept_failed", "accept_out_of_fds", "refused_closing", "refused_banned_ip",
    "refused_throttled", "refused_limit", "refused_per_ip", "refused_handshakes",
    "refused_banned", "duplicates", "handshake_failed_auth", "handshake_failed_timeout",
    "handshake_failed_identity", "handshake_failed_protocol", "handshake_failed_refused",
    "handshake_failed_network", "conn_unknown_method", "conn_requests_busy",
    "conn_handler_failed", "conn_send_too_large", "conn_dropped_sends", "conn_unhandled",
    "conn_inbound_throttled",
)


def test_a_fresh_manager_reports_every_counter_at_zero() -> None:
    manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                listen=("127.0.0.1", 0), limits=NetLimits())
    figures = manager.figures()
    missing = [name for name in EXPECTED_AT_ZERO if name not in figures]
    assert missing == []
    assert {name: figures[name] for name in EXPECTED_AT_ZERO} == dict.fromkeys(
        EXPECTED_AT_ZERO, 0)
