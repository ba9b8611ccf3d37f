"""The task service: proposes task commands, waits for this node's own state machine to apply
them, persists the task state, reports each change, and (on the coordinator) releases the
tasks of dead owners and missed deadlines. Uses trio.

How a claim is decided: the claim is a command of the decision log (``_commands``), sent to
the coordinator's task service (``_desk``: RPC ``tasks.claim``), which proposes it there.
Every node applies committed commands in log order to its ``TaskMachine`` inside the
consensus driver's own apply step (``_decisions.TaskDecisionLog``), so of concurrent claims
the first in the log wins on every node; the coordinator holds the claims of a task while
one it proposed is in flight, and answers those that can no longer win from its applied
state, so the losers of a race stay out of the log. The caller answers once this node
applied the index the coordinator named (or at once when its command applied here and was
accepted), so what it answers is what this node holds. The other commands go through
``ConsensusService.propose`` (forwarded to the coordinator from any node).

A command whose proposal failed undecided (the coordinator died or lost its majority while it
held it) is proposed again, the same bytes, on the next coordinator, until ``retry_for``
seconds past the proposal timeout, and answered with what its first application did
(``_proposer``, ``_retry``: the copies change nothing). Only when no coordinator takes it in
that time does the caller get the failure. Every command of a user is retried so (announce,
claim, progress, complete, fail, give up); the coordinator's own releases and expiries are
not (they are valid only from the coordinator, and the next one makes its own).

What survives a restart: the store keeps the tasks at an applied index (``storage``), written
as entries apply; the decision log's snapshots carry the tasks too. At start the state is
loaded from the store, a Raft snapshot ahead of it replaces it, and replayed entries at or
below it are skipped (``_decisions``).

How a task is announced: over gossip, not through the log (``_announced``). The announcer
signs the announce command and publishes it on ``bzzz/coordination/v1`` in its
``task_announced`` event; every node keeps it, and the first claim of the task carries it into
the log, where applying the claim creates the task on every node before deciding the claim. A
claim for a task this node has not heard of waits up to ``_HEARING`` seconds for its announce
(the claimant may be asked before the gossip reached it). Without gossip (a node built without
it, in tests) the announce is a command of the log as before, and the machine still takes one.

Each change is reported on ``bzzz/coordination/v1``: an announce is published there (it
travels to every node that way); a change decided in the log is told by every node to its own
subscribers when it applies it (``GossipService.deliver_here``: every node applies the log, so
a gossip copy would only repeat what each knows, later, and at a cost in messages per
change), as the message ``index`` of the node that proposed it, so the event has the same ID
on every node.

A change that concerns this node (it proposed it, owns or owned the task, or announced it) is
also recorded in this node's signed log: not when it is told, but with the task state that
holds it. Its record is kept when it applies (in apply order) and written with the next save
of the state (``_PERSIST_DELAY`` after a change, and on stop), queued for the log in that
save's own transaction (``storage``). So a record is never dropped, however many changes a
catch-up applies at once, and a crash cannot separate the two: it loses the state and the
records together (the changes are applied again from the log after the restart, and recorded
then) or keeps both (the log appends the records at its start). An announce made here, which
the log does not hold, is recorded with the saved announce the same way.

Every command is signed with this node's identity key for this network and carries a
sequence number that grows with each command this node makes (``_proposer``). The
coordinator also expires finished tasks: every so often it proposes ``expire`` with ``before``
``finished_retention`` seconds ago on its clock, when a finished task is that old.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import trio

from ..consensus.forwarding import answer_body, error_answer
from ..consensus.proposals import Failure, ProposalError
from ..consensus.service import ConsensusService
from ..errors import BzzzError
from ..feed import Overflowed
from ..gossip.service import GossipService
from ..gossip.topics import COORDINATION
from ..ids import format_node_id, short_id
from ..membership.service import MembershipService
from ..net import PeerConnected
from ..signedlog.service import LogService
from ..store import Store
from ..store.content import ContentStore
from ..ucxl import UCXLError, parse
from ._announced import Announced, Pending
from ._commands import Refused, Signer, peek, sign
from ._decisions import TaskDecisionLog
from ._desk import ClaimDesk, ClaimRoute, Requester
from ._machine import Outcome, TaskMachine
from ._model import ACTIVE, FINISHED, Reason, State, Task
from ._proposer import Proposer
from ._releases import ReleasePlanner
from ._retry import retry_window
from ._roles import Profile
from ._share import KEEP_CHUNK, Sharing, batches, read_batch
from ._share import RPC_METHOD as SHARE_METHOD
from .storage import Record, TaskStore

__all__ = ["EVENT_TYPES", "TaskError", "TaskService", "default_address", "result_address",
           "task_view"]

log = logging.getLogger(__name__)

TOPIC = COORDINATION
#: The event (gossip message ``type`` and signed-log entry type) of each operation.
EVENT_TYPES = {"announce": "task_announced", "claim": "task_claimed",
               "progress": "task_progress", "complete": "task_completed",
               "fail": "task_failed", "release": "task_released"}
#: A task history's events (``_machine``) as (signed-log entry type, the state they leave).
_HISTORY_EVENTS = {"announced": ("task_announced", State.ANNOUNCED),
                   "claimed": ("task_claimed", State.CLAIMED),
                   "progress": ("task_progress", State.IN_PROGRESS),
                   "complete": ("task_completed", State.COMPLETED),
                   "fail": ("task_failed", State.FAILED),
                   "released": ("task_released", State.REASSIGNED)}
_ANNOUNCED_MARK = b'"task_announced"'  # in the JSON of every announce event (``_announce_in``)
_KEPT_OUTCOMES = 4096  # changes applied but not reported yet
# Changes told in the apply step itself before the rest wait for the report task: one driver
# batch can apply hundreds (a follower catching up), and told back to back they would overflow
# a subscriber's buffer however fast it reads; through the report task, one a scheduler turn.
_TOLD_AT_ONCE = 32
_CHECK_INTERVAL = 1.0  # how often the coordinator looks for tasks to release, at most
_EXPIRE_INTERVAL = 30.0  # how often it looks for finished tasks to expire, at most
# Changes are written at most this often: each write is a sync shared with the Raft log's
# writer, and what is not written yet is replayed from the log after a crash anyway (the
# store only saves replaying the whole log at start), so a write per coordination round on
# every node would buy nothing.
_PERSIST_DELAY = 1.0
_HEARING = 1.0  # how long a claim waits for the announce of a task this node never heard of
_HEARD_BUFFER = 4096  # messages of the coordination topic queued for the task service
_SHARE_TIMEOUT = 10.0  # seconds a peer has to take a batch of our pending announces


class TaskError(BzzzError):
    """A request the node refuses before proposing anything; ``missing``: no such task."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True, slots=True)
