"""The agents service in a node: built once peering and the task service run, its metrics, its
start. Uses trio (through the service it starts)."""

from __future__ import annotations

from typing import Any

import trio

from ._messages import Refusal
from .service import AgentService

__all__ = ["COUNTERS", "start_agents"]

#: Present at zero from start, so dashboards and alerts work before the first event.
COUNTERS = (*(f"refused_{r.value}" for r in Refusal), "accepted", "stale", "refused_full",
            "refused_rate",
            "evicted", "forgotten", "members_dropped", "received_availability",
            "received_want", "wants_for_us", "sent_availability", "sent_want",
            "publish_failed", "own_too_long")


async def start_agents(node: Any, nursery: trio.Nursery) -> AgentService:
    """Build ``node.agents`` over the running gossip, membership and task services, register
    its metrics and start it (stopped early in the shutdown: it only broadcasts)."""
    # Read through ``node`` at each use: a reload replaces ``node.settings``.
    service = AgentService(node.identity.node_id, gossip=node.gossip,
                           membership=node.membership, tasks=node.tasks,
                           name=lambda: str(node.settings.node.name),
                           interval=lambda: float(node.settings.agent.availability_interval))
    node.agents = service
    metrics = node.metrics
    metrics.callback_counters("agent_events", "Agents topic: messages taken, refused by "
                              "reason, sent; directory evictions", "event", service.counts,
                              COUNTERS)
    metrics.callback_gauge("agents_known", "Agents in this node's directory", [],
                           lambda: [([], float(len(service.directory.entries)))])
    await node._start_service(nursery, "agents", service.run, priority=43)
    return service
