"""The task service's own decisions, with real LMDB and stand-ins for the services it uses:
which tasks the coordinator releases and when, and stored state of another group dropped."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.consensus import Entry, EntryKind
from bzzz_edge.consensus.storage import DATABASES as RAFT_DATABASES
from bzzz_edge.identity import Identity
from bzzz_edge.membership._messages import Status
from bzzz_edge.store import Store
from bzzz_edge.tasks import Outcome, Profile, Reason, sign
from bzzz_edge.tasks.service import TaskService
from bzzz_edge.tasks.storage import DATABASES, TaskStore

NET = b"N" * 16
_WHO = b"service"
GROUP = b"G" * 40


def ident(i: int) -> Identity:
    return Identity(Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"%s test node %d" % (_WHO, i)).digest()))


IDS = [ident(i) for i in range(5)]
_SEQ = itertools.count(1)


def node(i: int) -> bytes:
    return IDS[i].node_id


def encode(op: str, by: int, at: float, body: dict[str, object]) -> bytes:
    return sign(IDS[by], NET, op, at, body, seq=next(_SEQ))


@dataclass
class _Member:
    node: bytes
    status: Status
    since: float


class _Core:
    def __init__(self) -> None:
        self.table: list[_Member] = []

    def members(self) -> list[_Member]:
        return self.table


class _Membership:
    def __init__(self) -> None:
        self.core = _Core()


class _Consensus:
    def __init__(self, group: bytes | None) -> None:
        self.group = group
        self.leader = node(0)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    s.put("raft", b"group", GROUP)
    yield s
    s.close()


def _service(store: Store, release_after: float = 10.0) -> TaskService:
    return TaskService(IDS[0], store, network_id=NET, profile=Profile({}, frozenset(), 10),
                       release_after=release_after)


def _feed(service: TaskService, *commands: bytes) -> None:
    for data in commands:
        index = service.machine.applied + 1
        service.decisions.apply(Entry(1, index, EntryKind.COMMAND, data))


def _announce(task_id: str, deadline: float | None = None) -> bytes:
    return encode("announce", 0, 100.0, {
        "id": task_id, "title": task_id, "description": "", "role": "", "capabilities": [],
        "priority": 0, "scopes": [], "deadline": deadline, "address": "ucxl://a:b@p:t/*^/"})


def _claim(task_id: str, by: int, at: float = 100.0) -> bytes:
    return encode("claim", by, at, {"id": task_id, "profile": Profile({}, frozenset(), 10),
                                    "gen": 0})


def test_owners_dead_past_the_grace_and_missed_deadlines_are_due(store: Store) -> None:
    service = _service(store)
    membership = _Membership()
    service.connect(consensus=_Consensus(GROUP), membership=membership)
    _feed(service, _announce("dead"), _announce("alive"), _announce("mine"),
          _announce("late", deadline=50.0), _announce("forgotten"),
          _claim("dead", 1), _claim("alive", 2), _claim("mine", 0), _claim("late", 2, at=100.0),
          _claim("forgotten", 3))
    membership.core.table = [_Member(node(1), Status.DEAD, since=0.0),
                             _Member(node(2), Status.ALIVE, since=0.0)]
    assert service.due_releases(wall=120.0, now=5.0) == []  # dead 5 s of 10; deadline at 150
    due = service.due_releases(wall=151.0, now=10.0)
    assert sorted(due) == [("dead", node(1), "owner_dead"), ("late", node(2), "deadline")]
    # node 3 is unknown to membership: counted from when first noticed (at now=5 above)
    assert ("forgotten", node(3), "owner_dead") not in due
    assert ("forgotten", node(3), "owner_dead") in service.due_releases(wall=0.0, now=15.0)
    membership.core.table.append(_Member(node(3), Status.ALIVE, since=15.0))
    assert ("forgotten", node(3), "owner_dead") not in service.due_releases(wall=0.0,
                                                                            now=100.0)


def test_state_of_another_group_is_dropped_on_connect(store: Store) -> None:
    service = _service(store)
    service.connect(consensus=_Consensus(GROUP))
    _feed(service, _announce("t1"))
    _, changed = service.machine.take_changes()
    store.writer.write_sync(TaskStore(store).save_fn(service.machine.applied, GROUP, changed))

    same = _service(store)
    assert "t1" in same.machine.tasks
    same.connect(consensus=_Consensus(GROUP))
    assert "t1" in same.machine.tasks

    dropped = _service(store)
    dropped.connect(consensus=_Consensus(None))  # the consensus state was dropped at start
    assert not dropped.machine.tasks and dropped.machine.applied == 0
    assert TaskStore(store).load(GROUP) == (0, [], None)


class _Undecided(_Consensus):
    """A coordinator that takes proposals and never commits them (until cancelled)."""

    proposal_timeout = 30.0

    def __init__(self, group: bytes | None) -> None:
        super().__init__(group)
        self.proposed: list[bytes] = []

    async def propose(self, command: bytes, *, timeout: float | None = None) -> None:
        self.proposed.append(command)
        await trio.sleep_forever()


def test_a_claim_that_lost_the_race_answers_when_the_winners_claim_applies(
        store: Store) -> None:
    """Our claim is still in the log's pipeline when another node's claim of the same task
    applies here: it can no longer win, so it answers owned, naming the winner, at once."""
    service = _service(store)
    consensus = _Undecided(GROUP)
    service.connect(consensus=consensus)  # type: ignore[arg-type]
    _feed(service, _announce("t1"), _announce("t2"))
    answers: dict[str, object] = {}

    async def main() -> None:
        async def claim(task_id: str) -> None:
            answers[task_id] = await service.claim(task_id)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim, "t1")
                nursery.start_soon(claim, "t2")
                await trio.testing.wait_all_tasks_blocked()
                assert len(consensus.proposed) == 2 and not answers
                _feed(service, _claim("t1", 2))
                await trio.testing.wait_all_tasks_blocked()
                assert set(answers) == {"t1"}  # t2: nobody else claimed it, still undecided
                nursery.cancel_scope.cancel()

    trio.run(main)
    lost = answers["t1"]
    assert isinstance(lost, Outcome)
    assert not lost.ok and lost.reason is Reason.OWNED and lost.winner == node(2)
    assert not service._claiming  # nothing left behind of either claim


class _Gossip:
    """The node's local deliveries (``deliver_here``) to real subscriptions; nothing sent."""

    def __init__(self, me: bytes) -> None:
        from bzzz_edge.gossip._local import LocalTopics
        self.me = me
        self.topics = LocalTopics(max_topics=4, subscriber_buffer=64,
                                  on_enter=lambda topic: None, on_left=lambda topic: None)

    def subscribe(self, topic: str, buffer: int | None = None, *,
                  others_only: bool = False, matching: tuple[bytes, ...] = ()) -> object:
        return self.topics.subscribe(topic, buffer,
                                     skip_origin=self.me if others_only else None,
                                     matching=matching)

    def deliver_here(self, topic: str, origin: bytes, seq: int, timestamp_ms: int,
                     data: bytes) -> None:
        from bzzz_edge.gossip.delivery import Delivery
        for subscription in self.topics.subscribers(topic):
            subscription.put(Delivery(topic, origin, seq, timestamp_ms, 0, data))


