"""The peer-to-peer side of a node, one piece at a time: how the transport and each service that
rides it (gossip, membership, the signed log and its replication) is built from the
configuration, how they are started in order, how they leave the network, and how an
operator's join is answered. Uses trio.

``node.py`` owns the node's lifecycle; ``start_peering`` builds its transport and services (the
DHT and consensus through their ``wiring`` modules) and starts them in order, each registered
with the node's shutdown at its priority. The detail of each piece lives here too: the
``node.profile`` presets with the keys the user set, how much of a frame a message may fill,
what the signed log follows and how its figures are counted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import trio

from . import __version__
from .config import Config, parse_hostport
from .consensus.wiring import build_consensus, start_consensus
from .dht import wiring as dht_wiring
from .discovery.service import LanDiscovery
from .errors import ConfigError
from .gossip import RouterConfig
from .gossip import profile as gossip_profile
from .gossip.service import GossipService
from .identity import Identity, format_node_id, network_id
from .lifecycle.metrics import Metrics
from .lifecycle.shutdown import Phase
from .membership import MIN_MESSAGE_BYTES, MembershipConfig
from .membership import profile as membership_profile
from .membership.service import MembershipService
from .net import CloseReason, ConnectionManager, NetLimits, PeerConnected, Source
from .settings import Settings
from .signedlog.replication import Replicator
from .signedlog.service import LogService
from .store import Store
from .store.content import ContentStore
from .store.peers import PeerTable

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "PROTOCOL_VERSION",
    "build_gossip",
    "build_log",
    "build_membership",
    "build_transport",
    "gossip_config",
    "join",
    "leave_network",
    "log_follower",
    "membership_config",
    "start_peering",
]

PROTOCOL_VERSION = 1
_GOSSIP_FRAME_OVERHEAD = 2048  # envelope, signature, topic, compression header, AEAD
_JOIN_WAIT = 10.0  # seconds an operator's join waits for the peer to answer


def build_transport(settings: Settings, identity: Identity, network_key: bytes
                    ) -> ConnectionManager:
    """The connection manager every service registers its handlers with."""
    return ConnectionManager(
        identity, network_key, listen=parse_hostport(settings.network.listen),
        limits=NetLimits.from_settings(settings.network),
        hello={"name": settings.node.name, "v": PROTOCOL_VERSION})


def build_gossip(settings: Settings, manager: ConnectionManager, identity: Identity,
                 network_key: bytes, router: RouterConfig) -> GossipService:
    """Pub/sub over the transport; a message body leaves room in the frame for its envelope."""
    return GossipService(
        manager, identity, network_id(network_key), settings=settings.gossip, router=router,
        max_message_size=min(settings.gossip.max_message_size,
                             settings.network.max_frame_size - _GOSSIP_FRAME_OVERHEAD))


def build_membership(config: Config, manager: ConnectionManager, table: PeerTable
                     ) -> MembershipService:
    """SWIM membership over the transport, remembering peers in ``table``.

    Raises:
        ConfigError: a membership value out of range for the profile.
    """
    settings = config.settings
    return MembershipService(
        manager, table, profile=membership_config(config), advertise=settings.network.advertise,
        meta={"name": settings.node.name, "v": PROTOCOL_VERSION})


def build_log(store: Store, identity: Identity, manager: ConnectionManager,
              content: ContentStore | None, metrics: Metrics) -> tuple[LogService, Replicator]:
    """The log service and its replicator, registered with the transport before it runs; store
    writes are logged in their own transaction, and the log's figures are counted."""
    service = LogService(store, identity)
    replicator = Replicator(service, manager)
    if content is not None:
        content.add_hook(service.store_hook)
    metrics.callback_counters(
        "log_events", "Signed log: appends, entries served and replicated, refusals, forks",
        "event", lambda: service.counters + replicator.counters,
        ("appended", "append_failed", "append_refused", "append_queue_full",
         "served_entries", "entries_replicated", "rounds_refused", "rounds_failed",
         "forks"))
    metrics.callback_gauge("log_length", "Entries in this node's signed log", [],
                           lambda: [([], float(service.length))])
    return service, replicator


def log_follower(service: LogService, membership: MembershipService,
                 content: ContentStore | None
                 ) -> Callable[..., Awaitable[None]]:
    """A service (for the node to start) that appends every membership change and store write
    to the log; it subscribes now, so nothing from here on is missed."""
    changes = membership.changes.subscribe()
    stored = None if content is None else content.changes.subscribe()

    async def follow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.follow_members, changes)
            if stored is not None:
                nursery.start_soon(service.follow_store, stored)

    return follow


async def leave_network(membership: MembershipService, manager: ConnectionManager,
                        table: PeerTable) -> None:
    """Announce that we leave, close every connection, then keep what we know of our peers."""
    await membership.leave()
    # Connections flush what is queued (the leave news) before they close.
    await manager.close_all(CloseReason.LEAVING)
    await table.flush()


async def join(manager: ConnectionManager, address: tuple[str, int]) -> str | None:
    """Dial a peer now and keep it (as a bootstrap peer); membership spreads the rest.

    Returns the display ID of the node that answered within 10 s, or None (dialling goes
    on with backoff).
    """
    events = manager.events.subscribe()
    try:
        manager.want(address, Source.JOIN)
        for node, conn in manager.connections.items():
            if _is_at(address, (conn.remote_ip, conn.hello.get("port"))):
                return format_node_id(node)
        with trio.move_on_after(_JOIN_WAIT):
            async for event in events:
                if isinstance(event, PeerConnected) and _is_at(address, event.address):
                    return format_node_id(event.peer_id)
    finally:
        events.close()
    return None


