"""Membership and failure detection: the sans-IO SWIM core. No I/O, no clock.

See ``_swim`` for the protocol, ``_config`` for the timing profiles and the detection bound,
``_messages`` for the wire format. What a driver (the trio service) does with the core:

- start: ``Membership(node_id, address=..., now=monotonic(), config=profile(name, overrides),
  incarnation=start_incarnation(persisted))``, then ``Join`` every peer it knows of (persisted
  peer table, static bootstrap peers, mDNS finds);
- perform every action returned by ``handle`` and ``tick``, then sleep until
  ``next_deadline()`` (re-read after every call) and ``tick``;
- ``Send``: ``msgpack.packb(encode_message(message))`` over the connection to ``to`` (dialling
  ``address`` if needed); if that fails, or an open connection drops, hand in
  ``ConnectionLost``; incoming frames go in as ``Received(sender, msgpack.unpackb(frame))``;
- ``MemberEvent``: update the peer table and metrics; the one about this node carries the
  incarnation to persist; persist other members only once ``verified`` (they have spoken to
  us themselves); ``MemberForgotten``: drop the peer, and stop dialling it;
- ``Penalise``: a strike against the peer (a malformed or implausible claim it sent, which
  the core has refused and counted already);
- shutdown: ``Leave``, send what it returns, then close.
"""

from __future__ import annotations

from bzzz_edge.membership._config import (
    MIN_MESSAGE_BYTES,
    PROFILES,
    MembershipConfig,
    detection_bound,
    lan,
    local,
    min_suspicion_timeout,
    probe_period,
    profile,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeout,
)
from bzzz_edge.membership._events import (
    Action,
    ConnectionLost,
    Event,
    ForceLeave,
    Join,
    Leave,
    MemberEvent,
    MemberForgotten,
    Offence,
    Penalise,
    Received,
    Send,
    UpdateSelf,
)
from bzzz_edge.membership._limits import (
    MAX_FIRST_INCARNATION,
    MAX_INCARNATION_JUMP,
    start_incarnation,
)
from bzzz_edge.membership._messages import (
    Ack,
    Address,
    AliveUpdate,
    DeadUpdate,
    Gossip,
    Message,
    Meta,
    MetaValue,
    Nack,
    Ping,
    PingReq,
    Status,
    SuspectUpdate,
    Sync,
    SyncEntry,
    UnknownMessage,
    Update,
    decode_message,
    encode_message,
)
from bzzz_edge.membership._swim import Member, Membership

__all__ = [
    "MAX_FIRST_INCARNATION",
    "MAX_INCARNATION_JUMP",
    "MIN_MESSAGE_BYTES",
    "PROFILES",
    "Ack",
    "Action",
    "Address",
    "AliveUpdate",
    "ConnectionLost",
    "DeadUpdate",
    "Event",
    "ForceLeave",
    "Gossip",
    "Join",
    "Leave",
    "Member",
    "MemberEvent",
    "MemberForgotten",
    "Membership",
    "MembershipConfig",
    "Message",
    "Meta",
    "MetaValue",
    "Nack",
    "Offence",
    "Penalise",
    "Ping",
    "PingReq",
    "Received",
    "Send",
    "Status",
    "SuspectUpdate",
    "Sync",
    "SyncEntry",
    "UnknownMessage",
    "Update",
    "UpdateSelf",
    "decode_message",
    "detection_bound",
    "encode_message",
    "lan",
    "local",
    "min_suspicion_timeout",
    "probe_period",
    "profile",
    "push_pull_scale",
    "retransmit_limit",
    "start_incarnation",
    "suspicion_timeout",
]
