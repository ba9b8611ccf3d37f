"""The consensus service: the Raft core driven over the node's connections and store. Uses trio.

One driver task owns the core. Everything that concerns it (a peer's message, a proposal, a
membership verdict, a hand-over) goes into a bounded inbox; the driver takes all that queued
up, feeds it to the core with the timer ticks, writes every ``Persist`` of the batch in one
record of the write-ahead log (one sync; in the driver's own thread when that is quick,
``storage.RaftStore.write``), and only then performs the other actions in order (the core's
persistence contract, ``_events``): messages that depend on the term, vote or log leave after
they are on disk. Messages arriving during the sync make the next batch (group commit).
The batch's proposals go to the core last, together (``ProposeMany``): the acknowledgements
before them free the followers' pipelines, and one append per follower carries them all.
What may go before or without the sync, commit notices and a leader's writes finished behind
(so followers' acknowledgements are handled while the leader syncs, and any three of five
voters' syncs commit an entry), and committed entries applied while they sync, are
``_batch``'s.

Groups: every message carries the ID of the Raft group it belongs to (the founder's node ID and
8 random bytes). A node that belongs to no group founds one when ``_upkeep.may_found`` says so
(a lone node is its own coordinator), or adopts the group of the first leader that sends it
appends (that leader added it, as a learner, because membership holds it alive). Messages of
another group are refused and counted, so two groups never mix.

The leader keeps the configuration as wanted (``_upkeep.upkeep_change``): newcomers join as
learners, learners are promoted up to ``coordination.voters``, voters dead for
``coordination.dead_after`` are demoted, members that left are removed. Membership's verdict
that the leader died, or the close of our connection to it, starts an election at once
(``LeaderLost``).

Refused and counted (``counters``): undecodable envelopes, messages of another group or before
we belong to one, an inbox overflow (all in ``_inbox``); the core counts the rest (stale
terms, malformed or oversized messages, protocol errors). What the status shows is
``_status``'s.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any

import msgpack
import trio

from ..feed import Feed
from ..gossip.latency import LatencyHistogram
from ..ids import short_id
from ..membership.service import MembershipService
from ..net import ConnectionManager
from ..store import Store
from ..wire.envelope import DirectMessage, Envelope, encode_envelope
from ..wire.types import RAFT
from . import (
    Accepted,
    Action,
    Apply,
    Configuration,
    EntryKind,
    Event,
    Persist,
    Propose,
    Raft,
    RaftConfig,
    Rejected,
    RestoreSnapshot,
    RoleChanged,
    Send,
    SnapshotTaken,
    State,
    TakeSnapshot,
    TransferLeadership,
    encode_message,
)
from ._batch import (
    WriteBehind,
    applies_early,
    carried_last,
    is_notice,
    leader_only,
    parallel,
    stored_through,
    without_stale_notices,
)
from ._events import Persisted, ProposeMany
from ._forward import propose_anywhere, serve_forwarded
from ._inbox import MAX_INBOX, MAX_QUEUED_PER_PEER, Inbox
from ._machine import DecisionLog
from ._members import follow_connections, follow_members, found_or_join, keep_configuration
from ._status import status
from .proposals import Committed, Failure, ProposalError, Proposals
from .storage import RaftStore

__all__ = ["MAX_INBOX", "MAX_QUEUED_PER_PEER", "ConsensusService"]

log = logging.getLogger(__name__)


class ConsensusService:
    """Runs Raft for one node (see the module docstring).

    Args:
        manager: the connections; the service registers its envelope type and RPCs there.
        store: the node's store (databases ``storage.DATABASES`` declared).
        membership: who is alive; its ``changes`` feed drives hints and the configuration.
        config: the core's timings and limits.
        voters: ``coordination.voters``; dead_after: ``coordination.dead_after``;
        bootstrap_wait: ``coordination.bootstrap_wait``; proposal_timeout: the default for
        ``propose``.
        owner: whose state the store may hold (node ID + network ID; default the node ID):
            another's is dropped at start.
    """

    def __init__(self, manager: ConnectionManager, store: Store, membership: MembershipService,
                 *, config: RaftConfig, voters: int, dead_after: float, bootstrap_wait: float,
                 proposal_timeout: float, owner: bytes | None = None) -> None:
        self.node_id = manager.node_id
        self._manager = manager
        self._store = RaftStore(store)
        if self._store.claim(owner or self.node_id):
            log.warning("consensus: this data dir held the coordination state of another "
                        "identity or network (init --force?): dropped; this node joins or "
                        "founds a group afresh")
        self._membership = membership
        self._cfg = config
        self._voters, self._dead_after = voters, dead_after
        self._bootstrap_wait, self.proposal_timeout = bootstrap_wait, proposal_timeout
        self.core: Raft | None = None
        self.group: bytes | None = self._store.group()
        self.machine = DecisionLog()
        self.roles: Feed[RoleChanged] = Feed("raft roles")
        self.committed: Feed[Committed] = Feed("raft commits", buffer=65536)
        self.counters: Counter[str] = Counter()
        self._proposals = Proposals()
        # Proposal-to-commit times on this coordinator: a histogram for /metrics, the last
        # few thousand for the percentiles in the status (bounded).
        self.commit_latency = LatencyHistogram()
        self._recent_latency: deque[float] = deque(maxlen=4096)
        self._inbox = Inbox(self.counters)
        self._last_message: object = None  # the last message sent, and its envelope
        self._last_payload = b""
        # Write-behind (``_events``): a leader's entry writes, finished in the background.
        self._behind = WriteBehind(self._store.start, self._written)
        self._persisted: Persisted | None = None  # the last write reported, for the core
        self._told: Persisted | None = None  # the last one the core was given
        self._stored = 0  # the last log index durable in the store
        self._role_changed = trio.Event()
        self._upkeep_due = trio.Event()
        self._change_ref: int | None = None
        self._told_leader: bytes | None = None  # the coordinator as last logged
        self._dead_since: dict[bytes, float] = {}
        self._started_at = 0.0
        self._changes = membership.changes.subscribe()
        self._connection_events = manager.events.subscribe()
        manager.on_envelope(RAFT, self._on_envelope)
        manager.on_rpc("raft.hello", self._rpc_hello, inline=True)
        manager.on_rpc("raft.propose", self._rpc_propose)

    # --- views --------------------------------------------------------------------------------

    @property
    def leader(self) -> bytes | None:
        if self.core is None:
            return None
        return self.node_id if self.core.state is State.LEADER else self.core.leader

    @property
    def readable(self) -> int:
        """The applied index as far as the store holds the entries (entries may be applied
        while their write syncs: ``_batch.applies_early``)."""
        return min(self.machine.applied, self._stored)

    def status(self) -> dict[str, Any]:
        """What `bzzz-edge coordinator` and /api/v1/coordination show."""
        return status(self)

    def starting(self) -> bool:
        """Within the first election after start (a group is sought, then one elects)."""
        grace = self._bootstrap_wait + 2 * self._cfg.election_timeout_max + 1.0
        return trio.current_time() - self._started_at < grace

    def all_counters(self) -> dict[str, int]:
        out = dict(self.core.counters) if self.core is not None else {}
        out.update(self.counters)
        # Log writes made in the driver's thread, and handed to the log's (a slow disk, a
        # snapshot): many handed over means each costs a hand-over between threads.
        out["log_writes_inline"] = self._store.inline_writes
        out["log_writes_handed"] = self._store.handed_writes
        return out

    def committed_entries(self, start: int, limit: int) -> list[dict[str, Any]]:
        """Committed entries still in the log (not yet compacted), for the API and tests.

        Up to ``readable``, not the core's commit index: a follower learns a commit together
        with the entries it covers, and the store holds them only once their write is done;
        until then the store may still hold the entries they replace."""
        applied = self.readable
        return [{"index": e.index, "term": e.term, "kind": e.kind.name.lower(),
                 "data": e.data.hex()}
                for e in self._store.entries(start, limit) if e.index <= applied]

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._started_at = trio.current_time()
        if self.group is not None:
            self._start_core(self.group)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow_members, self)
                nursery.start_soon(follow_connections, self)
                nursery.start_soon(keep_configuration, self)
                if self.group is None:
                    nursery.start_soon(found_or_join, self)
                task_status.started()
                await self._drive()
        finally:
            self._store.close()  # the writes handed over finish first

    def _start_core(self, group: bytes) -> None:
        stored = self._store.load()
        self._stored = stored.entries[-1].index if stored.entries else \
            stored.snapshot.index if stored.snapshot is not None else 0
        self.core = Raft(self.node_id, now=trio.current_time(), config=self._cfg, stored=stored,
                         bootstrap=Configuration(frozenset({group[:32]})), write_behind=True)
        if stored.snapshot is not None:
            self.machine.restore(stored.snapshot.index, stored.snapshot.data)
        log.info("consensus: in group %s (founded by %s), term %d, %d entries stored",
                 short_id(group), short_id(group[:32]), stored.term, len(stored.entries))

    async def hand_over(self) -> None:
        """On SIGTERM: a leader hands leadership to the most up-to-date voter first."""
        core = self.core
        if core is None or core.state is not State.LEADER or len(core.configuration.voters) < 2:
            return
        self._enqueue(TransferLeadership())
        with trio.move_on_after(self._cfg.transfer_timeout * 2):
            while self.core is not None and self.core.state is State.LEADER:
                await self.next_role_change()
        log.info("consensus: handed over; the coordinator is now %s",
                 short_id(self.leader) if self.leader else "unknown")

    # --- the driver ---------------------------------------------------------------------------

    def _enqueue(self, event: Event | bytes, *, front: bool = False) -> bool:
        return self._inbox.put(event, front=front)

    async def _drive(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._behind.run)
            nursery.start_soon(self._inbox.keep_time)
            await self._drive_batches()

    async def _drive_batches(self) -> None:
        held: list[Action] = []  # commit notices and learners' appends (``is_notice``), sent
        # after one scheduling round or batch
        while True:
            if held:
                # Proposers woken by the commits propose first: the appends that carry their
                # commands carry the commit index too, and the notices they replace are
                # dropped (under load most are); otherwise the notices go now. Two turns:
                # trio runs a turn's tasks in either order (it reverses half the turns), so
                # after one the woken proposers may not have run yet.
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
                if not len(self._inbox):
                    for action in held:
                        self._perform(action)
                    held = []
            core = self.core
            deadline = core.next_deadline() if core is not None else None
            await self._inbox.wait(deadline if deadline is not None
                                   else trio.current_time() + 1.0)
            leading = core.term if core is not None and core.state is State.LEADER else None
            carried = held
            actions = carried + await self._take_batch(deadline)
            if len(actions) > 1:
                actions = without_stale_notices(actions)
            # New notices wait for the next batch; those carried over go now, unless dropped.
            voters = self.core.configuration.voters if self.core is not None else frozenset()
            held = [a for a in actions
                    if is_notice(a, voters) and not any(a is c for c in carried)]
            if held:
                actions = [a for a in actions if not any(a is h for h in held)]
            await self._carry_out(carried_last(actions, carried), leading)

    async def _take_batch(self, deadline: float | None) -> list[Action]:
        """The core's actions for the timers and everything queued; proposals last, together:
        the acknowledgements before them free the followers' pipelines."""
        now = trio.current_time()
        actions: list[Action] = []
        if self.core is not None and self._persisted is not self._told:
            self._told = told = self._persisted  # (queued too, but the inbox may be full)
            assert told is not None
            actions += self.core.handle(told, now)
        if self.core is not None and deadline is not None and now >= deadline:
            actions += self.core.tick(now)
        proposals: list[Propose] = []
        while (event := self._inbox.take()) is not None:
            if isinstance(event, bytes):
                await self._adopt(event)
            elif isinstance(event, Propose):
                proposals.append(event)
            elif self.core is not None:
                actions += self.core.handle(event, now)
        if proposals and self.core is not None:
            actions += self.core.handle(ProposeMany(tuple(proposals)) if len(proposals) > 1
                                        else proposals[0], now)
        return actions

    async def _carry_out(self, actions: list[Action], leading: int | None) -> None:
        """Perform a batch's actions: its writes first (see ``_batch`` for the exceptions)."""
        persists = [a for a in actions if isinstance(a, Persist)]
        if leading is not None and leader_only(self.core, actions, leading):
            # The appends leave before the write: the followers' round trip (their sync and
            # answer) is what a commit waits for, and the writer thread, woken by the
            # queueing, would take the interpreter lock from this one between two sends.
            # The write is then made here when the writer allows it (``RaftStore.write``),
            # while the followers sync theirs: no hand-over to the writer thread and back
            # (on two shared cores, 880 -> 750 us of the leader's CPU per commit, 5 nodes,
            # one proposer); else, or behind a write still queued, it is finished behind.
            written_here = False
            for action in actions:
                if isinstance(action, Send):
                    self._perform(action)
            if persists:
                if self._behind.queued:
                    self._behind.add(persists)
                elif (pending := self._store.write(persists)) is not None:
                    self._behind.add(persists, pending)
                else:
                    self._written(persists)
                    written_here = True
            for action in actions:
                if not isinstance(action, Persist | Send):
                    self._perform(action)
            if written_here:
                # The followers' answers arrived while the sync held this thread: two
                # scheduler turns (see ``_drive_batches``) let the connections deliver them,
                # so they make one batch with the write's ``Persisted`` (the commit), not
                # the batch after it.
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
            return
        await self._behind.idle()  # what follows may depend on the leader's writes
        if persists:
            early = applies_early(actions)
            for action in actions:  # out while we sync
                if parallel(action):
                    self._perform(action)
            # A follower's acknowledgement waits for this write: committed in this thread
            # when the writer allows (``Writer.write_now``), it saves the hand-over to the
            # writer thread and back (about a quarter of a follower's CPU per append on two
            # shared cores).
            pending = self._store.write(persists)  # None: durable already
            applied = early and pending is not None
            if pending is not None:
                for action in actions:  # applied while it syncs
                    if applied and isinstance(action, Apply):
                        self._perform(action)
                await pending.result()
            self._stored = stored_through(self._stored, persists)
            if self.core is not None and self.core.state is State.LEADER:
                self._written(persists)  # a write-behind core counts only what it is told
            actions = [a for a in actions if not isinstance(a, Persist) and not parallel(a)
                       and not (applied and isinstance(a, Apply))]
            if pending is None:
                # Durable already: the answers go before the applying, which the leader's
                # commit does not wait for (committed entries' consumers: the task rules,
                # their signatures; measured 70 us between a follower's sync and its answer
                # under load). Messages depend on the log, never on the applied state.
                actions = [a for a in actions if isinstance(a, Send)] + \
                    [a for a in actions if not isinstance(a, Send)]
        for action in actions:
            self._perform(action)

    def _written(self, persists: list[Persist]) -> None:
        """Tell the core (at the front of the next batch) that these entries are durable."""
        self._stored = stored_through(self._stored, persists)
        last = next((p.entries[-1] for p in reversed(persists) if p.entries), None)
        if last is not None:
            self._persisted = Persisted(last.index, last.term)
            self._enqueue(self._persisted, front=True)

    async def _adopt(self, group: bytes) -> None:
        if self.group is not None:
            return
        await self._store.set_group(group)
        self.group = group
        self._start_core(group)

    def _perform(self, action: Action) -> None:
        if isinstance(action, Send):
            self._send(action)
        elif isinstance(action, Apply):
            self._apply(action)
        elif isinstance(action, Accepted):
            self._proposals.accepted(action.ref, action.index, action.term)
        elif isinstance(action, Rejected):
            if action.ref == self._change_ref:
                self._change_ref = None
            self._proposals.rejected(action.ref, action.reason, action.leader)
        elif isinstance(action, RoleChanged):
            self._on_role(action)
        elif isinstance(action, TakeSnapshot):
            self._enqueue(SnapshotTaken(action.index, self.machine.snapshot()), front=True)
        elif isinstance(action, RestoreSnapshot):
            snap = action.snapshot
            self.machine.restore(snap.index, snap.data)
            self._proposals.restored(snap.index)

    def _send(self, action: Send) -> None:
        assert self.group is not None
        message = action.message
        if message == self._last_message:  # a broadcast: followers in step get the same
            payload = self._last_payload
        else:
            body = msgpack.packb([self.group, encode_message(message)], use_bin_type=True)
            payload = encode_envelope(DirectMessage(*RAFT.key, body))
            self._last_message, self._last_payload = message, payload
        if not self._manager.send(action.to, payload):
            self.counters["sends_dropped"] += 1  # not connected or queue full: Raft retries

    def _apply(self, action: Apply) -> None:
        for entry in action.entries:
            self.machine.apply(entry)
            if entry.kind is EntryKind.COMMAND:
                self.committed.publish(Committed(entry.index, entry.term, entry.data))
            elif entry.kind is EntryKind.CONFIG:
                if self._change_ref is not None:
                    self._change_ref = None
                self._upkeep_due.set()
            self._proposals.applied(entry)

    def _on_role(self, action: RoleChanged) -> None:
        self.roles.publish(action)
        self._role_changed.set()
        self._role_changed = trio.Event()
        new = self.node_id if action.state is State.LEADER else action.leader
        old, self._told_leader = self._told_leader, new
        if action.state is State.LEADER:
            self._upkeep_due.set()
            self._change_ref = None
        if new != old or action.state is State.LEADER:
            log.info("coordinator: %s in term %d", short_id(new) if new else "none", action.term,
                     extra={"event": "coordinator", "leader": short_id(new) if new else None,
                            "term": action.term, "state": action.state.value})

    async def next_role_change(self) -> None:
        """Returns at this node's next role change (leader, follower, a new term)."""
        await self._role_changed.wait()

    # --- messages from peers ------------------------------------------------------------------

    def _on_envelope(self, sender: bytes, envelope: Envelope) -> None:
        assert isinstance(envelope, DirectMessage)
        self._inbox.receive(sender, envelope.body, self.group)

    async def _rpc_hello(self, peer: bytes, body: bytes) -> bytes:
        packed: bytes = msgpack.packb({"group": self.group, "leader": self.leader},
                                      use_bin_type=True)
        return packed

    # --- proposals ----------------------------------------------------------------------------

    async def propose(self, command: bytes, *, timeout: float | None = None,
                      forward: bool = True) -> Committed:
        """Append ``command`` to the decision log; return once it is committed.

        From a node that is not the coordinator, the proposal is forwarded to it (unless
        ``forward`` is False).

        Raises:
            ProposalError: with ``reason`` NO_QUORUM (no coordinator, or it lost its
                majority), NOT_LEADER (``forward=False``; ``leader`` names the coordinator),
                TIMEOUT (not committed within ``timeout``; it may still commit), REFUSED
                (too large, backlog full) or LOST (overwritten in a leader change).
        """
        return await propose_anywhere(self, command, timeout or self.proposal_timeout,
                                      forward=forward)

    async def propose_here(self, command: bytes, deadline: float) -> Committed:
        """Propose on this node's core (it must be the leader), wait for the outcome."""
        ref, waiter = self._proposals.open()
        began = trio.current_time()
        try:
            if not self._enqueue(Propose(ref, command)):
                raise ProposalError(Failure.REFUSED, "this node's inbox is full")
            with trio.move_on_at(deadline):
                await waiter.done.wait()
            if waiter.error is not None:
                raise waiter.error
            if waiter.result is not None:
                took = trio.current_time() - began
                self.commit_latency.observe(took)
                self._recent_latency.append(took)
                return waiter.result
            still = self.core is not None and self.core.state is State.LEADER
            raise ProposalError(Failure.TIMEOUT if still else Failure.NO_QUORUM,
                                "not committed in time; it may still commit", self.leader)
        finally:
            self._proposals.close(ref)

    async def wait_for_leader(self, deadline: float) -> bool:
        """Wait until a coordinator is known (True) or ``deadline`` passes (False)."""
        with trio.move_on_at(deadline):
            while self.leader is None:
                await self.next_role_change()
        return self.leader is not None

    async def _rpc_propose(self, peer: bytes, body: bytes) -> bytes:
        return await serve_forwarded(self, body)
