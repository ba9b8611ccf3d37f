"""The agents core wired back to back, no trio and no clock: what each node publishes is
handed to the others as the gossip message of its origin. A joining node is sent everyone's
roles shortly; a lost profile is asked for and sent; changes go out at once; a node's own
messages and a flooding origin's excess are not parsed."""

from __future__ import annotations

import hashlib
import json

from bzzz_edge.agents import (
    AgentsCore,
    Local,
    MemberChanged,
    Publish,
    Received,
    Rejected,
    Sample,
    Sampled,
    profile_digest,
)

INTERVAL = 30.0


def node(i: int) -> bytes:
    return hashlib.sha256(b"agents core node %d" % i).digest()


def sample(i: int, roles: dict[str, tuple[str, ...]], held: int = 0) -> Sample:
    caps = frozenset({f"cap{i}"})
    return Sample(Local(f"node{i}", 4, held, tuple(f"t{k}" for k in range(held)),
                        profile_digest(roles, caps)), roles, caps, cpus=2)


class Net:
    """Cores and what each published, delivered by ``step`` (``lose``: dropped)."""

    def __init__(self, *roles: dict[str, tuple[str, ...]]) -> None:
        self.cores = [AgentsCore(node(i), interval=INTERVAL, now=0.0) for i in range(len(roles))]
        self.roles = list(roles)
        self.seqs = [0] * len(roles)
        self.sent: list[list[bytes]] = [[] for _ in roles]
        self.lose = False

    def step(self, now: float, *, samples: bool = True) -> None:
        for i, core in enumerate(self.cores):
            if samples:
                core.handle(Sampled(sample(i, self.roles[i]), INTERVAL), now)
            for action in core.tick(now):
                assert isinstance(action, Publish)
                self.seqs[i] += 1
                self.sent[i].append(action.data)
                if self.lose:
                    continue
                for other in self.cores:
                    other.handle(Received(node(i), self.seqs[i], 0, action.data), now)

    def alive(self, a: int, b: int, now: float) -> None:
        self.cores[a].handle(MemberChanged(node(b), None, "alive"), now)
        self.cores[b].handle(MemberChanged(node(a), None, "alive"), now)

    def run(self, start: float, end: float, step: float = 0.1) -> None:
        t = start
        while t <= end:
            self.step(t)
            t = round(t + step, 6)


def knows(core: AgentsCore, other: bytes) -> bool:
    entry = core.directory.entries.get(other)
    return entry is not None and entry.profile_known


def test_a_joining_node_is_sent_the_others_roles_after_the_settle() -> None:
    net = Net({"backend": ("src/*",)}, {"qa": ("tests/*",)})
    net.lose = True  # before they know each other, nothing reaches anyone
    net.run(0.0, 100.0)
    net.lose = False
    net.alive(0, 1, 100.0)
    net.run(100.1, 100.5)
    assert knows(net.cores[0], node(1)) and knows(net.cores[1], node(0))
    assert net.cores[1].directory.entries[node(0)].roles == {"backend": ("src/*",)}
    last = json.loads(net.sent[0][-1])
    assert last["roles"] == {"backend": ["src/*"]} and last["capabilities"] == ["cap0"]


def test_without_a_join_the_roles_are_not_sent_again() -> None:
    net = Net({"backend": ("src/*",)})
    net.run(0.0, 100.0)
    assert [b'"roles"' in data for data in net.sent[0]] == [True, False, False, False]


def test_a_lost_profile_is_asked_for_once_lacking_and_answered() -> None:
    net = Net({"backend": ("src/*",)}, {"qa": ("tests/*",)})
    net.lose = True
    net.alive(0, 1, 0.0)
    net.run(0.0, 0.6)  # the first broadcasts and the newcomers' ones: all lost
    net.lose = False
    net.run(0.7, 10.0)
    assert knows(net.cores[1], node(0)) and knows(net.cores[0], node(1))
    assert net.cores[1].counts()["sent_want"] >= 1
    assert net.cores[0].counts()["wants_for_us"] >= 1


def test_tasks_taken_are_broadcast_at_once() -> None:
    net = Net({}, {})
    net.alive(0, 1, 0.0)
    net.run(0.0, 5.0)
    core = net.cores[0]
    core.handle(Sampled(sample(0, {}, held=2), INTERVAL), 5.1)
    assert core.next_deadline() <= 5.1
    net.step(5.1, samples=False)
    seen = net.cores[1].directory.entries[node(0)].availability
    assert (seen.held, seen.tasks) == (2, ("t0", "t1"))


def test_own_messages_are_ignored_and_a_floods_excess_is_not_parsed() -> None:
    core = AgentsCore(node(0), interval=INTERVAL, now=0.0)
    assert core.handle(Received(node(0), 1, 0, b"junk"), 0.0) == []
    actions = [a for _ in range(30) for a in core.handle(Received(node(5), 1, 0, b"junk"), 0.0)]
    assert all(isinstance(a, Rejected) for a in actions) and len(actions) == 30
    counts = core.counts()
    assert (counts["refused_malformed"], counts["refused_rate"]) == (20, 10)
    assert core.handle(Received(node(5), 1, 0, b"junk"), 1.0)[0].reason == "refused_malformed"


def test_an_over_long_own_profile_is_sent_without_roles_and_counted() -> None:
    roles = {f"role{i}": tuple("p" * 250 + str(k) for k in range(64)) for i in range(8)}
    core = AgentsCore(node(0), interval=INTERVAL, now=0.0)
    core.handle(Sampled(sample(0, roles), INTERVAL), 0.0)
    (action,) = core.tick(0.0)
    assert isinstance(action, Publish) and b'"roles"' not in action.data
    assert core.counts()["own_too_long"] == 1
