"""The DHT in a node: building its services from the settings, the ``dht`` health check and
its metrics. Uses trio (through the services).

``build`` runs before the transport starts (the RPC methods must be registered first);
``start`` after membership, so the routing table is seeded from the members it knows.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..lifecycle.health import Check, CheckFailed
from ._config import DhtConfig
from .content import ContentNetwork
from .service import DhtService

__all__ = ["build", "dht_config", "start"]

log = logging.getLogger(__name__)

_COUNTERS = ("rate_limited", "malformed", "bad_signatures", "bad_records", "rpc_timeouts",
             "rpc_failed", "store_stored", "store_refreshed", "store_stale_version",
             "store_invalid", "store_publisher_full", "store_store_full", "store_key_full",
             "store_too_large", "content_mismatch", "fetched", "fetch_failed",
             "chunks_served", "reads_timed_out")


def dht_config(settings: Any) -> DhtConfig:
    """The core's tunables from the ``dht.*`` settings."""
    d = settings.dht
    return DhtConfig(k=d.k, alpha=d.alpha, disjoint_paths=min(2, d.k),
                     rpc_timeout=d.rpc_timeout, lookup_deadline=d.lookup_deadline,
                     hedge_delay=d.hedge_delay,
                     refresh_interval=d.refresh_interval, record_ttl=d.record_ttl,
                     republish_interval=d.republish_interval,
                     replicate_interval=d.replicate_interval, max_records=d.max_records,
                     max_records_per_publisher=d.max_records_per_publisher,
                     peer_rate=d.peer_rate, peer_burst=d.peer_burst)


def build(node: Any) -> None:
    """Create ``node.dht`` and ``node.dht_content`` (their RPC methods registered)."""
    from ..identity import network_id

    settings = node.settings
    host = settings.network.advertise or settings.network.listen.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    node.dht = DhtService(node.manager, node.membership, node.store, node.identity,
                          network_id=network_id(node._network_key), config=dht_config(settings),
                          max_value_bytes=settings.dht.max_value_bytes, host=host)
    node.dht_content = ContentNetwork(
        node.dht, node.content, node.manager, fetch_timeout=settings.dht.fetch_timeout,
        list_timeout=settings.dht.list_timeout,
        max_content_bytes=settings.storage.max_content_bytes)
    dht, network = node.dht, node.dht_content
    node.metrics.callback_counters(
        "dht_events", "DHT: requests served and refused, records, RPC failures, fetches",
        "event", lambda: _counters(dht, network), _COUNTERS)
    node.metrics.callback_gauge(
        "dht_routing_table", "Contacts in the DHT routing table", [],
        lambda: [([], float(len(dht.core.table) if dht.core else 0))])
    node.metrics.callback_gauge(
        "dht_records", "Records the DHT holds for the network", [],
        lambda: [([], float(len(dht.core.store) if dht.core else 0))])
    cfg = settings.health
    node.health.add(Check("dht", lambda: _check(node), interval=cfg.interval,
                          timeout=cfg.timeout, critical="dht" in cfg.critical,
                          grace_period=cfg.grace_period))


def _counters(dht: DhtService, network: ContentNetwork) -> dict[str, int]:
    core = dht.core.counters if dht.core is not None else {}
    return {**core, **dht.counters, **network.counters}


async def start(node: Any, nursery: trio.Nursery) -> None:
    """Run the DHT and the publication of store writes (stopped before the store closes)."""
    await node._start_service(nursery, "dht", node.dht.run, priority=46)
    changes = node.content.changes.subscribe()

    async def publish(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await node.dht_content.run(changes, task_status=task_status)

    await node._start_service(nursery, "dht-publish", publish, priority=46)
    await node._start_service(nursery, "dht-rows", _flush_at_stop(node.dht), priority=71)


def _flush_at_stop(dht: DhtService) -> Any:
    """A service that only writes queued records when it is stopped (after the DHT stops)."""

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await dht.rows.flush()

    return run


async def _check(node: Any) -> str:
    dht = node.dht
    if dht is None or dht.core is None:
        raise CheckFailed("the DHT is not running")
    table = len(dht.core.table)
    # The members the DHT has taken in from membership, not membership's own count: the two
    # differ for a moment whenever membership learns a batch of peers (a join), and a check
    # that ran in that moment would report a failure for a whole interval.
    known = len(dht.members())
    if known and not table:
        raise CheckFailed(f"routing table empty with {known} live members known")
    recent = list(dht.recent)
    ok = sum(recent)
    if len(recent) >= 4 and ok * 2 < len(recent):
        raise CheckFailed(f"only {ok} of the last {len(recent)} lookups succeeded")
    return (f"{table} contacts, {len(dht.core.store)} records held, "
            f"{ok}/{len(recent)} recent lookups succeeded")
