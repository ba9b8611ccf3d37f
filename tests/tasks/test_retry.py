"""A command proposed again after a coordinator's failure: the same bytes applied twice change
nothing the second time, the proposer answers with the first application's outcome (won, or
lost with the winner), never makes a second winner, and gives up with NO_QUORUM when no
coordinator takes the command before its deadline."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.consensus import Entry, EntryKind
from bzzz_edge.consensus.proposals import Committed, Failure, ProposalError
from bzzz_edge.identity import Identity
from bzzz_edge.tasks import Profile, Reason, State, TaskMachine, sign
from bzzz_edge.tasks._decisions import TaskDecisionLog
from bzzz_edge.tasks._machine import Outcome
from bzzz_edge.tasks._proposer import Proposer
from bzzz_edge.tasks._retry import Applications, answer, from_state, retry_window

NET = b"r" * 16
IDS = [Identity(Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"retry test node %d" % i).digest())) for i in range(3)]
_SEQ = itertools.count(1)
PROFILE = Profile({}, frozenset(), 10)


def signed(op: str, by: int, body: dict[str, object], at: float = 1000.0) -> bytes:
    return sign(IDS[by], NET, op, at, body, seq=next(_SEQ))


def announce(task_id: str) -> bytes:
    return signed("announce", 0, {"id": task_id, "title": task_id, "description": "",
                                  "role": "", "capabilities": [], "priority": 0,
                                  "scopes": [], "deadline": None,
                                  "address": f"ucxl://a:b@p:{task_id}/*^/"})


def claim(task_id: str, by: int, gen: int = 0) -> bytes:
    return signed("claim", by, {"id": task_id, "profile": PROFILE, "gen": gen})


class Log:
    """A decision log applied in order, as every node applies it."""

    def __init__(self, on_applied: Callable[[int, Outcome | None], None] | None = None,
                 ) -> None:
        self.machine = TaskMachine(network_id=NET)
        self.seen: list[Outcome] = []

        def applied(index: int, out: Outcome | None) -> None:
            if out is not None:
                self.seen.append(out)
            if on_applied is not None:
                on_applied(index, out)

        self.log = TaskDecisionLog(self.machine, applied)

    def apply(self, *commands: bytes) -> list[Outcome]:
        outcomes = []
        for data in commands:
            self.log.apply(Entry(1, self.machine.applied + 1, EntryKind.COMMAND, data))
            outcomes.append(self.seen[-1])
        return outcomes


# --- the core: a copy changes nothing, the first application is the answer ----------------

def _copies() -> list[tuple[str, list[bytes], bytes, Reason | None]]:
    """(name, the commands before, the command applied twice, the copy's verdict)."""
    held = [announce("t"), claim("t", 1)]
    return [
        ("announce", [], announce("t"), Reason.DUPLICATE),
        ("claim won", [announce("t")], claim("t", 1), None),  # ok, unchanged
        ("claim lost", held, claim("t", 2), Reason.OWNED),
        ("progress", held, signed("progress", 1, {"id": "t", "text": "half"}), Reason.REPLAY),
        ("complete", held, signed("complete", 1, {"id": "t", "result": None}),
         Reason.FINISHED),
        ("fail", held, signed("fail", 1, {"id": "t", "text": "no"}), Reason.FINISHED),
        ("give up", held, signed("release", 1, {"id": "t", "owner": IDS[1].node_id,
                                                "why": "given_up", "gen": 1}),
         Reason.NOT_CLAIMED),
    ]


@pytest.mark.parametrize(("before", "command", "verdict"),
                         [c[1:] for c in _copies()], ids=[c[0] for c in _copies()])
def test_a_command_applied_twice_changes_nothing_the_second_time_and_the_first_answers(
        before: list[bytes], command: bytes, verdict: Reason | None) -> None:
    log = Log()
    log.apply(*before)
    first, = log.apply(command)
    state = dict(log.machine.tasks)
    copy, = log.apply(command)
    assert {k: (t.state, t.owner, t.claims, t.seq) for k, t in log.machine.tasks.items()} == \
        {k: (t.state, t.owner, t.claims, t.seq) for k, t in state.items()}
    assert copy.reason is verdict and copy.ok is (verdict is None)
    assert copy.seq == first.seq != 0
    assert answer([first, copy]) is first


def test_a_claim_copy_never_makes_a_second_winner_even_after_a_release() -> None:
    log = Log()
    won = claim("t", 1)
    first, = log.apply(announce("t"), won)[1:]
    log.apply(signed("release", 1, {"id": "t", "owner": IDS[1].node_id, "why": "given_up",
                                    "gen": 1}))
    other, copy = log.apply(claim("t", 2, gen=1), won)
    assert first.ok and other.ok and log.machine.tasks["t"].owner == IDS[2].node_id
    assert copy.reason is Reason.OWNED and copy.winner == IDS[2].node_id
    assert answer([first, copy]) is first  # our claim won; the task moved on since


def test_a_refused_claim_whose_copy_wins_is_answered_won_as_the_state_says() -> None:
    log = Log()
    mine = claim("t", 2, gen=1)  # node 2 saw node 1's claim decided
    first, = log.apply(announce("t"), claim("t", 1), mine)[2:]
    log.apply(signed("release", 1, {"id": "t", "owner": IDS[1].node_id, "why": "given_up",
                                    "gen": 1}))
    copy, = log.apply(mine)
    assert first.reason is Reason.OWNED and copy.ok
    assert log.machine.tasks["t"].owner == IDS[2].node_id
    assert answer([first, copy]) is copy


def test_applications_keep_only_the_expected_command_of_this_node() -> None:
    apps = Applications()
    log = Log()
    mine = claim("t", 1)
    first, = log.apply(announce("t"), mine)[1:]
    apps.expect(first.seq, "claim", "t")
    apps.add(first)
    # Another command naming the same seq (another task, or forged): not ours.
    apps.add(Outcome(9, "claim", "other", IDS[1].node_id, True, seq=first.seq))
    apps.add(Outcome(9, "progress", "t", IDS[1].node_id, True, seq=first.seq))
    assert apps.seen(first.seq) == [first] and len(apps) == 1
    apps.forget(first.seq)
    assert apps.seen(first.seq) == [] and len(apps) == 0


def test_from_state_answers_a_command_whose_first_application_a_snapshot_holds() -> None:
    me, other = IDS[1].node_id, IDS[2].node_id
    log = Log()
    log.apply(announce("t"), claim("t", 1))
    task = log.machine.tasks["t"]
    won = from_state(task, index=5, op="claim", task_id="t", node=me, seq=7)
    assert won.ok and won.winner == me
    lost = from_state(task, index=5, op="claim", task_id="t", node=other, seq=7)
    assert lost.reason is Reason.OWNED and lost.winner == me
    done = log.apply(signed("complete", 1, {"id": "t", "result": None}))[0]
    copy = log.apply(signed("complete", 1, {"id": "t", "result": None}))[0]
    assert copy.reason is Reason.FINISHED
    finished = log.machine.tasks["t"]
    assert done.ok and finished.state is State.COMPLETED
    ok = from_state(finished, index=9, op="complete", task_id="t", node=me, seq=8,
                    refused=copy)
    assert ok.ok and ok.task is finished
    # Refused as the copy of another node's command would be: the refusal stands.
    assert from_state(finished, index=9, op="complete", task_id="t", node=other, seq=8,
                      refused=copy) is copy
    assert from_state(finished, index=9, op="fail", task_id="t", node=me, seq=8,
                      refused=copy) is copy


def test_the_retry_window_covers_two_elections_and_a_commit() -> None:
    assert retry_window(2.0) == 5.0
    assert retry_window(0.12) > 2 * 0.12


# --- the proposer, over a stand-in for the consensus service ------------------------------

class _Consensus:
    """Plays the decision log's side: each attempt of ``propose`` runs the next script
    step, which applies entries (as this node would apply the commits it hears of) and
    returns the index its copy committed at, or raises."""

    proposal_timeout = 1.0

    def __init__(self, log: Log, steps: list[Callable[[bytes], int]]) -> None:
        self.log = log
        self.steps = steps
        self.attempts: list[bytes] = []

    async def propose(self, command: bytes, *, timeout: float | None = None) -> Committed:
        self.attempts.append(command)
        step = self.steps[min(len(self.attempts), len(self.steps)) - 1]
        await trio.sleep(min(timeout or 0.0, 0.2))  # the attempt takes some time
        index = step(command)
        return Committed(index, 1, command)


def _proposer(log: Log, by: int = 1, counters: dict[str, int] | None = None) -> Proposer:
    return Proposer(IDS[by], NET, log.machine, retry_for=2.0,
                    counters={} if counters is None else counters)


def _run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(120):
            await test()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_claim_committed_before_the_coordinator_died_is_answered_won_once() -> None:
    proposer_box: list[Proposer] = []
    log = Log(lambda index, out: proposer_box[0].applied(out))
    counters: dict[str, int] = {}
    proposer = _proposer(log, counters=counters)
    proposer_box.append(proposer)
    log.apply(announce("t"))

    def died(command: bytes) -> int:  # committed, but the answer never came
        raise ProposalError(Failure.TIMEOUT, "the coordinator did not answer")

    def new_coordinator(command: bytes) -> int:
        # The new coordinator's log: the first attempt, another node's claim, our copy.
        log.apply(command, claim("t", 2), command)
        return log.machine.applied

    consensus = _Consensus(log, [died, new_coordinator])

    async def test() -> None:
        out = await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                          "gen": 0})
        assert out.ok and out.changed and out.winner == IDS[1].node_id
        assert out.index == 2  # the first application, not the copy at 4
        assert consensus.attempts[0] == consensus.attempts[1]  # the same command again
        task = log.machine.tasks["t"]
        assert task.owner == IDS[1].node_id and task.claims == 1
        assert [o.reason for o in log.seen[2:]] == [Reason.OWNED, None]
        assert len(proposer.applications) == 0  # forgotten once answered
        assert counters == {"command_retries": 1, "commands_undecided": 0,
                            "command_copies": 1, "answered_on_apply": 0}

    _run(test)


