"""The JSON form of a directory entry, for the API and the CLI. No I/O."""

from __future__ import annotations

from typing import Any

from ..ids import format_node_id
from ._directory import Entry

__all__ = ["entry_view"]


def entry_view(entry: Entry, now: float, me: bytes) -> dict[str, Any]:
    """One agent as ``/api/v1/agents`` and ``agents --json`` show it; ``now`` on the clock
    ``entry.heard`` was read from."""
    a = entry.availability
    return {
        "node_id": format_node_id(entry.node), "name": a.name, "self": entry.node == me,
        "status": entry.status,
        "roles": None if entry.roles is None else {k: list(v) for k, v in
                                                   sorted(entry.roles.items())},
        "capabilities": None if entry.capabilities is None else sorted(entry.capabilities),
        "profile": a.profile, "profile_known": entry.profile_known,
        "capacity": a.capacity, "tasks_held": a.held, "tasks": list(a.tasks),
        "load": list(a.load), "memory_percent": a.memory_percent,
        "memory_available": a.memory_available, "cpus": a.cpus,
        "last_heard_s": round(max(0.0, now - entry.heard), 3),
        "sent_at": entry.sent_ms / 1000,
    }