class _Connected:
    consensus: ConsensusService
    gossip: GossipService | None
    signed_log: LogService | None
    membership: MembershipService | None
    content: ContentStore | None


@dataclass(slots=True)
class _Claiming:
    """One of our claims in flight: the claims of its task decided before it, the scope its
    proposal runs in (cancelled when it lost: ``_tell_losers``), and then what it answers."""

    gen: int
    scope: trio.CancelScope
    lost: Outcome | None = None


def task_view(task: Task) -> dict[str, Any]:
    """The JSON form of a task for the API and CLI."""
    fmt = _node_text
    return {"id": task.id, "address": task.address, "title": task.title,
            "description": task.description, "role": task.role or None,
            "capabilities": list(task.capabilities), "priority": task.priority,
            "scopes": list(task.scopes), "deadline": task.deadline, "state": task.state.value,
            "owner": fmt(task.owner), "announced_by": fmt(task.announced_by),
            "announced_at": task.announced_at, "claimed_at": task.claimed_at,
            "due_at": task.due_at(), "result": task.result, "updated": task.updated,
            "history": [{"index": h.index, "at": h.at, "event": h.event, "node": fmt(h.node),
                         "text": h.text} for h in task.history]}


def _event(out: Outcome, task: Task) -> dict[str, Any]:
    """The event of a change: told on the topic, and recorded in the signed log."""
    return _event_of(EVENT_TYPES[out.op], task, task.state, task.owner, out.node, out.index)


def _event_of(type_: str, task: Task, state: State, owner: bytes | None, node: bytes | None,
              index: int) -> dict[str, Any]:
    return {"type": type_, "id": task.id, "state": state.value, "owner": _node_text(owner),
            "node": _node_text(node), "index": index, "address": task.address,
            "title": task.title}


def _record(event: dict[str, Any]) -> Record:
    """An event as a signed-log record (its type, and its fields that are set)."""
    return event["type"], {k: v for k, v in event.items() if v is not None}