def test_a_lost_claim_retried_is_answered_lost_with_the_winner() -> None:
    proposer_box: list[Proposer] = []
    log = Log(lambda index, out: proposer_box[0].applied(out))
    proposer = _proposer(log, by=2)
    proposer_box.append(proposer)
    log.apply(announce("t"))
    def no_leader(command: bytes) -> int:
        raise ProposalError(Failure.NO_QUORUM, "no coordinator elected")

    def new_coordinator(command: bytes) -> int:  # node 1 won first; ours is in twice
        log.apply(claim("t", 1), command, command)
        return log.machine.applied

    consensus = _Consensus(log, [no_leader, new_coordinator])

    async def test() -> None:
        out = await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                          "gen": 0})
        assert not out.ok and out.reason is Reason.OWNED and out.winner == IDS[1].node_id
        assert out.index == 3 and len(consensus.attempts) == 2

    _run(test)


def test_an_earlier_attempt_applied_meanwhile_answers_without_another_attempt() -> None:
    proposer_box: list[Proposer] = []
    log = Log(lambda index, out: proposer_box[0].applied(out))
    proposer = _proposer(log)
    proposer_box.append(proposer)
    log.apply(announce("t"))

    def applied_then_lost(command: bytes) -> int:  # the new coordinator committed it
        log.apply(command)
        raise ProposalError(Failure.TIMEOUT, "the coordinator did not answer")

    consensus = _Consensus(log, [applied_then_lost])

    async def test() -> None:
        out = await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                          "gen": 0})
        assert out.ok and out.index == 2 and len(consensus.attempts) == 1

    _run(test)


