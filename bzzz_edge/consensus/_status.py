"""What the consensus service shows: `bzzz-edge coordinator` and /api/v1/coordination.
Uses trio (through the service it reads; no I/O of its own).

``status(service)``: the coordinator, this node's role, term and indexes, the voters and
learners, the group, the commit latency percentiles on this coordinator, and (on a leader)
each follower's replication progress.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..ids import format_node_id
from ._messages import Configuration

if TYPE_CHECKING:
    from .service import ConsensusService

__all__ = ["percentiles", "status"]


def status(service: ConsensusService) -> dict[str, Any]:
    """The service's state, for people (node IDs in their human-friendly form)."""
    core, leader = service.core, service.leader
    config = core.configuration if core is not None else Configuration(frozenset())
    progress = core.progress() if core is not None else {}
    return {
        "leader": format_node_id(leader) if leader else None,
        "is_leader": leader == service.node_id,
        "state": core.state.value if core is not None else "unjoined",
        "term": core.term if core is not None else 0,
        "commit_index": core.commit_index if core is not None else 0,
        "applied_index": service.readable,
        "last_index": core.last_index if core is not None else 0,
        "snapshot_index": core.snapshot_index if core is not None else 0,
        "voters": sorted(format_node_id(n) for n in config.voters),
        "learners": sorted(format_node_id(n) for n in config.learners),
        "group": service.group.hex() if service.group else None,
        "commit_latency_ms": percentiles(service._recent_latency),
        "progress": {format_node_id(n): {"match": p.match, "next": p.next,
                                         "state": p.state, "voter": p.voter}
                     for n, p in sorted(progress.items())},
    }


def percentiles(samples: deque[float]) -> dict[str, float] | None:
    """p50 and p99 of ``samples`` (seconds) in milliseconds, and how many there were."""
    if not samples:
        return None
    ordered = sorted(samples)
    return {"p50": round(ordered[len(ordered) // 2] * 1000, 3),
            "p99": round(ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] * 1000, 3),
            "samples": len(ordered)}
