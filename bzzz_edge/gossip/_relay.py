"""The message path of the router: publish, receive, check, deliver, pass on. No I/O.

A mixin of ``Router`` (``_router``), kept apart so that each module holds one concern: this one
is what happens to a gossip message; the router itself keeps peers, topics, control messages
and the heartbeat. The order of the checks and why is in the ``_router`` docstring.
"""

from __future__ import annotations

from bzzz_edge.errors import LocalProtocolError, SignatureError
from bzzz_edge.gossip._budget import PeerBudget
from bzzz_edge.gossip._config import RouterConfig
from bzzz_edge.gossip._events import (
    GAP_UNKNOWN,
    Action,
    Deliver,
    Offence,
    Send,
    Validation,
)
from bzzz_edge.gossip._lazy import LazyRepair, PeerState
from bzzz_edge.gossip._mcache import CacheEntry, MessageCache, peer_group, with_peer
from bzzz_edge.gossip._mesh import TopicState
from bzzz_edge.gossip._receipt import Drop, GossipReceipt
from bzzz_edge.wire.constants import MAX_HOPS
from bzzz_edge.wire.envelope import GossipMessage, verify_gossip

__all__ = ["Relay"]


class Relay:
    # Set by ``Router.__init__``.
    config: RouterConfig
    me: bytes
    receipt: GossipReceipt
    cache: MessageCache
    ignored: int
    _network_id: bytes
    _wall_offset: float
    _peers: dict[bytes, PeerState]
    _topics: dict[str, TopicState]
    _budget: PeerBudget
    _duplicates: PeerBudget
    _lazy: LazyRepair
    _out: list[Action]

    def _topic(self, topic: str) -> TopicState:
        raise NotImplementedError

    def _charge(self, peer: bytes, offence: Offence, now: float) -> None:
        raise NotImplementedError

    def _on_publish(self, message: GossipMessage, now: float) -> None:
        if message.origin != self.me or message.hops != 0:
            raise LocalProtocolError("Publish: the message must be ours (origin == me), hops 0")
        msg_id = message.msg_id
        verdict = self.receipt.admit(message, now + self._wall_offset, authenticated=True,
                                     msg_id=msg_id, own=True)
        if isinstance(verdict, Drop):
            raise LocalProtocolError(f"Publish: message refused ({verdict.value}); sequence "
                                     "numbers must grow per topic, timestamps be current")
        state = self._topic(message.topic)
        entry = self.cache.put(msg_id, message, now, verified=True)
        entry.pushed = peer_group(state.peers)
        out = self._out
        for peer in state.peers:
            out.append(Send(peer, message))
        if state.subscribed:  # after the sends: our own subscribers need not go first
            state.counters["delivered"] += 1
            out.append(Deliver(message, 0, 0))

    def _on_message(self, peer: bytes, message: GossipMessage, now: float) -> None:
        state = self._topics.get(message.topic)
        if state is None or not state.subscribed:
            self.ignored += 1
            return
        if not self._budget.spend(peer, now):
            self._charge(peer, Offence.FLOOD, now)
            return
        msg_id = message.msg_id
        self._lazy.received(msg_id)
        authenticated = peer == message.origin
        verdict = self.receipt.admit(message, now + self._wall_offset,
                                     authenticated=authenticated, msg_id=msg_id)
        if isinstance(verdict, Drop):
            self._on_drop(peer, msg_id, state, verdict, now)
            return
        if state.validator is not None:
            try:
                validation = state.validator(message)
            except Exception:
                # An application validator's bug, on a hostile message perhaps: never let it
                # out of the core; drop the message, blame no one.
                state.counters["validator_errors"] += 1
                return
            if validation is Validation.REJECT:
                state.counters["invalid"] += 1
                self._charge(peer, Offence.REJECTED, now)
                return
            if validation is Validation.IGNORE:
                state.counters["ignored"] += 1
                return
        state.counters["delivered"] += 1
        if verdict == GAP_UNKNOWN:
            state.counters["resyncs"] += 1
        else:
            state.counters["gaps"] += verdict
        self._out.append(Deliver(message, message.hops + 1, verdict))
        entry = self.cache.put(msg_id, message, now, verified=not authenticated,
                               hops=min(message.hops + 1, MAX_HOPS))
        entry.have = (peer,)
        if authenticated:  # the origin sent it to its neighbours itself: presume they have it
            entry.presumed = self._peers[peer].neighbours
        self._forward(peer, entry, state, now)

    def _on_drop(self, peer: bytes, msg_id: bytes, state: TopicState, drop: Drop,
                 now: float) -> None:
        if drop is Drop.DUPLICATE or drop is Drop.REPLAY:
            state.counters["duplicates" if drop is Drop.DUPLICATE else "stale"] += 1
            entry = self.cache.get(msg_id)
            if entry is not None:
                entry.have = with_peer(entry.have, peer)
            if not self._duplicates.spend(peer, now):
                self._charge(peer, Offence.DUPLICATE_FLOOD, now)
        elif drop is Drop.STALE:
            state.counters["stale"] += 1
            self._charge(peer, Offence.STALE, now)
        elif drop is Drop.BAD_SIGNATURE:
            state.counters["invalid"] += 1
            self._charge(peer, Offence.BAD_SIGNATURE, now)
        else:
            state.counters["ignored"] += 1

    def _forward(self, sender: bytes, entry: CacheEntry, state: TopicState, now: float) -> None:
        if not state.may_pass_on(entry.hops, self.config.max_hops):  # the links it crossed
            return
        mesh, skip, have = state.mesh, entry.presumed, entry.have
        if not (mesh.keys() - skip).difference(have):
            # (in C: in a full mesh, every mesh peer is the sender or presumed to hold it)
            return
        origin = entry.message.origin
        targets = [p for p in mesh if p != sender and p != origin and p not in skip
                   and p not in have]
        if targets and self.ensure_verified(entry, now):
            message = entry.outgoing()
            pushed = entry.pushed
            for peer in targets:
                pushed = with_peer(pushed, peer)
                self._out.append(Send(peer, message))
            entry.pushed = pushed

    def ensure_verified(self, entry: CacheEntry, now: float) -> bool:
        """Check the signature of a message that came straight from its origin before it is
        passed on; a bad one is the origin's offence (it is dropped from the cache)."""
        if entry.verified:
            return True
        message = entry.message
        try:
            verify_gossip(message, self._network_id)
        except SignatureError:
            self.cache.remove(message.msg_id)
            self._topic(message.topic).counters["invalid"] += 1
            if message.origin in self._peers:
                self._charge(message.origin, Offence.BAD_SIGNATURE, now)
            return False
        entry.verified = True
        return True

