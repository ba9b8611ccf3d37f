"""The task state machine: every verdict, every refusal reason, exactly one winner under every
interleaving of concurrent claims, malformed commands, snapshots."""

from __future__ import annotations

import hashlib
import itertools
import random

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import DecodeError
from bzzz_edge.identity import Identity
from bzzz_edge.tasks import (
    BUILTIN_ROLES,
    LIMITS,
    Profile,
    Reason,
    State,
    TaskMachine,
    is_ours,
    sign,
)
from bzzz_edge.tasks._commands import signed_bytes

NET = b"n" * 16  # the network the machine is in


def ident(i: int) -> Identity:
    """Node ``i``'s identity (the same keys every run)."""
    return Identity(Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"task test node %d" % i).digest()))


IDS = [ident(i) for i in range(12)]


def node(i: int) -> bytes:
    return IDS[i].node_id


_SEQ = itertools.count(1)
ALL_ROLES = {name: BUILTIN_ROLES[name] for name in ("backend", "qa")}


def profile(roles: dict[str, tuple[str, ...]] | None = None, caps: tuple[str, ...] = (),
            capacity: int = 10) -> Profile:
    return Profile(ALL_ROLES if roles is None else roles, frozenset(caps), capacity)


def signed(name: str, by: int, at: float, body: dict[str, object],
           seq: int | None = None) -> bytes:
    return sign(IDS[by], NET, name, at, body, seq=next(_SEQ) if seq is None else seq)


def announce(task_id: str, by: int = 0, at: float = 1000.0, **fields: object) -> bytes:
    body: dict[str, object] = {"id": task_id, "title": f"task {task_id}", "description": "",
                               "role": "", "capabilities": [], "priority": 0, "scopes": [],
                               "deadline": None, "address": f"ucxl://a:b@p:{task_id}/*^/"}
    body.update(fields)
    return signed("announce", by, at, body)


def claim(task_id: str, by: int, prof: Profile | None = None, at: float = 1001.0,
          gen: int = 0) -> bytes:
    return signed("claim", by, at, {"id": task_id, "profile": prof or profile(), "gen": gen})


def op(name: str, task_id: str, by: int, at: float = 1002.0, **body: object) -> bytes:
    if name == "release":
        body.setdefault("gen", 1)
    return signed(name, by, at, {"id": task_id, **body})


def new_machine() -> TaskMachine:
    """A machine of network ``NET`` whose configuration's voters are nodes 0 and 10."""
    machine = TaskMachine(network_id=NET)
    machine.founders = lambda: frozenset({node(0), node(10)})
    return machine


class Log:
    """A machine fed entries with increasing indexes."""

    def __init__(self) -> None:
        self.machine = new_machine()
        self.index = 0

    def __call__(self, data: bytes):  # type: ignore[no-untyped-def]
        self.index += 1
        return self.machine.apply(self.index, data)


def test_claim_first_in_log_wins_later_claims_told_the_winner() -> None:
    log = Log()
    assert log(announce("t1")).ok
    won = log(claim("t1", 1))
    lost = log(claim("t1", 2))
    assert won.ok and won.winner == node(1) and won.task.state is State.CLAIMED
    assert not lost.ok and lost.reason is Reason.OWNED and lost.winner == node(1)
    assert log.machine.tasks["t1"].owner == node(1)


def test_claim_repeated_by_the_winner_is_still_won() -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    again = log(claim("t1", 1))
    assert again.ok and again.winner == node(1) and not again.changed
    assert log.machine.holding(node(1)) == 1


def test_full_lifecycle_progress_complete_and_history() -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    progressed = log(op("progress", "t1", 1, text="half"))
    assert progressed.ok and progressed.task.state is State.IN_PROGRESS
    done = log(op("complete", "t1", 1, result="ucxl://a:b@p:t1/*^/result"))
    assert done.ok and done.task.state is State.COMPLETED
    assert done.task.result == "ucxl://a:b@p:t1/*^/result"
    assert [h.event for h in done.task.history] == ["announced", "claimed", "progress",
                                                     "complete"]
    assert log.machine.holding(node(1)) == 0


def test_fail_finishes_the_task() -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    failed = log(op("fail", "t1", 1, text="disk full"))
    assert failed.ok and failed.task.state is State.FAILED
    assert failed.task.history[-1].text == "disk full"