def _is_at(asked: tuple[str, int], found: tuple[str, object]) -> bool:
    """Whether a peer found at ``found`` (its IP, its announced port) is the one asked for
    (by IP, or by a host name we cannot compare: then by port alone)."""
    try:
        ipaddress.ip_address(asked[0])
    except ValueError:
        return asked[1] == found[1]
    return asked == found


def membership_config(config: Config) -> MembershipConfig:
    """The node.profile timings with the membership.* keys the user set; messages fit a frame.

    Raises:
        ConfigError: a membership value out of range for the profile.
    """
    overrides: dict[str, object] = {
        key.split(".", 1)[1]: config[key] for key, source in config.sources.items()
        if key.startswith("membership.") and source.kind != "default"
    }
    room = config.settings.network.max_frame_size - 1024  # envelope, framing, AEAD overhead
    overrides["max_message_bytes"] = max(MIN_MESSAGE_BYTES, min(64 * 1024, room))
    return membership_profile(config.settings.node.profile, overrides)


def gossip_config(config: Config) -> RouterConfig:
    """The node.profile router timings with the gossip.* router keys the user set; the peer
    budgets and the replay window always from their keys.

    Raises:
        ConfigError: a router value out of range for the profile.
    """
    router_keys = {f.name for f in dataclasses.fields(RouterConfig)}
    overrides: dict[str, object] = {
        key.split(".", 1)[1]: config[key] for key, source in config.sources.items()
        if key.startswith("gossip.") and source.kind != "default"
        and key.split(".", 1)[1] in router_keys
    }
    overrides.update(peer_message_rate=config["gossip.max_rate"],
                     peer_duplicate_rate=config["gossip.max_duplicate_rate"],
                     replay_window=config["network.replay_window"])
    try:
        return gossip_profile(config.settings.node.profile, overrides)
    except ConfigError as exc:  # the core names its tunables pubsub.*; the keys are gossip.*
        key = exc.key.replace("pubsub.", "gossip.", 1) if exc.key else None
        raise ConfigError(str(exc).replace("pubsub.", "gossip.", 1), key=key) from None


async def start_peering(node: Node, nursery: trio.Nursery, *,
                        register_rpcs: Callable[[ConnectionManager], None] | None = None) -> int:
    """Build ``node``'s transport and hand it to the services on top, then start them in order
    under ``nursery`` (each registered with the node's shutdown); returns the peer port.

    ``register_rpcs``: registers on the transport, before any peer can reach it, the RPC
    methods of services that start after peering (the tasks' ``tasks.claim``). A peer must not
    hear "unknown method" from a node that is only still starting: a claimant takes that
    answer from a coordinator for an older node's, for ten minutes.
    """
    assert node.store is not None
    cfg = node.settings
    node.manager = manager = build_transport(cfg, node.identity, node._network_key)
    if register_rpcs is not None:
        register_rpcs(manager)
    node.gossip = build_gossip(cfg, manager, node.identity, node._network_key,
                               node._gossip_router)
    table = PeerTable(node.store)
    node.membership = build_membership(node.config, manager, table)
    node.signed_log, node._replicator = build_log(node.store, node.identity, manager,
                                                  node.content, node.metrics)
    dht_wiring.build(node)
    node.consensus = build_consensus(node, manager)
    peer_port: int = await node._start_service(nursery, "transport", manager.run,
                                               priority=50)
    await node._start_service(nursery, "peer-table", table.run, priority=55)
    await node._start_service(nursery, "membership", node.membership.run, priority=45)
    await node._start_service(nursery, "gossip", node.gossip.run, priority=47)
    await _start_log(node, nursery)
    await dht_wiring.start(node, nursery)
    await start_consensus(node, node.consensus, node._start_service, nursery)
    for text in cfg.network.bootstrap_peers:
        manager.want(parse_hostport(text), Source.BOOTSTRAP)
    if cfg.network.mdns:
        node.discovery = LanDiscovery(manager, fingerprint=node._network_fingerprint,
                                      protocol_version=PROTOCOL_VERSION,
                                      name=cfg.node.name)
        await node._start_service(nursery, "discovery", node.discovery.run, priority=40)
    node.shutdown.register("leave", partial(leave_network, node.membership, manager, table),
                           phase=Phase.PRE_SHUTDOWN, priority=60, timeout=2.0)
    return peer_port


async def _start_log(node: Node, nursery: trio.Nursery) -> None:
    """Append this start, every membership change and store write; replicate peers' logs.
    Stops before the store closes (the appender commits what is queued first)."""
    assert node.signed_log is not None and node._replicator is not None
    assert node.membership is not None
    service = node.signed_log
    follow = log_follower(service, node.membership, node.content)
    service.record("node_started", {"version": __version__, "name": node.settings.node.name})
    await node._start_service(nursery, "signed-log", service.run, priority=70)
    node.shutdown.register("log-flush", service.flush, priority=69, timeout=2.0)
    await node._start_service(nursery, "log-members", follow, priority=44)
    await node._start_service(nursery, "log-replication", node._replicator.run, priority=44)