def _history_records(task: Task, node_id: bytes, after: int) -> Iterator[tuple[int, Record]]:
    """The records ``_keep_record`` would have kept of ``task``'s changes after index
    ``after`` that concern ``node_id``, rebuilt from its history, with their indexes (an
    announce a claim brought in was recorded where it was made, not here)."""
    owner: bytes | None = None
    for number, item in enumerate(task.history):
        released = None
        if item.event == "claimed":
            owner = item.node
        elif item.event == "released":
            released, owner = owner, None
        elif item.event == "announced" and any(
                later.index == item.index for later in task.history[number + 1:]):
            continue
        kind = _HISTORY_EVENTS.get(item.event)
        if kind is not None and item.index > after and node_id in (
                item.node, owner, task.announced_by, released):
            type_, state = kind
            yield item.index, _record(_event_of(type_, task, state, owner, item.node,
                                                item.index))


def _node_text(node: bytes | None) -> str | None:
    if node is None or len(node) != 32:
        return None
    return format_node_id(node)


class TaskService:
    """Tasks on one node (see the module docstring).

    Args:
        identity: this node's identity (signs its commands); store: the node's store
        (``storage.DATABASES`` declared); network_id: the network's ID (signed into each
        command); profile: this node's roles, capabilities and capacity, sent with its claims;
        release_after: seconds an owner may be dead before the coordinator releases its tasks;
        finished_retention: seconds the coordinator keeps finished tasks before expiring them;
        retry_for: seconds past the proposal timeout a command undecided in a coordinator's
        failure is still proposed again (default: ``_retry.retry_window`` of the default
        election timeout).
    """

    def __init__(self, identity: Signer, store: Store, *, network_id: bytes, profile: Profile,
                 release_after: float, finished_retention: float = 86400.0,
                 retry_for: float = retry_window(2.0)) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.network_id = network_id
        self.profile = profile
        self.release_after = release_after
        self.finished_retention = finished_retention
        self.machine = TaskMachine(network_id=network_id)
        self._store = TaskStore(store)
        self._loaded_group: bytes | None = store.get("raft", b"group")
        self.machine.founders = self._founders_of(lambda: self._loaded_group)
        applied, tasks, meta = self._store.load(self._loaded_group)
        self.machine.load(applied, tasks, meta)
        self.machine.take_changes()
        self.machine.take_removed()
        self.announced = Announced(network_id=network_id)
        stale = []  # in the log by now, or no longer valid: their rows go at the next write
        for command in self._store.load_announced():
            try:
                self.announced.add(command, floor=self.machine.floor,
                                   held=self.machine.tasks)
            except Refused:
                stale.append(peek(command)[2])
        self.announced.take_changes()
        self.announced.forget_stored(stale)
        self._claims_wake = trio.Event()
        self._claiming: dict[str, list[_Claiming]] = {}  # our claims in flight, by task
        self._expire_check_at = 0.0
        self.counters: dict[str, int] = {"reports_dropped": 0, "release_proposals": 0,
                                         "release_failures": 0, "expire_proposals": 0,
                                         "expire_failures": 0, "announces_shared": 0,
                                         "malformed_announce_shares": 0,
                                         "announce_shares_over_budget": 0,
                                         "announce_shares_withheld": 0,
                                         "records_rebuilt_after_snapshot": 0}
        self._proposer = Proposer(identity, network_id, self.machine, retry_for=retry_for,
                                  counters=self.counters)
        #: Claims of other nodes, when this node is the coordinator (``_desk``).
        self.desk = ClaimDesk(self.machine, self.counters)
        self._claim_route: ClaimRoute | None = None  # where our claims go (``connect``)
        self._manager: Requester | None = None  # the connections (``connect``)
        self._sharing = Sharing()  # when our share is sent, and peers' decoded (``_share``)
        #: What the consensus service applies committed entries to (set before it starts).
        self.decisions = TaskDecisionLog(self.machine, self._on_applied,
                                         on_restored=self._on_restored)
        self._dirty = trio.Event()
        # Signed-log records of the changes applied (and announces made) since the last save,
        # in order; written with the next save (bounded like the changes it holds: by what
        # applies in ``_PERSIST_DELAY``).
        self._records: list[Record] = []
        self._reports: deque[Outcome] = deque()
        self._report_due = trio.Event()
        self._reporting = False  # ``run`` reports: changes are told as they apply
        self._told_at_once = 0  # since the report task last ran dry (``_TOLD_AT_ONCE``)
        self._releasing: set[tuple[str, bytes]] = set()
        self._planner = ReleasePlanner(self.node_id, release_after)
        self._parts: _Connected | None = None
        if tasks:
            log.info("tasks: %d tasks loaded, applied through index %d", len(tasks), applied)

    def connect(self, *, consensus: ConsensusService, gossip: GossipService | None = None,
                signed_log: LogService | None = None,
                membership: MembershipService | None = None,
                content: ContentStore | None = None,
                manager: Requester | None = None) -> None:
        """Hand over the services the task service uses, once they exist (before ``run``).
        With ``manager`` (the connections), claims go to the coordinator's task service
        (``_desk``; it serves them with ``serve_claim``), else through ``consensus``.

        State stored for another coordination group than the consensus service holds (its
        state was dropped at start) is dropped too.
        """
        self._parts = _Connected(consensus, gossip, signed_log, membership, content)
        self._manager = manager
        if manager is not None:
            self._claim_route = ClaimRoute(consensus, manager, self.desk)
        self.machine.founders = self._founders_of(lambda: consensus.group)
        if consensus.group != self._loaded_group and self.machine.applied:
            log.warning("tasks: stored task state belongs to another coordination group: "
                        "dropped")
            self._store.clear()
            self.machine.load(0, [])
            self.machine.take_changes()

    @staticmethod
    def _founders_of(group: Any) -> Any:
        """The voters before the log's first configuration entry: the group's founder (its ID
        starts with the founder's node ID), the same on every node of the group."""
        def founders() -> frozenset[bytes]:
            value = group()
            return frozenset({value[:32]}) if value else frozenset()
        return founders

    # --- applying (called by the consensus driver, synchronously) ------------------------------

    def _on_applied(self, index: int, outcome: Outcome | None) -> None:
        self._proposer.applied(outcome)
        if outcome is not None and len(self.announced):
            if outcome.op == "expire":
                self.announced.drop_before(self.machine.floor)
            elif outcome.task_id in self.machine.tasks:
                self.announced.drop(outcome.task_id)  # the log holds it now
        if outcome is not None and outcome.op in ("announce", "claim"):
            self._wake_claims()  # a claim may wait for this task (``_hearing``)
            if outcome.ok and outcome.task is not None and outcome.task_id in self._claiming:
                self._tell_losers(outcome.task)
        if self.machine.unsaved:
            self._dirty.set()
        if outcome is None:
            return
        if outcome.ok and outcome.changed:
            self._keep_record(outcome)
            if self._reporting and not self._reports and self._told_at_once < _TOLD_AT_ONCE:
                # Told in the apply step itself (it only queues: deliveries and an append),
                # not by waking ``_report``: a task switch less per change on every node, and
                # every node's subscribers hear the change a scheduler pass sooner.
                self._told_at_once += 1
                self._report_one(outcome)
            elif len(self._reports) >= _KEPT_OUTCOMES and self._reporting:
                # Applied faster than told a turn at a time (a follower catching up): tell
                # the backlog and this one now, in order, rather than drop any; a
                # subscriber that cannot keep up with that loses events, counted as its own
                # misses.
                while self._reports:
                    self._report_one(self._reports.popleft())
                self._report_one(outcome)
            elif len(self._reports) >= _KEPT_OUTCOMES:  # before ``run``: bounded until then
                self.counters["reports_dropped"] += 1
                log.warning("tasks: report queue full; a change goes unreported")
            else:
                self._reports.append(outcome)
                self._report_due.set()

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        parts = self._parts
        heard = None
        if parts is not None and parts.gossip is not None:
            # Only announces (``_hear``): the topic's other events would wake it for nothing.
            heard = parts.gossip.subscribe(TOPIC, _HEARD_BUFFER, others_only=True,
                                           matching=(_ANNOUNCED_MARK,))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._persist)
                nursery.start_soon(self._report)
                nursery.start_soon(self._release_loop)
                if heard is not None:
                    nursery.start_soon(self._hear, heard)
                # (A stand-in manager without connection events, in tests, shares nothing.)
                if self._manager is not None and hasattr(self._manager, "events"):
                    nursery.start_soon(self._share_with_peers, self._manager, nursery)
                task_status.started()
        finally:
            if heard is not None:
                heard.close()

    async def _share_with_peers(self, manager: Any, nursery: trio.Nursery) -> None:
        """Send each peer that connects the announces this node made that are still pending
        (``_share``): one that was not connected when they were published learns them."""
        events = manager.events.subscribe()
        try:
            for peer in list(manager.connections):
                nursery.start_soon(self._share_own, manager, peer)
            async for event in events:
                if isinstance(event, PeerConnected):
                    nursery.start_soon(self._share_own, manager, event.peer_id)
                elif isinstance(event, Overflowed):  # some connections went unseen: all
                    for peer in list(manager.connections):
                        nursery.start_soon(self._share_own, manager, peer)
        finally:
            events.close()

    async def _share_own(self, manager: Any, peer: bytes) -> None:
        if not self._sharing.may_send(peer, trio.current_time()):
            return  # sent in this window already
        own = [p.command for p in self.announced.all() if p.task.announced_by == self.node_id]
        bodies = list(batches(own))
        if not self._sharing.may_send_bytes(peer, sum(map(len, bodies)), trio.current_time()):
            self.counters["announce_shares_withheld"] += 1  # too much shared with all already
            return
        for body in bodies:
            try:
                await manager.request(peer, SHARE_METHOD, body, timeout=_SHARE_TIMEOUT)
            except BzzzError as exc:  # gone, or an older node: it hears of them when claimed
                log.debug("tasks: announces not shared with %s: %s", short_id(peer), exc)
                self._sharing.send_failed(peer, trio.current_time())
                return
        self.counters["announces_shared"] += len(own)

    async def serve_announced(self, peer: bytes, body: bytes) -> bytes:
        """RPC ``tasks.announced``: the announces ``peer`` made that are still pending
        (``_share``), kept as gossip's are: only its own, within its bounds.

        Raises:
            TaskError: not a list of announces (counted).
        """
        await trio.lowlevel.checkpoint()
        try:
            commands = read_batch(body)
        except ValueError as exc:
            self.counters["malformed_announce_shares"] += 1
            raise TaskError(f"tasks.announced: {exc}") from None
        if not self._sharing.may_decode(peer, len(commands), trio.current_time()):
            self.counters["announce_shares_over_budget"] += 1
            per_peer, in_all, window = self._sharing.decode_limits
            raise TaskError(f"tasks.announced: more than {per_peer} announces from this peer, "
                            f"or {in_all} from all, within {window:g}s")
        kept = 0
        for number, command in enumerate(commands):
            if number and number % KEEP_CHUNK == 0:
                await trio.lowlevel.checkpoint()  # a peer's batch holds nothing else up
            try:
                self.announced.add(command, origin=peer, floor=self.machine.floor,
                                   held=self.machine.tasks)
            except Refused:
                continue  # counted by reason (``Announced.counters``)
            kept += 1
        if kept:
            self._dirty.set()
            self._wake_claims()
        return b""

    async def _hear(self, deliveries: Any) -> None:
        """Keep the announces other nodes publish (``_announced``)."""
        async for delivery in deliveries:  # others' only: ours are kept when made
            command = _announce_in(delivery.data)
            if command is None:
                continue
            try:
                self.announced.add(command, origin=delivery.origin, floor=self.machine.floor,
                                   held=self.machine.tasks)
            except Refused as refused:
                log.debug("tasks: an announce from %s refused (%s): %s",
                          short_id(delivery.origin), refused.reason.value, refused.text)
                continue
            self._dirty.set()
            self._wake_claims()

    def _wake_claims(self) -> None:
        self._claims_wake.set()
        self._claims_wake = trio.Event()

    async def _persist(self) -> None:
        while True:
            await self._dirty.wait()
            await trio.sleep(_PERSIST_DELAY)
            self._dirty = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Store what changed since the last write, with the signed-log records of those
        changes (one transaction)."""
        # Taken together, with no checkpoint until the write is queued: the records are those
        # of exactly the changes this write stores, and writes queue in the order taken.
        replaced, changed = self.machine.take_changes()
        removed = self.machine.take_removed()
        added, dropped = self.announced.take_changes()
        parts = self._parts
        group = parts.consensus.group if parts is not None else None
        signed_log = parts.signed_log if parts is not None else None
        records: list[Record] = []
        if parts is not None:  # (before ``connect``: kept until a log is known, or not)
            records, self._records = self._records, []
        if replaced:
            changed = list(self.machine.tasks.values())
            added = self.announced.all()
        try:
            await self._store.save(self.machine.applied, group, changed, replace=replaced,
                                   removed=removed, meta=self.machine.meta(),
                                   announced=[(p.task.id, p.command) for p in added],
                                   unannounced=dropped, records=records, log=signed_log)
        except BaseException:
            self._records[:0] = records  # not written: they go with the next save
            raise

    def _on_restored(self, before: int) -> None:
        """A snapshot replaced the task state, which was at index ``before``: the changes
        after it were never applied here one by one (a follower far behind installs the
        leader's snapshot; a crash came between a snapshot and the task state's save). Their
        records are rebuilt from the tasks' histories (``_history_records``)."""
        self._proposer.applications.restored()
        missed = [pair for task in self.machine.tasks.values() if task.updated > before
                  for pair in _history_records(task, self.node_id, before)]
        missed.sort(key=lambda pair: pair[0])
        self._records.extend(record for _, record in missed)
        self.counters["records_rebuilt_after_snapshot"] += len(missed)
        if missed:
            self._dirty.set()

    def _keep_record(self, out: Outcome) -> None:
        """Keep the signed-log record of a change that concerns this node, for the next save
        (``flush``)."""
        task = out.task
        if task is None or out.op not in EVENT_TYPES:
            return
        if self.node_id not in (out.node, task.owner, task.announced_by, out.released):
            return
        self._records.append(_record(_event(out, task)))
        self._dirty.set()

    async def _report(self) -> None:
        """Tell the changes applied before ``run`` (then each as it applies: ``_on_applied``),
        and those queued behind them."""
        try:
            while True:
                while self._reports:
                    self._report_one(self._reports.popleft())
                    await trio.lowlevel.checkpoint()
                self._told_at_once = 0
                self._reporting = True
                await self._report_due.wait()
                self._report_due = trio.Event()
        finally:
            self._reporting = False

    def _report_one(self, out: Outcome, command: bytes | None = None) -> None:
        """Tell ``out``'s event (with ``command``: the announce it publishes); its signed-log
        record is ``_keep_record``'s.

        Raises:
            BzzzError: the announce could not be published (see ``GossipService.publish``).
        """
        task = out.task
        if task is None or out.op not in EVENT_TYPES:
            return  # an expiry: nothing to report per task
        parts = self._parts
        if parts is None:
            return
        event = _event(out, task)
        if parts.gossip is not None and command is not None:  # an announce: for every node
            published = {**event, "command": base64.b64encode(command).decode("ascii")}
            parts.gossip.publish(TOPIC, json.dumps(published).encode())  # raises BzzzError
        elif parts.gossip is not None and out.node is not None:
            # Decided in the log, which every node applies: each tells its own subscribers,
            # as the proposer's message number ``index`` (the same event ID on every node).
            at = task.history[-1].at if task.history else time.time()
            parts.gossip.deliver_here(TOPIC, out.node, out.index, int(at * 1000),
                                      json.dumps(event).encode())

    # --- the coordinator's releases -----------------------------------------------------------

    async def _release_loop(self) -> None:
        while True:
            parts = self._parts
            if parts is not None and parts.consensus.leader != self.node_id:
                # Only the coordinator releases: the others sleep until a role changes.
                self._planner.reset()
                await parts.consensus.next_role_change()
                continue
            await trio.sleep(min(_CHECK_INTERVAL, self.release_after / 4))
            parts = self._parts
            if parts is None or parts.consensus.leader != self.node_id:
                self._planner.reset()
                continue
            for task_id, owner, why in self.due_releases(time.time(), trio.current_time()):
                if (task_id, owner) not in self._releasing:
                    self._releasing.add((task_id, owner))
                    await self._propose_release(task_id, owner, why)
            if trio.current_time() >= self._expire_check_at:
                interval = min(_EXPIRE_INTERVAL, max(_CHECK_INTERVAL,
                                                     self.finished_retention / 10))
                self._expire_check_at = trio.current_time() + interval
                before = self.due_expiry(time.time())
                if before is not None:
                    await self._propose_expiry(before)

    def due_expiry(self, wall: float) -> float | None:
        """The ``before`` of an expiry this node, as coordinator, should propose at wall time
        ``wall``; None when no finished task is ``finished_retention`` old."""
        before = wall - self.finished_retention
        if before <= self.machine.floor:
            return None
        due = any(t.state in FINISHED and t.last_at < before
                  for t in self.machine.tasks.values())
        return before if due else None

    async def _propose_expiry(self, before: float) -> None:
        self.counters["expire_proposals"] += 1
        try:
            out = await self._propose("expire", {"before": before}, retry=False)
        except BzzzError as exc:
            self.counters["expire_failures"] += 1
            log.warning("tasks: expiring finished tasks failed: %s", exc)
        else:
            if out.ok:
                log.info("tasks: %s (finished before %.0f)", out.text, before)

    def due_releases(self, wall: float, now: float) -> list[tuple[str, bytes, str]]:
        """The (task, owner, why) this node, as coordinator, should release now."""
        parts = self._parts
        core = getattr(parts.membership, "core", None) if parts is not None else None
        members = core.members() if core is not None else None
        return self._planner.due(self.machine, members, wall=wall, now=now)

    async def _propose_release(self, task_id: str, owner: bytes, why: str) -> None:
        task = self.machine.tasks.get(task_id)
        if task is None or task.owner != owner:
            self._releasing.discard((task_id, owner))
            return
        self.counters["release_proposals"] += 1
        try:
            out = await self._propose("release", {"id": task_id, "owner": owner, "why": why,
                                                  "gen": task.claims}, retry=False)
        except BzzzError as exc:
            self.counters["release_failures"] += 1
            log.warning("tasks: releasing %s (%s) failed: %s", task_id, why, exc)
        else:
            if out.ok:
                log.info("tasks: released %s of %s (%s)", task_id, short_id(owner), why)
        finally:
            self._releasing.discard((task_id, owner))

    # --- requests -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        """The task as the log made it, or as announced when the log does not hold it yet."""
        task = self.machine.tasks.get(task_id)
        if task is None:
            pending = self.announced.get(task_id)
            return pending.task if pending is not None else None
        return task

    def list(self, state: State | None = None) -> list[Task]:
        """Every task (in ``state``), highest priority first, then oldest first."""
        held = self.machine.tasks
        every = [*held.values(), *(t for t in self.announced.tasks() if t.id not in held)]
        tasks = [t for t in every if state is None or t.state is state]
        tasks.sort(key=lambda t: (-t.priority, t.announced_at, t.id))
        return tasks

    async def announce(self, *, title: str, description: str = "", role: str = "",
                       capabilities: tuple[str, ...] = (), priority: int = 0,
                       scopes: tuple[str, ...] = (), deadline: float | None = None,
                       address: str | None = None) -> Outcome:
        """Announce a task; its ID is new (random), its address ``address`` or its own."""
        task_id = secrets.token_hex(8)
        body = {"id": task_id, "title": title, "description": description, "role": role,
                "capabilities": list(capabilities), "priority": priority,
                "scopes": list(scopes), "deadline": deadline,
                "address": address or default_address(task_id)}
        parts = self._parts
        if parts is None or parts.gossip is None:
            return await self._propose("announce", body)
        seq = self._proposer.next_seq()
        command = sign(self.identity, self.network_id, "announce", time.time(), body, seq=seq)
        try:
            pending = self.announced.add(command, floor=self.machine.floor)
        except Refused as refused:
            return Outcome(0, "announce", task_id, self.node_id, False, refused.reason,
                           refused.text, seq=seq)
        out = Outcome(0, "announce", task_id, self.node_id, True, task=pending.task, seq=seq)
        try:
            self._report_one(out, command)
        except BzzzError as exc:  # kept by nobody else: not announced at all
            self.announced.drop(task_id)
            raise TaskError(f"announce not published: {exc}") from None
        self._keep_record(out)
        self._dirty.set()  # the announce itself is saved too
        return out

    async def claim(self, task_id: str) -> Outcome:
        """Claim a task as this node last saw it (its ``claims`` so far: a claim made before a
        release this node has not applied yet is refused ``stale``); a task the log does not
        hold yet is claimed with its announce (``_announced``)."""
        body: dict[str, Any] = {"id": task_id, "profile": self.profile, "gen": 0}
        task = self.machine.tasks.get(task_id)
        if task is None:
            pending = self.announced.get(task_id) or await self._hearing(task_id)
            if pending is not None:
                body["announce"] = pending.command
        else:
            body["gen"] = task.claims
        claiming = _Claiming(body["gen"], trio.CancelScope())
        self._claiming.setdefault(task_id, []).append(claiming)
        try:
            with claiming.scope:
                return await self._propose("claim", body)
        finally:
            self._claiming[task_id].remove(claiming)
            if not self._claiming[task_id]:
                del self._claiming[task_id]
        assert claiming.lost is not None  # only ``_tell_losers`` cancels the scope
        return claiming.lost

    def _tell_losers(self, task: Task) -> None:
        """Answer our claims of ``task`` that lost, as soon as this node applied the claim of
        another node that came first: a claim made after ``gen`` claims of a task can only win
        while the task has had no more (``_machine``), and the count never goes back. So a
        loser of a race hears who won when the winner's claim applies here, not when its own
        does, later in the log, where it is refused as this says (owned)."""
        if task.state not in ACTIVE or task.owner == self.node_id:
            return
        for claiming in self._claiming.get(task.id, ()):
            if task.claims > claiming.gen and claiming.lost is None:
                claiming.lost = Outcome(task.updated, "claim", task.id, self.node_id, False,
                                        Reason.OWNED, "another node holds the task", task,
                                        task.owner)
                claiming.scope.cancel()

    async def _hearing(self, task_id: str) -> Pending | None:
        """The announce of ``task_id`` once heard (or the log holds the task: None), within
        ``_HEARING`` seconds; None when it did not come."""
        with trio.move_on_after(_HEARING):
            while task_id not in self.announced and task_id not in self.machine.tasks:
                await self._claims_wake.wait()
        return self.announced.get(task_id)

    async def progress(self, task_id: str, text: str) -> Outcome:
        return await self._propose("progress", {"id": task_id, "text": text})

    async def complete(self, task_id: str, result: bytes | None = None) -> Outcome:
        """Complete a task; ``result`` is stored as UCXL content first, its address recorded.

        Raises:
            TaskError: no such task, or it is not ours (nothing is stored then).
        """
        address = None
        if result is not None:
            task = self._own_task(task_id)
            parts = self._parts
            if parts is None or parts.content is None:
                raise TaskError("the content store is not running")
            address = result_address(task)
            await parts.content.put(address, result)
        return await self._propose("complete", {"id": task_id, "result": address})

    async def fail(self, task_id: str, reason: str) -> Outcome:
        return await self._propose("fail", {"id": task_id, "text": reason})

    async def release(self, task_id: str) -> Outcome:
        """Give a task up (this node must hold it)."""
        task = self._own_task(task_id)
        assert task.owner is not None
        return await self._propose("release", {"id": task_id, "owner": task.owner,
                                               "why": "given_up", "gen": task.claims})

    def _own_task(self, task_id: str) -> Task:
        task = self.machine.tasks.get(task_id)
        if task is None:
            raise TaskError(f"no task {task_id}", missing=True)
        if task.state not in ACTIVE or task.owner != self.node_id:
            raise TaskError(f"task {task_id} is {task.state.value}, and not held by this node")
        return task

    async def _propose(self, op: str, body: dict[str, Any], *, retry: bool = True) -> Outcome:
        """Propose a command, wait until this node applied it, return its outcome; undecided
        in a coordinator's failure, propose it again (``retry``; ``_proposer``).

        Raises:
            ProposalError: not decided (no quorum, timeout: it may still commit; refused).
            TaskError: no task service connected.
        """
        if self._parts is None:
            raise TaskError("coordination is not running")
        route = self._claim_route if op == "claim" else None
        return await self._proposer.propose(route or self._parts.consensus, op, body,
                                            retry=retry)

    async def serve_claim(self, peer: bytes, body: bytes) -> bytes:
        """RPC ``tasks.claim``: a claim of ``peer`` sent to this node as the coordinator
        (``_desk``).

        Raises:
            BzzzError: a malformed request.
        """
        if self._parts is None:
            # Answered, not raised: an RPC error reads as "it may have committed" (a 504 in
            # the end); this is a definite "not taken", which the claimant retries (a 503).
            return answer_body(error_answer(ProposalError(
                Failure.NO_QUORUM, "coordination is not running on the coordinator yet")))
        return await self.desk.serve_rpc(self._parts.consensus, peer, body)

    def next_seq(self) -> int:
        """This node's next command sequence number (``Proposer.next_seq``)."""
        return self._proposer.next_seq()

    @property
    def retry_for(self) -> float:
        return self._proposer.retry_for

    def status(self) -> dict[str, Any]:
        state = self.machine.state()
        state["announced"] = len(self.announced)
        # Refusals of announces are counted by reason with the log's, announces heard too.
        state["counters"] = {**(self.machine.counters + self.announced.counters), **self.counters}
        state["profile"] = self.profile.encode()
        return state


def _announce_in(data: bytes) -> bytes | None:
    """The announce command a ``task_announced`` event carries, or None (another event, or not
    one of ours)."""
    if _ANNOUNCED_MARK not in data:
        return None  # most of the topic: not worth parsing
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "task_announced":
        return None
    command = event.get("command")
    try:
        return base64.b64decode(command, validate=True) if isinstance(command, str) else None
    except (ValueError, binascii.Error):
        return None


def default_address(task_id: str) -> str:
    """A task's own UCXL address when the announcer names none."""
    return f"ucxl://bzzz:tasks@bzzz:{task_id}/*^/"


def result_address(task: Task) -> str:
    """Where a task's result is stored: under its address if writable, else its own."""
    for base in (task.address, default_address(task.id)):
        try:
            address = parse(base.rstrip("/") + "/result")
            address.check_writable()
        except UCXLError:
            continue
        return str(address)
    raise TaskError(f"task {task.id}: no writable address for its result")