def test_no_coordinator_before_the_deadline_fails_with_no_quorum_and_says_so() -> None:
    log = Log()
    proposer = _proposer(log)
    log.apply(announce("t"))

    def nobody(command: bytes) -> int:
        raise ProposalError(Failure.NO_QUORUM, "no coordinator elected")

    consensus = _Consensus(log, [nobody])

    async def test() -> None:
        began = trio.current_time()
        with pytest.raises(ProposalError) as caught:
            await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                        "gen": 0})
        assert caught.value.reason is Failure.NO_QUORUM
        assert "claim not decided: proposed" in str(caught.value)
        attempts = len(consensus.attempts)
        assert attempts > 2 and len(set(consensus.attempts)) == 1
        # Proposed until the proposal timeout plus the retry window, no longer.
        assert trio.current_time() - began >= 1.0 + 2.0
        assert trio.current_time() - began < 1.0 + 2.0 + 0.5 + 0.2
        assert "t" in log.machine.tasks and log.machine.tasks["t"].owner is None

    _run(test)


@pytest.mark.parametrize("reason", [Failure.REFUSED])
def test_a_refused_proposal_is_not_proposed_again(reason: Failure) -> None:
    log = Log()
    proposer = _proposer(log)

    def refused(command: bytes) -> int:
        raise ProposalError(reason, "command too large")

    consensus = _Consensus(log, [refused])

    async def test() -> None:
        with pytest.raises(ProposalError) as caught:
            await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                        "gen": 0})
        assert caught.value.reason is reason and len(consensus.attempts) == 1

    _run(test)


