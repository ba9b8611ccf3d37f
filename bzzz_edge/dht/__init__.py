"""Kademlia DHT: the sans-IO cores. No I/O, no clock.

``DhtNode`` is the core a shell drives: ``handle(event, now)`` / ``tick(now)`` return actions,
``next_deadline()`` says when to tick. Its parts, one concern each: ``RoutingTable`` (k-buckets,
replacement cache, liveness checks asked of the shell), ``Lookup`` (iterative, alpha parallel,
disjoint paths, per-RPC timeouts, a deadline), ``Record`` (signed, versioned, size-limited;
values and provider announcements), ``RecordStore`` (limits, replacement rules, expiry,
re-replication schedule) and ``PeerLimiter`` (per-peer request rates).

What a shell does with ``DhtNode``:

- seed the table with ``Discovered`` for every member membership knows (a LAN node never starts
  cold), then ``FindNodes`` for its own ID; ``Departed`` when membership holds a node dead;
- ``Send``: ``msgpack.packb(encode_message(message))`` to the contact over the transport; a
  request it cannot deliver goes back in as ``SendFailed``, one whose answer it stopped
  waiting for (its operation ended) as ``Abandoned``; frames from peers go in as
  ``Received(contact, msgpack.unpackb(frame))``;
- ``CheckLiveness``: ask membership (or ping) and answer with ``LivenessResult``;
- ``RecordStored`` / ``RecordExpired``: write or delete the record through the store's writer;
- ``LookupDone``, ``GetDone``, ``PutDone``: answer the application request named by ``op``.
"""

from __future__ import annotations

from bzzz_edge.dht._config import (
    ID_BITS,
    ID_LEN,
    MAX_CONTACTS_PER_REPLY,
    MAX_RECORD_VALUE,
    MAX_RECORDS_PER_REPLY,
    DhtConfig,
)
from bzzz_edge.dht._contact import Contact, bucket_index, distance, id_in_bucket
from bzzz_edge.dht._events import (
    Abandoned,
    Action,
    CheckLiveness,
    Departed,
    Discovered,
    Event,
    FindNodes,
    GetDone,
    GetRecords,
    LivenessResult,
    LookupDone,
    PutDone,
    PutRecord,
    Received,
    RecordExpired,
    RecordStored,
    Send,
    SendFailed,
)
from bzzz_edge.dht._limits import PeerLimiter
from bzzz_edge.dht._lookup import Lookup, LookupResult
from bzzz_edge.dht._messages import (
    FindNode,
    FindValue,
    Message,
    Nodes,
    Store,
    Stored,
    Values,
    Verdict,
    decode_message,
    encode_message,
)
from bzzz_edge.dht._node import DhtNode
from bzzz_edge.dht._record import (
    RECORD_SIGNATURE_DOMAIN,
    Kind,
    Record,
    decode_record,
    encode_record,
    sign_record,
    verify_record,
)
from bzzz_edge.dht._routing import RoutingTable
from bzzz_edge.dht._store import RecordStore

__all__ = [
    "ID_BITS",
    "ID_LEN",
    "MAX_CONTACTS_PER_REPLY",
    "MAX_RECORDS_PER_REPLY",
    "MAX_RECORD_VALUE",
    "RECORD_SIGNATURE_DOMAIN",
    "Abandoned",
    "Action",
    "CheckLiveness",
    "Contact",
    "Departed",
    "DhtConfig",
    "DhtNode",
    "Discovered",
    "Event",
    "FindNode",
    "FindNodes",
    "FindValue",
    "GetDone",
    "GetRecords",
    "Kind",
    "LivenessResult",
    "Lookup",
    "LookupDone",
    "LookupResult",
    "Message",
    "Nodes",
    "PeerLimiter",
    "PutDone",
    "PutRecord",
    "Received",
    "Record",
    "RecordExpired",
    "RecordStore",
    "RecordStored",
    "RoutingTable",
    "Send",
    "SendFailed",
    "Store",
    "Stored",
    "Values",
    "Verdict",
    "bucket_index",
    "decode_message",
    "decode_record",
    "distance",
    "encode_message",
    "encode_record",
    "id_in_bucket",
    "sign_record",
    "verify_record",
]
