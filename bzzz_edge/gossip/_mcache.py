"""The message cache behind lazy repair: recent messages by ID, bounded in bytes. No I/O.

Every message we accept (or publish) is kept for ``history`` seconds, so that a peer that
heard of it (IHAVE) can fetch it (IWANT), and a peer that subscribes or reconnects can be told
what it may have missed. The cache is bounded in bytes (body plus a fixed overhead per entry):
past the bound the oldest entries go first, whatever their age.

Per entry it remembers which peers are known to hold the message (they sent it to us, or
announced it) and which we pushed it to, so announcements go only to peers that may lack it,
and how often each peer had it re-sent on request, so that no peer can make us resend one
message more than ``max_retransmissions`` times. A message that reached us over its origin's
own connection was not signature-checked (the channel proved the sender); ``verified`` records
whether it has been since, as it must be before we pass it on. An entry holds the message as it
reached us; the copy we pass on, its hop count one higher (``hops``), is made when first sent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bzzz_edge.wire.envelope import GossipMessage

__all__ = ["ENTRY_OVERHEAD", "CacheEntry", "MessageCache", "PeerGroup", "peer_group", "with_peer",
           "without_peer"]

#: Bytes counted per entry on top of the body: the fields, the ID, the bookkeeping.
ENTRY_OVERHEAD = 256

#: Peers known to hold a message, or that we sent it to: a tuple while few (the usual case:
#: the sender, or the peers of a full mesh), a set past ``_SMALL_GROUP`` (many peers, where a
#: linear ``in`` would cost). A tuple of node IDs is no work for the garbage collector (it
#: untracks it at its first pass), a set is scanned by every collection for as long as its
#: entry is cached: with two sets per entry, half of what a full collection scanned in a busy
#: node was these sets, and full collections were its longest pauses (tens of milliseconds
#: with 10 s of history at 1,000 messages a second).
PeerGroup = tuple[bytes, ...] | set[bytes]
_SMALL_GROUP = 16


def with_peer(group: PeerGroup, peer: bytes) -> PeerGroup:
    """``group`` with ``peer`` in it (the same object when it was already, or is a set)."""
    if peer in group:
        return group
    if type(group) is tuple:
        return (*group, peer) if len(group) < _SMALL_GROUP else {*group, peer}
    group.add(peer)  # type: ignore[union-attr]  # (a set: the tuple case returned above)
    return group


def peer_group(peers: Iterable[bytes]) -> PeerGroup:
    """A group of distinct ``peers``."""
    group = tuple(peers)
    return group if len(group) <= _SMALL_GROUP else set(group)


def without_peer(group: PeerGroup, peer: bytes) -> PeerGroup:
    if peer not in group:
        return group
    if type(group) is tuple:
        return tuple(p for p in group if p != peer)
    group.discard(peer)  # type: ignore[union-attr]
    return group


@dataclass(slots=True)
class CacheEntry:
    message: GossipMessage  # as it reached us (or as we published it)
    arrived: float
    size: int
    verified: bool
    serial: int  # order of arrival in this cache
    hops: int  # links it will have crossed when we pass it on
    have: PeerGroup = ()  # peers known to hold it
    pushed: PeerGroup = ()  # peers we sent it to
    served: dict[bytes, int] = field(default_factory=dict)  # re-sends on request, per peer
    # Peers presumed to hold it: the origin's neighbours, when it came from the origin itself.
    presumed: frozenset[bytes] = frozenset()
    # Lazy repair found no subscribed peer that may lack it: later heartbeats skip it (a peer
    # that subscribes later is told of every cached message by its sync instead).
    announced: bool = False
    _outgoing: GossipMessage | None = None

    def outgoing(self) -> GossipMessage:
        """The message as we pass it on, ``hops`` counting the link to us: made when first
        sent, since in a full mesh most messages never are (a copy per message cost a tenth of
        the router's work)."""
        out = self._outgoing
        if out is None:
            m = self.message
            out = m if m.hops == self.hops else GossipMessage(
                m.origin, m.origin_key, m.seq, m.timestamp_ms, m.topic, m.body, m.signature,
                self.hops)
            self._outgoing = out
        return out


class MessageCache:
    """Messages by ID in arrival order; at most ``max_bytes`` and ``history`` seconds old."""

    def __init__(self, *, history: float, max_bytes: int) -> None:
        self._history = history
        self._max_bytes = max_bytes
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.bytes = 0
        self.evicted = 0  # pushed out by the byte bound before their time
        self._serial = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, msg_id: bytes) -> CacheEntry | None:
        return self._entries.get(msg_id)

    def put(self, msg_id: bytes, message: GossipMessage, now: float, *,
            verified: bool, hops: int | None = None) -> CacheEntry:
        """Keep ``message``; ``hops``: the links it will have crossed when we pass it on
        (default: ``message.hops``, ours as published)."""
        size = ENTRY_OVERHEAD + len(message.body or b"") + len(message.topic)
        self._serial += 1
        entry = CacheEntry(message, now, size, verified, self._serial,
                           message.hops if hops is None else hops)
        old = self._entries.pop(msg_id, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[msg_id] = entry
        self.bytes += size
        while self.bytes > self._max_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.size
            self.evicted += 1
        return entry

    def remove(self, msg_id: bytes) -> None:
        entry = self._entries.pop(msg_id, None)
        if entry is not None:
            self.bytes -= entry.size

    def expire(self, now: float) -> None:
        entries = self._entries
        horizon = now - self._history
        while entries:
            msg_id, entry = next(iter(entries.items()))
            if entry.arrived >= horizon:
                break
            del entries[msg_id]
            self.bytes -= entry.size

    def recent(self, since: float) -> Iterator[tuple[bytes, CacheEntry]]:
        """Entries that arrived at or after ``since``, newest first."""
        for msg_id in reversed(self._entries):
            entry = self._entries[msg_id]
            if entry.arrived < since:
                return
            yield msg_id, entry

    def newest_by_topic(self, limit: int) -> dict[str, list[tuple[bytes, CacheEntry]]]:
        """The newest ``limit`` entries (so the cost is bounded however large the cache), by
        topic, newest first."""
        out: dict[str, list[tuple[bytes, CacheEntry]]] = {}
        entries = self._entries
        for n, msg_id in enumerate(reversed(entries)):
            if n >= limit:
                break
            entry = entries[msg_id]
            topic = entry.message.topic
            group = out.get(topic)
            if group is None:
                out[topic] = [(msg_id, entry)]
            else:
                group.append((msg_id, entry))
        return out

    @property
    def serial(self) -> int:
        """The serial of the newest entry (0 before any)."""
        return self._serial

    def since(self, serial: int) -> Iterator[tuple[bytes, CacheEntry]]:
        """Entries put after ``serial``, oldest first."""
        for msg_id, entry in self._entries.items():
            if entry.serial > serial:
                yield msg_id, entry

    def forget_peer(self, peer: bytes) -> None:
        """Drop ``peer`` from every entry's bookkeeping (it disconnected)."""
        for entry in self._entries.values():
            entry.have = without_peer(entry.have, peer)
            entry.pushed = without_peer(entry.pushed, peer)
            entry.served.pop(peer, None)
