"""Consensus: the sans-IO Raft core behind coordinator election and the decision log. No I/O.

Raft as in Ongaro's dissertation: pre-vote and check-quorum (``_election``), replication with
pipelining and the current-term commit rule (``_replication``), snapshots and compaction
(``_snapshots``), single-server membership changes with voters and learners, and leadership
hand-over (``_changes``); timing presets in ``_config``, the automatic voter policy in
``_policy``, the persistence contract's reference model in ``_storage``.

What a shell (the trio service) does with the core:

- start: ``Raft(node_id, now=monotonic(), config=lan(), stored=<from the store>,
  bootstrap=<founding configuration or None>)``; restore the state machine from
  ``stored.snapshot``;
- perform the actions of every ``handle`` and ``tick`` strictly in order, and make each
  ``Persist`` durable before performing the next action (``_events`` has the contract); then
  sleep until ``next_deadline()`` and ``tick``;
- ``Send``: ``msgpack.packb(encode_message(message))`` to ``to``; incoming frames go in as
  ``Received(sender, msgpack.unpackb(frame))``;
- ``Apply``: apply committed commands; ``TakeSnapshot``: answer with ``SnapshotTaken``;
  ``RestoreSnapshot``: replace the state machine; ``Accepted``/``Rejected``: settle proposals;
- membership's verdict that a member died: ``LeaderLost(node)``; SIGTERM of a leader:
  ``TransferLeadership()`` and wait for the new leader before leaving.
"""

from __future__ import annotations

from bzzz_edge.consensus._config import RaftConfig, lan, local
from bzzz_edge.consensus._events import (
    Accepted,
    Action,
    Apply,
    ChangeMember,
    Event,
    LeaderLost,
    Persist,
    Propose,
    Received,
    Rejected,
    Rejection,
    RestoreSnapshot,
    Role,
    RoleChanged,
    Send,
    SnapshotTaken,
    State,
    TakeSnapshot,
    TransferLeadership,
)
from bzzz_edge.consensus._messages import (
    AppendEntries,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshot,
    Limits,
    Message,
    RequestVote,
    Snapshot,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode_message,
    encode_message,
)
from bzzz_edge.consensus._policy import next_change, wanted_voters
from bzzz_edge.consensus._raft import PeerProgress, Raft
from bzzz_edge.consensus._storage import DurableState, Stored

__all__ = [
    "Accepted",
    "Action",
    "AppendEntries",
    "AppendResponse",
    "Apply",
    "ChangeMember",
    "Configuration",
    "DurableState",
    "Entry",
    "EntryKind",
    "Event",
    "InstallSnapshot",
    "LeaderLost",
    "Limits",
    "Message",
    "PeerProgress",
    "Persist",
    "Propose",
    "Raft",
    "RaftConfig",
    "Received",
    "Rejected",
    "Rejection",
    "RequestVote",
    "RestoreSnapshot",
    "Role",
    "RoleChanged",
    "Send",
    "Snapshot",
    "SnapshotResponse",
    "SnapshotTaken",
    "State",
    "Stored",
    "TakeSnapshot",
    "TimeoutNow",
    "TransferLeadership",
    "VoteResponse",
    "decode_message",
    "encode_message",
    "lan",
    "local",
    "next_change",
    "wanted_voters",
]
