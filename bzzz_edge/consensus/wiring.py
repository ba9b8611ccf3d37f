"""The consensus service in a node: built from the settings, its metrics and health check, its
start and its hand-over on SIGTERM. Uses trio (through the service it starts).

Kept out of ``node.py`` so the node only calls ``build_consensus`` and ``start_consensus``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..lifecycle.health import Check, CheckFailed
from ..lifecycle.shutdown import Phase
from . import RaftConfig, lan, local
from .service import ConsensusService

__all__ = ["COUNTERS", "build_consensus", "start_consensus"]

#: Present at zero from start, so dashboards and alerts work before the first event.
COUNTERS = ("stale_term", "malformed", "non_member", "protocol_errors", "malformed_envelopes",
            "foreign_group", "before_group", "inbox_full", "peer_backlog", "sends_dropped",
            "malformed_forwards", "check_quorum_step_downs", "votes_refused_in_lease",
            "heartbeats_unanswered", "log_writes_inline", "log_writes_handed",
            "pre_votes_refused_after_vote")


TIMINGS = ("heartbeat_interval", "election_timeout_min", "election_timeout_max")


def raft_config(config: Any) -> RaftConfig:
    """The core's timings for ``node.profile``, with the ``coordination.*`` timings set.

    Raises:
        ConfigError: the timings contradict each other (named by their keys).
    """
    overrides = {name: config[f"coordination.{name}"] for name in TIMINGS
                 if (source := config.sources.get(f"coordination.{name}")) is not None
                 and source.kind != "default"}
    preset = local if config.settings.node.profile == "local" else lan
    return preset(**overrides)


def build_consensus(node: Any, manager: Any) -> ConsensusService:
    """The service, registered with the transport before it runs, with metrics and a check."""
    cfg = node.settings.coordination
    service = ConsensusService(
        manager, node.store, node.membership, config=node.raft_config,
        voters=cfg.voters, dead_after=cfg.dead_after, bootstrap_wait=cfg.bootstrap_wait,
        proposal_timeout=cfg.proposal_timeout,
        owner=node.identity.node_id + node.network_id)
    if getattr(node, "decision_machine", None) is not None:  # the tasks' (tasks/_decisions)
        service.machine = node.decision_machine
    metrics = node.metrics

    def number(read: Callable[[], float]) -> Callable[[], list[tuple[list[str], float]]]:
        return lambda: [([], float(read()))]

    metrics.callback_gauge("coordination_term", "Current Raft term", [],
                           number(lambda: service.core.term if service.core else 0))
    metrics.callback_gauge("coordination_commit_index", "Committed index of the decision log",
                           [], number(lambda: service.core.commit_index if service.core else 0))
    metrics.callback_gauge("coordination_is_leader", "1 on the coordinator", [],
                           number(lambda: service.leader == service.node_id))
    metrics.callback_gauge("coordination_leader_known", "1 while a coordinator is known", [],
                           number(lambda: service.leader is not None))
    metrics.callback_counters("coordination_events",
                              "Consensus: refused messages by reason, step-downs, drops",
                              "event", service.all_counters, COUNTERS)
    metrics.callback_histogram(
        "coordination_commit_seconds", "Proposal to commit on the coordinator, every proposal",
        lambda: (service.commit_latency.cumulative(), service.commit_latency.total))
    health = node.settings.health
    node.health.add(Check("coordination", lambda: _check(service), interval=health.interval,
                          timeout=health.timeout, critical=False,
                          grace_period=health.grace_period))
    return service


async def _check(service: ConsensusService) -> str:
    status = service.status()
    if status["leader"] is None and service.starting():
        return "starting: looking for a group or electing a coordinator"
    if status["leader"] is None:
        raise CheckFailed(f"no coordinator known ({status['state']}, term {status['term']})")
    return (f"coordinator {status['leader'][:15]} in term {status['term']}, commit index "
            f"{status['commit_index']}, {len(status['voters'])} voters")


async def start_consensus(node: Any, service: ConsensusService,
                          start: Callable[..., Awaitable[Any]], nursery: trio.Nursery) -> None:
    """Start the service; on SIGTERM the coordinator hands over before the node leaves."""
    await start(nursery, "consensus", service.run, priority=43)
    node.shutdown.register("coordinator-hand-over", service.hand_over,
                           phase=Phase.PRE_SHUTDOWN, priority=50, timeout=2.0)