@pytest.mark.parametrize("action", ["claim", "progress", "complete", "fail"])
def test_unknown_task_refused(action: str) -> None:
    log = Log()
    data = claim("nope", 1) if action == "claim" else op(
        action, "nope", 1, **({"result": None} if action == "complete" else {"text": "x"}))
    out = log(data)
    assert not out.ok and out.reason is Reason.UNKNOWN_TASK
    assert log.machine.counters["refused_unknown_task"] == 1


@pytest.mark.parametrize("finish", ["complete", "fail"])
def test_claim_of_a_finished_task_refused(finish: str) -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    log(op(finish, "t1", 1, **({"result": None} if finish == "complete" else {"text": "x"})))
    out = log(claim("t1", 2))
    assert not out.ok and out.reason is Reason.FINISHED


def test_duplicate_announce_refused() -> None:
    log = Log()
    log(announce("t1"))
    out = log(announce("t1", by=3))
    assert not out.ok and out.reason is Reason.DUPLICATE
    assert log.machine.tasks["t1"].announced_by == node(0)


def test_announce_refused_when_full() -> None:
    log = Log()
    log.machine.limits = type(LIMITS)(max_tasks=1)
    log(announce("t1"))
    out = log(announce("t2"))
    assert not out.ok and out.reason is Reason.FULL and "t2" not in log.machine.tasks


def test_claim_refused_for_missing_role() -> None:
    log = Log()
    log(announce("t1", role="frontend"))
    out = log(claim("t1", 1))
    assert not out.ok and out.reason is Reason.ROLE and "frontend" in out.text
    assert log.machine.tasks["t1"].state is State.ANNOUNCED


def test_claim_refused_for_missing_capability() -> None:
    log = Log()
    log(announce("t1", capabilities=["gpu", "rust"]))
    out = log(claim("t1", 1, profile(caps=("rust",))))
    assert not out.ok and out.reason is Reason.CAPABILITIES and "gpu" in out.text
    assert log(claim("t1", 1, profile(caps=("gpu", "rust", "go")))).ok


def test_claim_refused_over_capacity() -> None:
    log = Log()
    log(announce("t1"))
    log(announce("t2"))
    assert log(claim("t1", 1, profile(capacity=1))).ok
    out = log(claim("t2", 1, profile(capacity=1)))
    assert not out.ok and out.reason is Reason.CAPACITY
    log(op("complete", "t1", 1, result=None))
    assert log(claim("t2", 1, profile(capacity=1))).ok


def test_claim_refused_outside_scope() -> None:
    log = Log()
    log(announce("t1", role="qa", scopes=["tests/unit/*", "src/app.py"]))
    out = log(claim("t1", 1))
    assert not out.ok and out.reason is Reason.SCOPE and "src/app.py" in out.text
    log(announce("t2", role="qa", scopes=["tests/unit/*"]))
    assert log(claim("t2", 1)).ok


def test_scope_without_role_is_checked_against_every_role() -> None:
    log = Log()
    log(announce("t1", scopes=["src/app.py", "tests/x.py"]))
    assert not log(claim("t1", 1, profile(roles={"qa": BUILTIN_ROLES["qa"]}))).ok
    assert log(claim("t1", 1)).ok


@pytest.mark.parametrize("action", ["progress", "complete", "fail"])
def test_not_owner_refused(action: str) -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    out = log(op(action, "t1", 2, **({"result": None} if action == "complete" else
                                     {"text": "x"})))
    assert not out.ok and out.reason is Reason.NOT_OWNER and out.winner == node(1)


def test_progress_of_an_unclaimed_task_refused() -> None:
    log = Log()
    log(announce("t1"))
    out = log(op("progress", "t1", 1, text="x"))
    assert not out.ok and out.reason is Reason.NOT_CLAIMED


def test_release_given_up_by_owner_then_claimable_again() -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    out = log(op("release", "t1", 1, owner=node(1), why="given_up"))
    assert out.ok and out.task.state is State.REASSIGNED and out.task.owner is None
    assert log.machine.holding(node(1)) == 0
    assert log(claim("t1", 2, gen=1)).winner == node(2)