def test_the_coordinators_own_commands_are_not_proposed_again() -> None:
    log = Log()
    proposer = _proposer(log)

    def died(command: bytes) -> int:
        raise ProposalError(Failure.TIMEOUT, "the coordinator did not answer")

    consensus = _Consensus(log, [died])

    async def test() -> None:
        with pytest.raises(ProposalError):
            await proposer.propose(consensus, "expire", {"before": 10.0}, retry=False)
        assert len(consensus.attempts) == 1

    _run(test)


class _SlowAnswer:
    """The coordinator commits at once (this node applies the entry, from its commit notice)
    but its answer to the attempt does not come before the attempt's timeout."""

    proposal_timeout = 1.0

    def __init__(self, log: Log, apply: Callable[[bytes], None]) -> None:
        self.log = log
        self.apply = apply
        self.waiting = False

    async def propose(self, command: bytes, *, timeout: float | None = None) -> Committed:
        self.apply(command)
        self.waiting = True
        await trio.sleep(timeout or self.proposal_timeout)
        raise ProposalError(Failure.TIMEOUT, "not committed in time; it may still commit")


def test_a_command_applied_here_and_accepted_answers_without_the_coordinators_answer(
        ) -> None:
    proposer_box: list[Proposer] = []
    log = Log(lambda index, out: proposer_box[0].applied(out))
    counters: dict[str, int] = {}
    proposer = _proposer(log, counters=counters)
    proposer_box.append(proposer)
    log.apply(announce("t"))
    consensus = _SlowAnswer(log, lambda command: log.apply(command))

    async def test() -> None:
        with trio.fail_after(0.5):  # well before the attempt's timeout
            out = await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                              "gen": 0})
        assert out.ok and out.index == 2 and out.winner == IDS[1].node_id
        assert len(proposer.applications) == 0 and not proposer._waiting
        assert counters["answered_on_apply"] == 1

    _run(test)


def test_a_command_applied_here_and_refused_still_waits_for_its_attempts_answer() -> None:
    """Refused (another node holds the task): a copy still in flight could change that
    (``_retry``), so only the attempt's answer, or its deadline, settles it."""
    proposer_box: list[Proposer] = []
    log = Log(lambda index, out: proposer_box[0].applied(out))
    proposer = _proposer(log, by=2)
    proposer_box.append(proposer)
    log.apply(announce("t"), claim("t", 1))
    consensus = _SlowAnswer(log, lambda command: log.apply(command))

    async def test() -> None:
        began = trio.current_time()
        out = await proposer.propose(consensus, "claim", {"id": "t", "profile": PROFILE,
                                                          "gen": 1}, retry=False)
        assert trio.current_time() - began >= 1.0  # not answered at the refusal's apply
        assert not out.ok and out.reason is Reason.OWNED and out.winner == IDS[1].node_id

    _run(test)