class _Follower(_Consensus):
    def __init__(self, group: bytes | None) -> None:
        super().__init__(group)
        self.leader = node(3)  # not us: the service's release loop just waits

    async def next_role_change(self) -> None:
        await trio.sleep_forever()


def test_changes_are_told_in_order_those_applied_while_running_in_the_apply_step(
        store: Store) -> None:
    import json

    from bzzz_edge.gossip.topics import COORDINATION
    service = _service(store)
    gossip = _Gossip(service.node_id)
    service.connect(consensus=_Follower(GROUP), gossip=gossip)  # type: ignore[arg-type]
    watcher = gossip.subscribe(COORDINATION, 64)
    _feed(service, _announce("t1"), _claim("t1", 2))  # applied before the service runs

    def told() -> list[tuple[str, str]]:
        events = []
        while len(watcher):  # type: ignore[arg-type]
            event = json.loads(watcher.receive_nowait().data)  # type: ignore[attr-defined]
            events.append((event["type"], event["id"]))
        return events

    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                assert told() == []  # queued until the service runs
                await nursery.start(service.run)
                await trio.testing.wait_all_tasks_blocked()
                assert told() == [("task_announced", "t1"), ("task_claimed", "t1")]
                _feed(service, _announce("t2"), _claim("t2", 1))
                # Told by the apply step itself: no task had to run for it.
                assert told() == [("task_announced", "t2"), ("task_claimed", "t2")]
                nursery.cancel_scope.cancel()

    trio.run(main)
