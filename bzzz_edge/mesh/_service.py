"""The node's mesh: connections, SWIM membership, discovery and the peer table, wired together.

Uses trio. Data flows one way through each piece:
- discovery (mDNS, bootstrap peers, the persisted peer table) names addresses to dial;
- the connection manager authenticates connections and reports peers connected and lost;
- the membership core (sans-IO) gets those as Join / ConnectionLost events, and SWIM messages
  as Received events; its Send actions go out over the connections, its MemberEvents update
  the peer table, the metrics and which addresses we keep dialling.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from ..config import Config, parse_hostport
from ..errors import BzzzError, LocalProtocolError
from ..identity import Identity, format_node_id, network_fingerprint, network_id
from ..membership import (
    MIN_MESSAGE_BYTES,
    Address,
    ConnectionLost,
    Join,
    Leave,
    MemberEvent,
    MemberForgotten,
    Membership,
    MembershipConfig,
    Received,
    Send,
    Status,
    UpdateSelf,
    encode_message,
    profile,
    start_incarnation,
)
from ..net import ConnectionManager, NetLimits, PeerConnected, PeerDisconnected
from ..store import Store
from ..wire.envelope import DirectMessage, GossipMessage, encode_envelope, sign_gossip
from ..wire.receipt import Drop, GossipReceipt

__all__ = ["PROTOCOL_VERSION", "Mesh", "PeerView"]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SWIM = ("swim", 1)
_PEERS_DB = "peers"
_MAX_STRIKES = 10  # bad gossip messages from one peer before it is disconnected


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer as the API and CLI show it."""

    node_id: str
    name: str
    status: str
    incarnation: int
    address: str
    connected: bool
    since_s: float

    def as_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


