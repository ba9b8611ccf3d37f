"""Serving peers' requests, and checking records. No I/O.

The answering half of the Kademlia node core, owned by it (``_node.DhtNode``): FIND_NODE and
FIND_VALUE (GET_PROVIDERS) are answered from the routing table and the record store (a
FIND_VALUE with the records held, or else the nearest contacts), and STORE
(ADD_PROVIDER) is judged by the record store's rules before the record's signature is checked,
all within each peer's request rate (``PeerLimiter``): past it a STORE is answered "rate
limited" and anything else not at all.

Records that passed the check are remembered by digest, so a replica that arrives again, or
comes back in a get, costs no second signature check: the SHA-256 of what the publisher signed
followed by the signature. That is safe: the signed bytes are a one-to-one encoding of every
field but the signature (and our network ID), so equal digests mean, short of a SHA-256
collision, the very bytes and signature that verified before, and Ed25519 verification is a
function of those alone; a record altered in any field, or its signature, misses. Every node
still verifies each record once itself. The memory is bounded in entries
(``_VERIFIED_CACHE``, least recently used dropped first: about 150 bytes each, never the
record, whose value may be 16 KiB).
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict

from bzzz_edge.dht._config import MAX_RECORDS_PER_REPLY, DhtConfig
from bzzz_edge.dht._contact import Contact
from bzzz_edge.dht._events import Action, RecordStored, Send
from bzzz_edge.dht._limits import PeerLimiter
from bzzz_edge.dht._messages import FindNode, FindValue, Nodes, Store, Stored, Values, Verdict
from bzzz_edge.dht._record import Record, signed_bytes, verify_record
from bzzz_edge.dht._routing import RoutingTable
from bzzz_edge.dht._store import RecordStore
from bzzz_edge.errors import SignatureError

__all__ = ["Server"]

_VERIFIED_CACHE = 4096


class Server:
    """Answers one node's peers and checks records for it. See the module docstring.

    Args:
        counters: the node core's counters (rate limits, stores by verdict, bad signatures).
    """

    def __init__(self, config: DhtConfig, table: RoutingTable, store: RecordStore,
                 network_id: bytes, counters: Counter[str]) -> None:
        self._config = config
        self._table = table
        self._store = store
        self._network_id = network_id
        self._counters = counters
        self._limiter = PeerLimiter(rate=config.peer_rate, burst=config.peer_burst,
                                    max_peers=config.max_tracked_peers)
        self._verified: OrderedDict[bytes, None] = OrderedDict()  # digests (module docstring)

    def serve(self, sender: Contact, message: FindNode | FindValue | Store,
              now: float) -> list[Action]:
        """Answer a request from ``sender`` (who is seen alive by asking)."""
        self._table.seen(sender, now)
        if not self._limiter.allow(sender.node, now):
            self._counters["rate_limited"] += 1
            if isinstance(message, Store):
                return [Send(sender, Stored(message.rpc, Verdict.RATE_LIMITED))]
            return []
        k = self._config.k
        if isinstance(message, FindNode):
            contacts = self._table.closest(message.target, k, exclude=sender.node)
            return [Send(sender, Nodes(message.rpc, tuple(contacts)))]
        if isinstance(message, FindValue):
            records = self._store.get(message.kind, message.key)[:MAX_RECORDS_PER_REPLY]
            # Records or contacts, as Kademlia answers: a get ends at the first valid record,
            # so contacts would only be built, sent and decoded to be dropped.
            near = [] if records else self._table.closest(message.key, k, exclude=sender.node)
            return [Send(sender, Values(message.rpc, tuple(records), tuple(near)))]
        verdict = self._store.put(message.record, now, self.verify)
        self._counters[f"store_{verdict.name.lower()}"] += 1
        reply: list[Action] = [Send(sender, Stored(message.rpc, verdict))]
        if verdict is Verdict.STORED:
            reply.append(RecordStored(message.record))
        return reply

    def verify(self, record: Record) -> bool:
        """Whether ``record``'s signature holds (for this network); a failure is counted."""
        signed = signed_bytes(record, self._network_id)
        digest = hashlib.sha256(signed + record.signature).digest()
        if digest in self._verified:
            self._verified.move_to_end(digest)
            return True
        try:
            verify_record(record, self._network_id, signed=signed)
        except SignatureError:
            self._counters["bad_signatures"] += 1
            return False
        self._remember(digest)
        return True

    def remember(self, record: Record) -> None:
        """Take ``record`` as checked: one this node signed itself (the node core's own
        records, which it trusts anyway)."""
        signed = signed_bytes(record, self._network_id)
        self._remember(hashlib.sha256(signed + record.signature).digest())

    def _remember(self, digest: bytes) -> None:
        self._verified[digest] = None
        self._verified.move_to_end(digest)
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