def test_release_given_up_by_another_node_refused() -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    out = log(op("release", "t1", 2, owner=node(1), why="given_up"))
    assert not out.ok and out.reason is Reason.NOT_OWNER


def test_stale_release_refused() -> None:
    """A coordinator's release decided against a former owner does not touch the new one."""
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    assert log(op("release", "t1", 0, owner=node(1), why="owner_dead")).ok
    log(claim("t1", 2, gen=1))
    out = log(op("release", "t1", 0, owner=node(1), why="owner_dead"))
    assert not out.ok and out.reason is Reason.STALE
    assert log.machine.tasks["t1"].owner == node(2)


def test_release_of_an_unclaimed_task_refused() -> None:
    log = Log()
    log(announce("t1"))
    out = log(op("release", "t1", 0, owner=node(1), why="deadline"))
    assert not out.ok and out.reason is Reason.NOT_CLAIMED


def test_deadline_runs_from_each_claim() -> None:
    log = Log()
    log(announce("t1", deadline=30))
    log(claim("t1", 1, at=5000.0))
    assert log.machine.tasks["t1"].due_at() == 5030.0
    early = log(op("release", "t1", 0, at=5029.0, owner=node(1), why="deadline"))
    assert not early.ok and early.reason is Reason.STALE
    assert log(op("release", "t1", 0, at=5030.0, owner=node(1), why="deadline")).ok
    assert log.machine.tasks["t1"].due_at() is None
    log(claim("t1", 2, at=6000.0, gen=1))
    assert log.machine.tasks["t1"].due_at() == 6030.0


@pytest.mark.parametrize("field,value", [
    ("title", "x" * (LIMITS.title + 1)),
    ("description", "x" * (LIMITS.description + 1)),
    ("role", "r" * (LIMITS.role + 1)),
    ("capabilities", ["c"] * (LIMITS.capabilities + 1)),
    ("capabilities", ["c" * (LIMITS.capability + 1)]),
    ("scopes", ["s" * (LIMITS.scope + 1)]),
    ("address", "u" * (LIMITS.address + 1)),
    ("priority", LIMITS.max_priority + 1),
    ("deadline", LIMITS.max_deadline * 2),
])
def test_over_long_fields_refused_and_counted(field: str, value: object) -> None:
    log = Log()
    out = log(announce("t1", **{field: value}))
    assert not out.ok and out.reason is Reason.TOO_LONG
    assert log.machine.counters["refused_too_long"] == 1 and not log.machine.tasks


def test_over_long_progress_text_refused() -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    out = log(op("progress", "t1", 1, text="x" * (LIMITS.text + 1)))
    assert not out.ok and out.reason is Reason.TOO_LONG
    assert log.machine.tasks["t1"].state is State.CLAIMED


def raw(op_name: str, by: int, at: object, body: object, seq: object = 7) -> bytes:
    """A command signed properly around whatever fields it is given."""
    inner = msgpack.packb([op_name, node(by), at, seq, body], use_bin_type=True)
    sig = IDS[by].private_key.sign(signed_bytes(NET, inner))
    return msgpack.packb(["bzzz.task", 2, inner, IDS[by].public_key_bytes, sig],
                         use_bin_type=True)


