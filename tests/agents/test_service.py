"""The agents service's trio shell over an in-memory bus standing in for gossip (each message
delivered to every node's subscription, the sender's own included, as gossip does), with
trio's mock clock: nodes learn each other's roles, a newcomer learns them long before the
interval, a lost profile is asked for and sent, a task change goes out at once, and garbage
is counted without stopping anything."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from bzzz_edge.agents.service import TOPIC, AgentService
from bzzz_edge.feed import Feed
from bzzz_edge.gossip.delivery import Delivery, Published, Subscription
from bzzz_edge.membership import MemberEvent, Status
from bzzz_edge.membership._messages import Address
from bzzz_edge.tasks import ACTIVE, Profile, State

INTERVAL = 30.0


def node(i: int) -> bytes:
    return hashlib.sha256(b"agents service node %d" % i).digest()


@dataclass
class Bus:
    gossips: list[FakeGossip] = field(default_factory=list)
    drop: Callable[[bytes, bytes], bool] = lambda origin, data: False


class FakeGossip:
    def __init__(self, bus: Bus, me: bytes) -> None:
        self.bus, self.me, self.seq = bus, me, 0
        self.subs: list[Subscription] = []
        self.sent: list[bytes] = []
        bus.gossips.append(self)

    def subscribe(self, topic: str, buffer: int | None = None) -> Subscription:
        assert topic == TOPIC
        sub = Subscription(topic, buffer or 16, self.subs.remove)
        self.subs.append(sub)
        return sub

    def publish(self, topic: str, data: bytes) -> Published:
        self.seq += 1
        self.sent.append(data)
        if not self.bus.drop(self.me, data):
            delivery = Delivery(topic, self.me, self.seq, int(time.time() * 1000), 0, data)
            for gossip in self.bus.gossips:
                for sub in gossip.subs:
                    sub.put(delivery)
        return Published(topic, self.me, self.seq)


class FakeMembership:
    def __init__(self) -> None:
        self.changes: Feed[MemberEvent] = Feed("test member changes")
        self.core = SimpleNamespace(members=lambda: [])

    def say(self, who: bytes, old: Status | None, new: Status) -> None:
        self.changes.publish(MemberEvent(who, old, new, 1, Address("127.0.0.1", 1), {}))


def tasks(roles: dict[str, tuple[str, ...]], caps: set[str]) -> Any:
    machine = SimpleNamespace(applied=0, tasks={}, holding=lambda n: sum(
        1 for t in machine.tasks.values() if t.owner == n and t.state in ACTIVE))
    return SimpleNamespace(profile=Profile(roles, frozenset(caps), 3), machine=machine)


def service(bus: Bus, i: int, roles: dict[str, tuple[str, ...]], caps: set[str]
            ) -> tuple[AgentService, FakeMembership]:
    members = FakeMembership()
    s = AgentService(node(i), gossip=FakeGossip(bus, node(i)), membership=members,  # type: ignore[arg-type]
                     tasks=tasks(roles, caps), name=lambda: f"node{i}",
                     interval=lambda: INTERVAL)
    return s, members


async def until(check: Callable[[], bool], seconds: float) -> None:
    """Wait (on the mock clock) until ``check()``; fails after ``seconds`` virtual seconds."""
    with trio.fail_after(seconds):
        while not check():
            await trio.sleep(0.01)


def knows(s: AgentService, other: bytes, roles: list[str]) -> bool:
    entry = s.directory.entries.get(other)
    return entry is not None and entry.profile_known and sorted(entry.roles or {}) == roles


def run(test: Callable[[], Any]) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_two_nodes_learn_each_others_roles_and_capabilities() -> None:
    async def main() -> None:
        bus = Bus()
        a, ma = service(bus, 1, {"backend": ("src/*",)}, {"python"})
        b, mb = service(bus, 2, {"qa": ("tests/*",)}, {"gpu"})
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            ma.say(node(2), None, Status.ALIVE)
            mb.say(node(1), None, Status.ALIVE)
            await until(lambda: knows(a, node(2), ["qa"]) and knows(b, node(1), ["backend"]),
                        5.0)
            rows = {r["name"]: r for r in a.agents()}
            assert rows["node1"]["self"] and not rows["node2"]["self"]
            assert rows["node2"]["capabilities"] == ["gpu"]
            assert rows["node2"]["roles"] == {"qa": ["tests/*"]}
            assert rows["node2"]["capacity"] == 3 and rows["node2"]["status"] == "alive"
            nursery.cancel_scope.cancel()

    run(main)


def test_a_newcomer_learns_everyones_profile_well_before_the_interval() -> None:
    async def main() -> None:
        bus = Bus()
        a, ma = service(bus, 1, {"backend": ("src/*",)}, {"python"})
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await trio.sleep(100)  # long settled: its broadcasts carry no profile any more
            assert b'"roles"' not in a._gossip.sent[-1]  # type: ignore[union-attr]
            b, mb = service(bus, 2, {"qa": ("tests/*",)}, set())
            await nursery.start(b.run)
            ma.say(node(2), None, Status.ALIVE)
            mb.say(node(1), None, Status.ALIVE)
            began = trio.current_time()
            await until(lambda: knows(b, node(1), ["backend"]), 5.0)
            assert trio.current_time() - began < INTERVAL / 10
            nursery.cancel_scope.cancel()

    run(main)


def test_a_lost_profile_is_asked_for_and_sent() -> None:
    async def main() -> None:
        bus = Bus()
        a, ma = service(bus, 1, {"backend": ("src/*",)}, {"python"})
        b, mb = service(bus, 2, {"qa": ("tests/*",)}, set())
        # Every message that carries a's profile is lost until a want was sent.
        bus.drop = lambda origin, data: origin == node(1) and b'"roles"' in data and \
            not b.counts().get("sent_want")
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            ma.say(node(2), None, Status.ALIVE)
            mb.say(node(1), None, Status.ALIVE)
            await until(lambda: knows(b, node(1), ["backend"]), 10.0)
            assert b.counts()["sent_want"] >= 1 and a.counts()["wants_for_us"] >= 1
            nursery.cancel_scope.cancel()

    run(main)


def test_a_task_taken_is_broadcast_at_once() -> None:
    async def main() -> None:
        bus = Bus()
        a, _ = service(bus, 1, {}, set())
        b, _ = service(bus, 2, {}, set())
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            await trio.sleep(5)
            machine = a._tasks.machine
            machine.tasks["t1"] = SimpleNamespace(id="t1", state=State.CLAIMED, owner=node(1))
            machine.applied += 1
            began = trio.current_time()
            await until(lambda: node(1) in b.directory.entries and
                        b.directory.entries[node(1)].availability.tasks == ("t1",), 5.0)
            assert trio.current_time() - began <= 2.0
            row = next(r for r in b.agents() if r["node_id"] == a.agents()[0]["node_id"])
            assert (row["tasks_held"], row["tasks"]) == (1, ["t1"])
            nursery.cancel_scope.cancel()

    run(main)


def test_garbage_on_the_topic_is_counted_and_changes_nothing() -> None:
    async def main() -> None:
        bus = Bus()
        a, _ = service(bus, 1, {"backend": ("src/*",)}, set())
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            before = dict(a.directory.entries)
            for data in (b"junk", b'{"type":"availability","v":1}', b"x" * 70_000,
                         b'{"type":"bogus","v":1}'):
                a.on_delivery(Delivery(TOPIC, node(9), 1, 0, 0, data))
            counts = a.counts()
            assert (counts["refused_malformed"], counts["refused_too_long"],
                    counts["refused_unknown_type"]) == (2, 1, 1)
            assert a.directory.entries == before and node(9) not in a.directory.entries
            nursery.cancel_scope.cancel()

    run(main)


def test_dead_and_left_nodes_are_marked() -> None:
    async def main() -> None:
        bus = Bus()
        a, ma = service(bus, 1, {}, set())
        b, _ = service(bus, 2, {}, set())
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            ma.say(node(2), None, Status.ALIVE)
            await until(lambda: node(2) in a.directory.entries, 5.0)
            ma.say(node(2), Status.ALIVE, Status.DEAD)
            await until(lambda: a.directory.entries[node(2)].status == "dead", 5.0)
            ma.say(node(2), Status.DEAD, Status.LEFT)
            await until(lambda: a.directory.entries[node(2)].status == "left", 5.0)
            nursery.cancel_scope.cancel()

    run(main)


def test_a_flooding_origin_is_cut_to_its_budget_others_still_heard() -> None:
    async def main() -> None:
        bus = Bus()
        a, _ = service(bus, 1, {}, set())
        b, _ = service(bus, 2, {}, set())
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            garbage = Delivery(TOPIC, node(9), 1, 0, 0, b"junk")
            for _ in range(100):
                a.on_delivery(garbage)
            counts = a.counts()
            assert counts["refused_malformed"] == 20 and counts["refused_rate"] == 80
            await nursery.start(b.run)
            await until(lambda: node(2) in a.directory.entries, 5.0)
            assert a.directory.entries[node(2)].availability.name == "node2"
            nursery.cancel_scope.cancel()

    run(main)