class Mesh:
    """Owns the connection manager, the membership core and discovery for one node."""

    def __init__(self, config: Config, identity: Identity, network_key: bytes,
                 store: Store) -> None:
        self._config = config
        self.identity = identity
        self.node_id = identity.node_id
        self._store = store
        self._fingerprint = network_fingerprint(network_key)
        self._network_id = network_id(network_key)
        self.receipt = GossipReceipt(self._network_id,
                                     replay_window=config["network.replay_window"])
        self._strikes: dict[bytes, int] = {}
        self._subscriptions: dict[str, trio.MemorySendChannel[GossipMessage]] = {}
        # Sequence numbers start from the clock so a restarted node never reuses one.
        self._seq = time.time_ns() // 1000
        host, port = parse_hostport(config["network.listen"])
        self._listen_host = host
        limits = NetLimits(
            max_frame_size=config["network.max_frame_size"],
            send_queue=config["network.send_queue"],
            keepalive_interval=config["network.keepalive_interval"],
            handshake_timeout=config["network.handshake_timeout"],
            max_connections=config["network.max_connections"],
            max_per_ip=config["network.max_per_ip"],
        )
        self.manager = ConnectionManager(
            identity, network_key, listen=(host, port), limits=limits,
            known_types=frozenset({SWIM}),
            hello={"name": config["node.name"], "v": PROTOCOL_VERSION},
        )
        self.manager.handle("echo", _echo, inline=True)  # round-trip probes (benchmarks)
        # Peer-table changes waiting to be written, batched off the event loop (an fsync on an
        # SD card can take tens of milliseconds: too long to stall probes for).
        self._dirty: dict[tuple[str, bytes], object] = {}
        self._dirty_event = trio.Event()
        self.membership: Membership | None = None
        self._wakeup = trio.Event()
        self._addresses: dict[bytes, tuple[str, int]] = {}
        self.started = trio.Event()

    # --- views --------------------------------------------------------------------------------

    def alive_peers(self) -> int:
        if self.membership is None:
            return 0
        return sum(1 for m in self.membership.alive_members() if m.node != self.node_id)

    def peers(self) -> list[PeerView]:
        if self.membership is None:
            return []
        now = trio.current_time()
        connected = self.manager.connections
        return [
            PeerView(format_node_id(m.node), str(m.meta.get("name", "")), m.status.name.lower(),
                     m.incarnation, f"{m.address.host}:{m.address.port}", m.node in connected,
                     round(now - m.since, 3))
            for m in self.membership.members() if m.node != self.node_id
        ]

    # --- gossip (flooded to every connected peer; the relaying router comes with pub/sub) ------

    def subscribe(self, topic: str, buffer: int = 256) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Deliver accepted messages on ``topic`` to the returned channel."""
        send, receive = trio.open_memory_channel[GossipMessage](buffer)
        self._subscriptions[topic] = send
        return receive

    def publish(self, topic: str, body: bytes | None = None) -> GossipMessage:
        """Sign a message as its origin and send it to every connected peer."""
        self._seq += 1
        message = sign_gossip(self.identity.private_key, network_id=self._network_id,
                              seq=self._seq, timestamp_ms=int(time.time() * 1000), topic=topic,
                              body=body)
        self.manager.broadcast(encode_envelope(message))
        return message

    def _on_gossip(self, sender: bytes, message: GossipMessage) -> None:
        drop = self.receipt.check(message, time.time())
        if drop is None:
            channel = self._subscriptions.get(message.topic)
            if channel is not None:
                try:
                    channel.send_nowait(message)
                except trio.WouldBlock:
                    self.manager.counters["gossip_undelivered"] += 1
            return
        self.manager.counters[f"gossip_{drop.value}"] += 1
        if drop is Drop.DUPLICATE:
            return  # normal: several peers relay the same message
        strikes = self._strikes[sender] = self._strikes.get(sender, 0) + 1
        level = logging.WARNING if strikes == 1 else logging.DEBUG
        log.log(level, "dropped gossip from %s: %s (strike %d)", format_node_id(sender)[:15],
                drop.value, strikes)
        if strikes >= _MAX_STRIKES:
            self._strikes.pop(sender)
            self.manager.punish(sender, f"{strikes} bad gossip messages")

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(self.manager.run)
            stored = self._store.get_meta("incarnation", None)
            incarnation = start_incarnation(stored)
            if stored is not None and incarnation == 0:
                log.warning("stored incarnation %r out of range; starting from 0", stored)
            self._store.put_meta("incarnation", incarnation)
            self.membership = Membership(
                self.node_id,
                address=Address(self._config["network.advertise"] or self._listen_host or "0.0.0.0",
                                port),
                now=trio.current_time(), config=_membership_config(self._config),
                incarnation=incarnation,
                meta={"name": self._config["node.name"], "v": PROTOCOL_VERSION},
            )
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._persist_peers)
            nursery.start_soon(self._connection_events)
            nursery.start_soon(self._inbound)
            self._dial_known_peers()
            if self._config["network.mdns"]:
                nursery.start_soon(self._discover, port)
            self.started.set()
            task_status.started(port)

    async def leave(self) -> None:
        """Tell the others we are leaving (pre-shutdown), then close every connection."""
        if self.membership is not None and not self.membership.has_left:
            self._perform(self.membership.handle(Leave(), trio.current_time()))
        # Connections flush what is queued (the leave news) before they close.
        await self.manager.close_all("node leaving")
        await self._flush_peers()

    async def _persist_peers(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            await self._flush_peers()

    async def _flush_peers(self) -> None:
        changes, self._dirty = self._dirty, {}
        if changes:
            await trio.to_thread.run_sync(self._store.write_batch, changes)

    def _mark_dirty(self, db: str, key: bytes, value: object) -> None:
        self._dirty[(db, key)] = value
        self._dirty_event.set()

    def _dial_known_peers(self) -> None:
        for text in self._config["network.bootstrap_peers"]:
            host, port = parse_hostport(text)
            self.manager.want((host, port))
        for node, record in self._store.items(_PEERS_DB):
            if record.get("status") in ("alive", "suspect") and node != self.node_id:
                self._want(node, (record["host"], record["port"]))

    def _want(self, node: bytes, address: tuple[str, int]) -> None:
        """Keep a connection to ``node``. Addresses come from peers (gossip, mDNS), so only IP
        literals are dialled: never a name someone else chose for us to resolve."""
        try:
            if ipaddress.ip_address(address[0]).is_unspecified:
                return
        except ValueError:
            self.manager.counters["address_refused"] += 1
            return
        previous = self._addresses.get(node)
        if previous is not None and previous != address:
            self.manager.unwant(previous)
        self._addresses[node] = address
        self.manager.want(address, node)

    async def _ticker(self) -> None:
        assert self.membership is not None
        while True:
            deadline = self.membership.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else trio.current_time() + 1):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._perform(self.membership.tick(trio.current_time()), wake_ticker=False)

    async def _connection_events(self) -> None:
        assert self.membership is not None
        async for event in self.manager.events:
            now = trio.current_time()
            if isinstance(event, PeerConnected):
                self._learn_own_address(event.hello.get("observed"))
                self._addresses.setdefault(event.peer_id, event.address)
                actions = self._handle(Join(event.peer_id, Address(*event.address)), now)
            elif isinstance(event, PeerDisconnected):
                self._strikes.pop(event.peer_id, None)  # strikes count per connection
                actions = self._handle(ConnectionLost(event.peer_id), now)
            self._perform(actions)

    async def _inbound(self) -> None:
        assert self.membership is not None
        async for sender, envelope in self.manager.inbound:
            if isinstance(envelope, GossipMessage):
                self._on_gossip(sender, envelope)
            elif isinstance(envelope, DirectMessage) and (envelope.type, envelope.version) == SWIM:
                try:
                    payload = msgpack.unpackb(envelope.body)
                except (ValueError, TypeError, msgpack.UnpackException):
                    self.manager.counters["swim_malformed"] += 1
                    continue
                self._perform(self._handle(Received(sender, payload), trio.current_time()))

    def _handle(self, event: Any, now: float) -> list[Any]:
        """Feed the core an event, unless we have left; a refused event is logged, not fatal."""
        assert self.membership is not None
        if self.membership.has_left:
            return []
        try:
            return self.membership.handle(event, now)
        except LocalProtocolError as exc:
            log.debug("membership refused %s: %s", type(event).__name__, exc)
            return []

    def _learn_own_address(self, observed: object) -> None:
        """Listening on all interfaces, we learn our address from what peers see."""
        assert self.membership is not None
        me = self.membership.member(self.node_id)
        if me is None or me.address.host not in ("0.0.0.0", "::") or not isinstance(observed, str):
            return
        try:
            if ipaddress.ip_address(observed).is_unspecified:
                return
        except ValueError:
            return
        self._perform(self._handle(
            UpdateSelf(address=Address(observed, self.manager.port)), trio.current_time()))

    def _perform(self, actions: list[Any], *, wake_ticker: bool = True) -> None:
        """Carry out the core's actions; then let the ticker re-read the core's next deadline
        (an event may have moved it earlier)."""
        for action in actions:
            if isinstance(action, Send):
                payload = encode_envelope(DirectMessage(
                    *SWIM, msgpack.packb(encode_message(action.message), use_bin_type=True)))
                if not self.manager.send(action.to, payload) and action.address is not None:
                    self._want(action.to, (action.address.host, action.address.port))
            elif isinstance(action, MemberEvent):
                self._on_member_event(action)
            elif isinstance(action, MemberForgotten):
                self._mark_dirty(_PEERS_DB, action.node, None)
                address = self._addresses.pop(action.node, None)
                if address is not None:
                    self.manager.unwant(address)
        if wake_ticker:
            self._wakeup.set()

    def _on_member_event(self, event: MemberEvent) -> None:
        if event.node == self.node_id:
            self._mark_dirty("meta", b"incarnation", event.incarnation)
            return
        name = format_node_id(event.node)[:15]
        old = event.old_status.name.lower() if event.old_status else "new"
        log.info("peer %s %s -> %s (incarnation %d)", name, old, event.new_status.name.lower(),
                 event.incarnation)
        address = (event.address.host, event.address.port)
        if event.new_status in (Status.ALIVE, Status.SUSPECT):
            self._want(event.node, address)
        else:
            self.manager.unwant(self._addresses.pop(event.node, address))
        if not event.verified:
            return  # known only from others' news: a rumour is not persisted
        self._mark_dirty(_PEERS_DB, event.node, {
            "host": event.address.host, "port": event.address.port,
            "status": event.new_status.name.lower(), "incarnation": event.incarnation,
            "name": str(event.meta.get("name", "")), "seen": time.time(),
        })

    async def _discover(self, port: int) -> None:
        """Dial what mDNS finds. Peers are taken as they are found, while our own registration
        (a few announcements, most of a second) is still going on."""
        from ..discovery import MdnsDiscovery, PeerFound

        discovery = MdnsDiscovery(self.node_id, port, self._fingerprint,
                                  protocol_version=PROTOCOL_VERSION, name=self._config["node.name"])

        async def run_discovery() -> None:
            try:
                await discovery.run()
            except (BzzzError, OSError) as exc:
                log.warning("mDNS discovery unavailable: %s", exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_discovery)
            async for event in discovery.events:
                if isinstance(event, PeerFound) and event.addresses:
                    self._want(event.peer_id, event.addresses[0])


def _membership_config(config: Config) -> MembershipConfig:
    """The node.profile timings with the membership.* keys the user set; messages fit a frame."""
    overrides: dict[str, object] = {
        key.split(".", 1)[1]: config[key] for key, source in config.sources.items()
        if key.startswith("membership.") and source.kind != "default"
    }
    room = config["network.max_frame_size"] - 1024  # envelope, framing and AEAD overhead
    overrides["max_message_bytes"] = max(MIN_MESSAGE_BYTES, min(64 * 1024, room))
    return profile(config["node.profile"], overrides)


async def _echo(peer_id: bytes, body: bytes) -> bytes:
    return body