_PROFILE = profile().encode()
MALFORMED = [
    b"\x95\xa9bzzz.task",  # truncated
    msgpack.packb(["bzzz.task", 1, "claim", node(1), 1.0, {"id": "t1"}]),  # v1: unsigned
    msgpack.packb(["bzzz.task", 3, b"", b"k" * 32, b"s" * 64]),  # unknown version
    msgpack.packb(["bzzz.task", 2, b"\x93\x01\x02\x03", b"k" * 32, b"s" * 64]),  # inner
    msgpack.packb(["bzzz.task", 2, "not bytes", b"k" * 32, b"s" * 64]),
    raw("steal", 1, 1.0, {"id": "t1"}),  # unknown op
    raw("claim", 1, "now", {"id": "t1", "profile": _PROFILE, "gen": 0}),  # bad time
    raw("claim", 1, 1.0, {"id": "t1", "profile": _PROFILE, "gen": 0}, seq=-1),  # bad seq
    raw("claim", 1, 1.0, []),  # body not a map
    raw("claim", 1, 1.0, {"id": "t1", "gen": 0}),  # no profile
    raw("claim", 1, 1.0, {"id": "t1", "profile": _PROFILE}),  # no gen
    raw("claim", 1, 1.0, {"id": "t1", "profile": _PROFILE, "gen": -1}),
    raw("claim", 1, 1.0, {"id": "t1", "profile": {"roles": [], "capabilities": [],
                                                  "capacity": 1}, "gen": 0}),
    raw("announce", 1, 1.0, {"id": 5, "title": "x"}),
    raw("release", 1, 1.0, {"id": "t1", "owner": node(1), "why": "because", "gen": 1}),
    raw("progress", 1, float("nan"), {"id": "t1", "text": ""}),
    raw("complete", 1, 1.0, {"id": "t1", "result": 7}),
    raw("expire", 0, 1.0, {"before": "yesterday"}),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_commands_refused_counted_and_harmless(data: bytes) -> None:
    log = Log()
    log(announce("t1"))
    log(claim("t1", 1))
    before = dict(log.machine.tasks)
    out = log(data)
    assert out is not None and not out.ok and out.reason is Reason.MALFORMED
    assert log.machine.counters["refused_malformed"] == 1
    assert log.machine.tasks == before and log.machine.applied == log.index


def test_entries_of_other_components_are_ignored() -> None:
    log = Log()
    assert not is_ours(b"bench-123-1-1-....")
    assert log(b"bench-123-1-1-....") is None
    assert log(msgpack.packb(["other", 1])) is None
    assert log.machine.applied == 2 and not log.machine.counters


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    machine = new_machine()
    machine.apply(1, b"\x96\xa9bzzz.task" + data)
    machine.apply(2, data)
    assert machine.applied == 2 and not machine.tasks


def test_an_index_applied_already_is_skipped() -> None:
    machine = new_machine()
    machine.apply(5, announce("t1"))
    assert machine.apply(5, claim("t1", 1)) is None
    assert machine.apply(3, claim("t1", 1)) is None
    assert machine.tasks["t1"].owner is None


def _run(order: list[bytes]) -> TaskMachine:
    machine = new_machine()
    for index, data in enumerate(order, 1):
        machine.apply(index, data)
    return machine


def test_exactly_one_winner_under_every_interleaving() -> None:
    """Three claimants for two tasks, the claims in every order the log could hold them:
    one owner per task, the first claim in the log, and every loser told that owner."""
    claims = [claim(t, n) for t in ("a", "b") for n in (1, 2, 3)]
    for order in itertools.permutations(claims):
        machine = new_machine()
        machine.apply(1, announce("a"))
        machine.apply(2, announce("b"))
        outcomes = [machine.apply(i, d) for i, d in enumerate(order, 3)]
        for task_id in ("a", "b"):
            mine = [o for o in outcomes if o is not None and o.task_id == task_id]
            winners = [o for o in mine if o.ok]
            assert len(winners) == 1 and winners[0] is mine[0]
            assert all(o.reason is Reason.OWNED and o.winner == winners[0].node
                       for o in mine[1:])
            assert machine.tasks[task_id].owner == winners[0].node


@given(st.randoms(use_true_random=False), st.integers(2, 10), st.integers(1, 8))
@settings(max_examples=200, deadline=None)
def test_random_concurrent_claims_one_winner_and_replicas_agree(rng: random.Random,
                                                              nodes: int, tasks: int) -> None:
    """Many claimants (some with capacity 1), releases and completions mixed in: every
    replica applying the same log agrees, and no task ever has two owners."""
    log = [announce(f"t{t}") for t in range(tasks)]
    for _ in range(nodes * tasks * 2):
        t, n = f"t{rng.randrange(tasks)}", rng.randrange(nodes)
        roll = rng.random()
        gen = rng.choice([0, 0, 1, 2])
        if roll < 0.7:
            log.append(claim(t, n, profile(capacity=rng.choice([1, 3, 100])), gen=gen))
        elif roll < 0.85:
            log.append(op("release", t, n, owner=node(n), why="given_up", gen=gen + 1))
        else:
            log.append(op("complete", t, n, result=None))
    replicas = [_run(log) for _ in range(2)]
    assert replicas[0].snapshot() == replicas[1].snapshot()
    held: dict[bytes, int] = {}
    for task in replicas[0].tasks.values():
        if task.state in (State.CLAIMED, State.IN_PROGRESS):
            assert task.owner is not None
            held[task.owner] = held.get(task.owner, 0) + 1
        claims_won = [h for h in task.history if h.event == "claimed"]
        releases = [h for h in task.history if h.event == "released"]
        assert len(claims_won) - len(releases) <= 1
    assert held == {n: replicas[0].holding(n) for n in held}


def test_snapshot_restores_the_same_state() -> None:
    log = Log()
    log(announce("t1", deadline=5, scopes=["src/*"], capabilities=["py"]))
    log(announce("t2"))
    log(claim("t1", 1, profile(caps=("py",))))
    log(op("progress", "t1", 1, text="half"))
    copy = new_machine()
    copy.restore(log.index, log.machine.snapshot())
    assert copy.tasks == log.machine.tasks and copy.applied == log.index
    assert copy.holding(node(1)) == 1
    assert copy.take_changes()[0] is True
    assert copy.apply(log.index, claim("t2", 2)) is None  # already applied
    assert copy.apply(log.index + 1, claim("t2", 2)).ok


def test_snapshot_of_another_index_or_garbage_refused() -> None:
    machine = new_machine()
    machine.apply(3, announce("t1"))
    with pytest.raises(DecodeError):
        new_machine().restore(4, machine.snapshot())
    with pytest.raises(DecodeError):
        new_machine().restore(1, b"\x01\x02")


def test_take_changes_reports_each_changed_task_once() -> None:
    log = Log()
    log(announce("t1"))
    log(announce("t2"))
    log(claim("t1", 1))
    replaced, changed = log.machine.take_changes()
    assert not replaced and sorted(t.id for t in changed) == ["t1", "t2"]
    assert log.machine.take_changes() == (False, [])


def test_only_what_the_store_keeps_makes_the_machine_unsaved() -> None:
    """Entries that change nothing (other components' commands, refusals) ask for no write:
    they apply again, changing nothing, after a restart. Tasks and meta do."""
    log = Log()
    assert log(b"not a task command") is None
    assert log(claim("nope", 1)).ok is False  # refused: no such task
    assert not log.machine.unsaved
    log(announce("t1"))
    assert log.machine.unsaved
    log.machine.take_changes()
    assert not log.machine.unsaved
    log.machine.configure(log.index + 1, frozenset({node(0)}))
    assert log.machine.unsaved
    log.machine.take_changes()
    log.machine.note_leader(log.index + 1, 2, node(0))
    assert log.machine.unsaved


def test_a_rule_that_trips_refuses_the_command_and_the_machine_goes_on(monkeypatch) -> None:
    import bzzz_edge.tasks._machine as machine_module

    def broken(*args: object) -> None:
        raise KeyError("bug")

    log = Log()
    log(announce("t1"))
    monkeypatch.setattr(machine_module, "check_eligible", broken)
    out = log(claim("t1", 1))
    assert not out.ok and out.reason is Reason.MALFORMED and out.task_id == "t1"
    assert log.machine.counters["apply_errors"] == 1
    monkeypatch.undo()
    assert log(claim("t1", 1)).ok


def test_a_claim_of_a_task_another_node_holds_is_refused_owned_before_it_is_decoded() -> None:
    """Of N claims racing for a task, N-1 find it held: they are refused ``owned`` on every
    node from their op, node and task alone, whatever else they hold (here a profile over its
    bounds, which a claim of a free task is refused for)."""
    log = Log()
    log(announce("t1"))
    log(announce("t2"))
    assert log(claim("t1", 1)).ok
    too_many = profile(roles={f"r{i}": ("*",) for i in range(LIMITS.roles + 1)})
    lost = log(claim("t1", 2, too_many))
    assert not lost.ok and lost.reason is Reason.OWNED and lost.winner == node(1)
    assert lost.node == node(2) and lost.seq > 0
    refused = log(claim("t2", 2, too_many))
    assert not refused.ok and refused.reason is Reason.TOO_LONG
    assert log.machine.counters["verified"] == 3  # the announces and the winning claim
