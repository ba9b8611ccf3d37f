"""The kinds of log entries and the data each carries. No I/O.

The original system's entry types (task_announced ... peer_left), and the store's writes. A
type name outside this table is still a valid entry (newer nodes may log new kinds); this table
is what this version writes and shows by name.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ENTRY_TYPES", "MEMBER_JOINED", "MEMBER_LEFT", "STORE_TYPES"]

MEMBER_JOINED: Final = "peer_joined"
MEMBER_LEFT: Final = "peer_left"

#: The store's writes, by the change kind the store reports.
STORE_TYPES: Final = {"put": "ucxl_put", "delete": "ucxl_delete", "announce": "ucxl_announce"}

ENTRY_TYPES: Final = frozenset({
    "node_started", "events_missed",
    "task_announced", "task_claimed", "task_progress", "task_completed", "task_failed",
    "plan_proposed", "objection_raised", "consensus_reached", "escalation",
    MEMBER_JOINED, MEMBER_LEFT,
    *STORE_TYPES.values(),
})
