"""The task service in a node: built from ``[agent]``, its metrics, its start. Uses trio
(through the service it starts).

Built before peering starts (``build_tasks``), because the consensus service must apply
committed entries to the tasks' decision log from its first entry; started after it
(``start_tasks``), when the services it uses exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ..errors import ConfigError
from ._desk import RPC_METHOD
from ._model import Reason
from ._retry import retry_window
from ._roles import Profile, parse_custom_roles, resolve_roles
from ._share import RPC_METHOD as SHARE_METHOD
from .service import TaskService

__all__ = ["build_tasks", "serve_task_rpcs", "start_tasks"]

#: Present at zero from start, so dashboards and alerts work before the first event.
COUNTERS = (*(f"refused_{r.value}" for r in Reason), "announce", "claim", "progress",
            "complete", "fail", "release", "expire", "expired", "verified", "reports_dropped",
            "release_proposals", "release_failures", "expire_proposals", "expire_failures",
            "apply_errors", "command_retries", "commands_undecided", "command_copies",
            "announces_heard", "announces_pushed_out", "answered_on_apply", "claims_held",
            "claims_decided_unlogged", "claims_hold_full", "malformed_claim_requests",
            "announces_shared", "malformed_announce_shares", "announce_shares_over_budget")


def profile_from(agent: Any) -> Profile:
    """This node's claim profile from the ``[agent]`` settings.

    Raises:
        ConfigError: a role in ``agent.roles`` that is neither built in nor custom.
    """
    try:
        roles = resolve_roles(agent.roles, parse_custom_roles(agent.custom_roles))
    except ValueError as exc:
        raise ConfigError(f"agent.roles: {exc}", key="agent.roles") from None
    return Profile(roles, frozenset(agent.capabilities), agent.capacity)


def build_tasks(node: Any) -> TaskService:
    """The service over ``node.store``, with its metrics; ``decisions`` is the machine the
    consensus service must apply to (``node.decision_machine``)."""
    agent = node.settings.agent
    service = TaskService(node.identity, node.store, network_id=node.network_id,
                          profile=profile_from(agent), release_after=agent.release_after,
                          finished_retention=agent.finished_retention,
                          retry_for=retry_window(node.raft_config.election_timeout_max))
    metrics = node.metrics

    def number(read: Callable[[], float]) -> Callable[[], list[tuple[list[str], float]]]:
        return lambda: [([], float(read()))]

    metrics.callback_gauge("tasks_held", "Tasks in this node's task state", [],
                           number(lambda: len(service.machine.tasks)))
    metrics.callback_gauge("tasks_owned", "Tasks this node holds (claimed or in progress)", [],
                           number(lambda: service.machine.holding(service.node_id)))
    metrics.callback_counters("task_events", "Task commands applied and refused, by reason",
                              "event", lambda: service.status()["counters"], COUNTERS)
    return service


def serve_task_rpcs(node: Any, manager: Any) -> None:
    """Serve ``tasks.claim`` and ``tasks.announced`` on ``manager`` from the start
    (``start_peering``'s ``register_rpcs``): until ``start_tasks`` a claim is answered
    "coordination is not running", which a claimant retries, rather than "unknown method"."""
    manager.on_rpc(RPC_METHOD, node.tasks.serve_claim)
    manager.on_rpc(SHARE_METHOD, node.tasks.serve_announced)


async def start_tasks(node: Any, nursery: trio.Nursery) -> None:
    """Connect the service to the running ones and start it; its state is flushed on stop."""
    service: TaskService = node.tasks
    service.connect(consensus=node.consensus, gossip=node.gossip, signed_log=node.signed_log,
                    membership=node.membership, content=node.content, manager=node.manager)
    await node._start_service(nursery, "tasks", service.run, priority=42)
    node.shutdown.register("tasks-flush", service.flush, priority=41, timeout=2.0)
