"""What a node shows its operators: the built-in health checks and the metric families.

Registered once at start: the memory, disk and p2p checks; node facts, health, readiness, peer
counts and uptime as gauges; and every component's own counters as Prometheus counter families
that exist (at zero) from start, so dashboards and alerts work before the first event. Values
are read from the components when checked or scraped. Uses trio (the checks run as tasks).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from . import __version__, _native
from .config import Config
from .discovery.service import COUNTERS as DISCOVERY_COUNTERS
from .discovery.service import LanDiscovery
from .gossip.latency import LatencyHistogram
from .gossip.service import GossipService
from .identity import Identity
from .lifecycle.health import Check, CheckFailed, HealthRegistry, disk_check, memory_check
from .lifecycle.metrics import Metrics
from .membership.service import MembershipService
from .net import ConnectionManager
from .settings import Settings
from .store import Store

__all__ = ["Observed", "add_builtin_checks", "add_builtin_metrics"]


class Observed(Protocol):
    """What is observed of a node (``Node`` is one); its components are None until started."""

    config: Config
    settings: Settings
    identity: Identity
    health: HealthRegistry
    metrics: Metrics
    manager: ConnectionManager | None
    membership: MembershipService | None
    gossip: GossipService | None
    discovery: LanDiscovery | None
    store: Store | None
    peer_port: int

    @property
    def ready(self) -> bool: ...

    def alive_peers(self) -> int: ...

# Counter names that exist from start (at zero): what dashboards and alerts key on.
_NET_EVENTS = ("handshake_failed_auth", "handshake_failed_timeout", "handshake_failed_protocol",
               "handshake_failed_network", "refused_limit", "refused_per_ip",
               "refused_handshakes", "refused_throttled", "refused_banned", "strikes", "bans",
               "accept_out_of_fds", "dial_given_up", "duplicates", "conn_malformed",
               "conn_unknown", "conn_dropped_sends", "conn_requests_busy", "conn_send_too_large",
               "conn_handler_failed", "event_overflows", "want_refused", "address_refused")
_MEMBERSHIP_EVENTS = ("swim_malformed", "member_change_overflows", "probes", "probe_failures",
                      "indirect_probes", "declared_dead", "refutations", "late_ticks",
                      "members_refused", "implausible_incarnations", "unverified_evicted",
                      "unverified_expired", "protocol_errors", "malformed")
_GOSSIP_EVENTS = ("gossip_published", "gossip_delivered", "gossip_duplicates", "gossip_invalid",
                  "gossip_stale", "gossip_ignored", "gossip_gaps", "gossip_resyncs",
                  "gossip_queue_drops", "gossip_subscriber_drops", "gossip_undecodable")
_DISCOVERY_EVENTS = DISCOVERY_COUNTERS



def add_builtin_checks(node: Observed) -> None:
    cfg = node.settings.health
    checks = {
        "memory": memory_check(lambda: node.settings.health.memory_max_percent),
        "disk": disk_check(node.config.data_dir, lambda: node.settings.health.disk_min_free_mb),
        "p2p": lambda: _p2p_check(node),
        "storage": lambda: _storage_check(node),
    }
    for name, fn in checks.items():
        node.health.add(Check(name, fn, interval=cfg.interval, timeout=cfg.timeout,
                              critical=name in cfg.critical, grace_period=cfg.grace_period))


async def _p2p_check(node: Observed) -> str:
    membership, manager = node.membership, node.manager
    if membership is None or manager is None or not membership.started.is_set():
        raise CheckFailed("peering is not running")
    alive, connected = node.alive_peers(), len(manager.connections)
    wanted = node.settings.health.min_peers
    if alive < wanted:
        raise CheckFailed(f"{alive} alive peers, {wanted} required; {connected} connected")
    return f"{alive} alive peers, {connected} connected, listening on port {node.peer_port}"


async def _storage_check(node: Observed) -> str:
    """Fails when the store is not open, or full at its platform ceiling (writes refused)."""
    store = node.store
    if store is None or store.closed:
        raise CheckFailed("the store is not open")
    writer = store.writer
    size = store.env.info()["map_size"] // 2**20
    if writer.full:
        raise CheckFailed(f"the store is full at its ceiling of {writer.max_map_size // 2**20} "
                          "MiB: writes are refused")
    return f"map {size} MiB of at most {writer.max_map_size // 2**20} MiB"


def add_builtin_metrics(node: Observed) -> None:
    metrics = node.metrics
    impl_labels = [f"impl_{name}" for name in _native.PURE_MODULES]
    # A callback, not ``metrics.gauge``: that would load prometheus_client at start.
    info = [__version__, node.identity.display_id, *_native.implementations().values()]
    metrics.callback_gauge("node_info", "Constant 1, labelled with node facts",
                           ["version", "node_id", *impl_labels], lambda: [(info, 1.0)])
    metrics.callback_gauge(
        "health_check_ok", "1 when the health check passes, 0 when failing or pending",
        ["check", "critical"],
        lambda: [([n, str(c.critical).lower()], float(c.result.status == "ok"))
                 for n, c in node.health.checks.items()])
    metrics.callback_gauge("ready", "1 when the node is ready for work", [],
                           lambda: [([], float(node.ready))])
    metrics.callback_gauge(
        "peers", "Peers by membership status", ["status"],
        lambda: _count_by(p.status for p in (node.membership.peers() if node.membership else [])))
    started = time.monotonic()
    metrics.callback_gauge("uptime_seconds", "Seconds since the node started", [],
                           lambda: [([], time.monotonic() - started)])
    families = [
        ("net_events", "Transport events: handshakes, refusals, bans, drops, traffic",
         lambda: node.manager.figures() if node.manager else {}, _NET_EVENTS),
        ("membership_events", "Membership (SWIM) events: probes, suspicions, refutations",
         lambda: node.membership.counters() if node.membership else {}, _MEMBERSHIP_EVENTS),
        ("gossip_messages", "Gossip messages received, by outcome",
         lambda: node.gossip.counters() if node.gossip else {}, _GOSSIP_EVENTS),
        ("discovery_events", "mDNS discovery events",
         lambda: node.discovery.counters() if node.discovery else {}, _DISCOVERY_EVENTS),
    ]
    for name, doc, read, known in families:
        metrics.callback_counters(name, doc, "event", read, known)
    add_pubsub_metrics(node)


def add_pubsub_metrics(node: Observed) -> None:
    """Per-topic pub/sub counters (joined topics: at most ``gossip.max_topics``) and the
    delivery latency histogram."""
    metrics = node.metrics
    metrics.callback_counter_family(
        "pubsub_topic_events", "Pub/sub events per joined topic", ["topic", "event"],
        lambda: _topic_events(node.gossip))
    metrics.callback_gauge(
        "pubsub_mesh_peers", "Mesh peers per joined topic", ["topic"],
        lambda: [([row["topic"]], float(row.get("mesh_peers", 0)))
                 for row in (node.gossip.topic_stats() if node.gossip else []) if row["joined"]])
    metrics.callback_histogram(
        "pubsub_delivery_latency_seconds",
        "Origin timestamp (its wall clock, ms) to delivery here, every delivered message",
        lambda: (node.gossip.latency.cumulative(), node.gossip.latency.total) if node.gossip
        else (LatencyHistogram().cumulative(), 0.0))


_TOPIC_EVENTS = ("delivered", "duplicates", "invalid", "stale", "ignored", "gaps",
                 "queue_drops", "subscriber_drops", "undecodable")


def _topic_events(gossip: GossipService | None) -> list[tuple[list[str], float]]:
    # Joined topics only: those a peer merely announces would let it grow the label set.
    rows = gossip.topic_stats() if gossip is not None else []
    return [([row["topic"], event], float(row.get(event, 0))) for row in rows if row["joined"]
            for event in _TOPIC_EVENTS]


def _count_by(values: Iterable[Any]) -> list[tuple[list[str], float]]:
    return [([key], float(n)) for key, n in Counter(values).items()]
