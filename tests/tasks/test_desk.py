"""The coordinator's claim desk: of claims racing for a task one at a time enters the log; the
others are held and answered from the applied state once the winner's claim applied, naming
no index before it; a claim that could still win is proposed in its turn; a held claim fails
retryably when the coordinator changes or the one in flight does not settle; holding is
bounded per peer. Over a stand-in for the consensus service that appends to a real task
machine (``test_retry.Log``), and the claimant's side through the real proposer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgpack
import pytest
import trio
import trio.testing

from bzzz_edge.consensus.proposals import Committed, Failure, ProposalError
from bzzz_edge.errors import BzzzError
from bzzz_edge.tasks import Profile, Reason, State
from bzzz_edge.tasks._desk import MAX_HELD_PER_PEER, ClaimDesk, ClaimRoute, Decided
from bzzz_edge.tasks._proposer import Proposer

from .test_retry import IDS, NET, PROFILE, Log, announce, claim, signed

GROUP = b"g" * 40


class _Coordinator:
    """The coordinator's consensus service: ``propose(forward=False)`` appends the command
    to ``log`` after ``delay`` seconds (the commit's round trip) and answers where it is;
    ``leading`` False answers NOT_LEADER as the core does."""

    proposal_timeout = 1.0
    group = GROUP

    def __init__(self, log: Log, *, delay: float = 0.01, node: int = 0) -> None:
        self.log = log
        self.delay = delay
        self.node_id = IDS[node].node_id
        self.leading = True
        self.stalled = False
        self.proposed: list[bytes] = []
        self._role = trio.Event()

    @property
    def leader(self) -> bytes | None:
        return self.node_id if self.leading else IDS[2].node_id

    async def propose(self, command: bytes, *, timeout: float | None = None,
                      forward: bool = True) -> Committed:
        assert not forward  # the desk proposes where it is
        if not self.leading:
            raise ProposalError(Failure.NOT_LEADER, "not leader", IDS[2].node_id)
        self.proposed.append(command)
        if self.stalled:
            await trio.sleep(min(timeout or 1.0, 0.1))
            raise ProposalError(Failure.TIMEOUT, "not committed in time; it may still commit")
        await trio.sleep(self.delay)
        self.log.apply(command)
        return Committed(self.log.machine.applied, 1, command)

    async def wait_for_leader(self, deadline: float) -> bool:
        return True

    async def next_role_change(self) -> None:
        await self._role.wait()


def _run(test: Callable[[], Awaitable[None]], clock: trio.abc.Clock | None = None) -> None:
    async def main() -> None:
        with trio.fail_after(60):
            await test()
    trio.run(main, clock=clock)


def _claim_as(by: int, task_id: str, gen: int = 0) -> bytes:
    """A claim by a node with room for every task of a test."""
    return signed("claim", by, {"id": task_id, "profile": Profile({}, frozenset(), 1000),
                                "gen": gen})


async def _race(desk: ClaimDesk, coordinator: _Coordinator, commands: list[bytes],
                ) -> list[Committed | Decided | ProposalError]:
    """Serve the first command, then (while it is in flight) the others at once, as if
    from peer i for command i; their answers."""
    answers: list[Committed | Decided | ProposalError | None] = [None] * len(commands)

    async def serve(i: int, command: bytes) -> None:
        try:
            answers[i] = await desk.serve(coordinator, IDS[i % 3].node_id + bytes([i]),
                                          command, trio.current_time() + 5.0)
        except ProposalError as exc:
            answers[i] = exc

    async with trio.open_nursery() as nursery:
        for i, command in enumerate(commands):
            nursery.start_soon(serve, i, command)
            if i == 0:
                await trio.testing.wait_all_tasks_blocked()
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def test_of_claims_racing_for_a_task_only_the_winners_enters_the_log() -> None:
    log = Log()
    log.apply(announce("t"))
    counters: dict[str, int] = {}
    desk = ClaimDesk(log.machine, counters)
    coordinator = _Coordinator(log)
    claims = [claim("t", 1), claim("t", 2), claim("t", 0), claim("t", 2)]

    async def test() -> None:
        answers = await _race(desk, coordinator, claims)
        assert coordinator.proposed == claims[:1]  # one entry in the log, not four
        assert answers[0] == Committed(2, 1, claims[0])
        assert answers[1:] == [Decided(2)] * 3  # at the winner's claim, applied
        task = log.machine.tasks["t"]
        assert task.owner == IDS[1].node_id and task.state is State.CLAIMED
        assert counters["claims_held"] == 3 and counters["claims_decided_unlogged"] == 3
        assert log.machine.counters["refused_owned"] == 0
        assert desk.held == 0 and not desk._in_flight
        # A claim made after the race, for the task as it was before it: answered at once.
        late = await desk.serve(coordinator, b"p", claim("t", 2), trio.current_time() + 1)
        assert late == Decided(2) and len(coordinator.proposed) == 1

    _run(test)


def test_a_held_claim_is_proposed_when_the_one_in_flight_was_refused() -> None:
    """The first claim is refused for its own reason (it asks for the wrong ``gen``): the
    next one goes into the log and wins; the rest lose to it."""
    log = Log()
    log.apply(announce("t"))
    desk = ClaimDesk(log.machine, {})
    coordinator = _Coordinator(log)
    claims = [claim("t", 1, gen=5), claim("t", 2), claim("t", 0)]

    async def test() -> None:
        answers = await _race(desk, coordinator, claims)
        first, second = coordinator.proposed  # the second: either held claim, in its turn
        assert first == claims[0] and second in claims[1:]
        assert log.seen[-2].reason is Reason.STALE and log.seen[-1].ok
        won = claims.index(second)
        assert answers[0] == Committed(2, 1, first) and answers[won] == Committed(3, 1, second)
        assert answers[3 - won] == Decided(3)
        assert log.machine.tasks["t"].owner == log.seen[-1].node

    _run(test)


def test_a_claim_that_could_still_win_goes_into_the_log() -> None:
    """A claim made after the claimant saw the task held (its ``gen`` counts that claim):
    it wins if the task is given up before it applies, so only the log may refuse it; and
    the holder's own repeated claim is not answered lost."""
    log = Log()
    log.apply(announce("t"), claim("t", 1))
    desk = ClaimDesk(log.machine, {})
    coordinator = _Coordinator(log)

    async def test() -> None:
        current = claim("t", 2, gen=1)
        answer = await desk.serve(coordinator, b"p", current, trio.current_time() + 5)
        assert answer == Committed(3, 1, current)
        assert log.seen[-1].reason is Reason.OWNED
        again = claim("t", 1)
        answer = await desk.serve(coordinator, b"p", again, trio.current_time() + 5)
        assert answer == Committed(4, 1, again)
        assert log.seen[-1].ok and log.seen[-1].winner == IDS[1].node_id

    _run(test)


def test_held_claims_fail_retryably_when_the_coordinator_changes_or_stalls() -> None:
    async def race(coordinator: _Coordinator, desk: ClaimDesk,
                   meanwhile: Callable[[], None]) -> list[object]:
        answers: list[object] = []

        async def serve(command: bytes) -> None:
            try:
                answers.append(await desk.serve(coordinator, b"p", command,
                                                trio.current_time() + 2.0))
            except ProposalError as exc:
                answers.append(exc.reason)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, claim("t", 1))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(serve, claim("t", 2))
            await trio.testing.wait_all_tasks_blocked()
            assert desk.held == 1
            meanwhile()
        assert desk.held == 0 and not desk._in_flight
        return answers

    def fresh(**kwargs: float) -> tuple[_Coordinator, ClaimDesk]:
        log = Log()
        log.apply(announce("t"))
        return _Coordinator(log, **kwargs), ClaimDesk(log.machine, {})

    def depose(coordinator: _Coordinator) -> Callable[[], None]:
        return lambda: setattr(coordinator, "leading", False)

    async def test() -> None:
        # Deposed while the first is in flight, which then commits (its term's leader had
        # it): the held one is decided all the same, by the committed state.
        coordinator, desk = fresh(delay=0.2)
        answers = await race(coordinator, desk, depose(coordinator))
        assert isinstance(answers[0], Committed) and answers[1] == Decided(2)
        # The first stalls (its outcome unknown) and the node is deposed: the held one,
        # proposed in its turn, is told to go to the new coordinator.
        coordinator, desk = fresh()
        coordinator.stalled = True
        answers = await race(coordinator, desk, depose(coordinator))
        assert answers == [Failure.TIMEOUT, Failure.NOT_LEADER]
        # Only stalled: both undecided. The claimants propose them again (``RETRY``).
        coordinator, desk = fresh()
        coordinator.stalled = True
        assert await race(coordinator, desk, lambda: None) == [Failure.TIMEOUT] * 2

    _run(test)


def test_holding_is_bounded_per_peer_past_that_claims_go_into_the_log() -> None:
    log = Log()
    tasks = [f"t{i}" for i in range(MAX_HELD_PER_PEER + 2)]
    log.apply(*(announce(t) for t in tasks))
    counters: dict[str, int] = {}
    desk = ClaimDesk(log.machine, counters)
    coordinator = _Coordinator(log, delay=0.1)
    # Virtual time: the first claims stay in flight until the clock is moved, however slowly
    # a loaded machine runs the rest (with real time they could commit before the greedy
    # peer's claims were all held).
    clock = trio.testing.MockClock()

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            for task_id in tasks:  # one claim in flight for each task, from another peer
                nursery.start_soon(desk.serve, coordinator, b"other", _claim_as(1, task_id),
                                   trio.current_time() + 5)
            await trio.testing.wait_all_tasks_blocked()
            for task_id in tasks:  # one peer's claims of them all: held up to the bound
                nursery.start_soon(desk.serve, coordinator, b"greedy", _claim_as(2, task_id),
                                   trio.current_time() + 5)
            await trio.testing.wait_all_tasks_blocked()
            assert desk.held == MAX_HELD_PER_PEER
            clock.jump(1.0)  # the first claims commit
        assert counters["claims_hold_full"] == 2
        assert counters["claims_decided_unlogged"] == MAX_HELD_PER_PEER
        assert len(coordinator.proposed) == len(tasks) + 2  # the two past the bound
        assert log.machine.counters["refused_owned"] == 2

    _run(test, clock)


def test_the_rpc_answers_committed_decided_or_the_error_and_refuses_malformed() -> None:
    log = Log()
    log.apply(announce("t"), claim("t", 1))
    desk = ClaimDesk(log.machine, {})
    coordinator = _Coordinator(log)

    async def test() -> None:
        body = msgpack.packb([GROUP, claim("t", 2), 1.0])
        assert msgpack.unpackb(await desk.serve_rpc(coordinator, b"p", body)) == {
            "decided": 2}
        new = claim("t", 2, gen=1)
        answer = msgpack.unpackb(await desk.serve_rpc(
            coordinator, b"p", msgpack.packb([GROUP, new, 1.0])))
        assert answer == {"index": 3, "term": 1}
        coordinator.leading = False
        answer = msgpack.unpackb(await desk.serve_rpc(
            coordinator, b"p", msgpack.packb([GROUP, claim("t", 2, gen=1), 1.0])))
        assert answer["error"] == "NOT_LEADER" and answer["leader"] == IDS[2].node_id
        for bad in (b"\xc1", msgpack.packb([b"other group", new, 1.0]),
                    msgpack.packb([GROUP, "not bytes", 1.0]), msgpack.packb([GROUP, new])):
            with pytest.raises(BzzzError):
                await desk.serve_rpc(coordinator, b"p", bad)
        assert desk._counters["malformed_claim_requests"] == 4

    _run(test)


class _Connections:
    """The transport between a claimant and the coordinator's desk, in memory: requests go
    to ``serve_rpc`` as the coordinator's RPC handler would."""

    def __init__(self, desk: ClaimDesk, coordinator: _Coordinator) -> None:
        self.desk, self.coordinator = desk, coordinator
        self.requests = 0
        self.answered = trio.Event()

    @property
    def connections(self) -> dict[bytes, object]:
        return {self.coordinator.node_id: object()}

    async def request(self, peer_id: bytes, method: str, body: bytes, *,
                      timeout: float = 5.0) -> bytes:
        assert peer_id == self.coordinator.node_id and method == "tasks.claim"
        self.requests += 1
        answer = await self.desk.serve_rpc(self.coordinator, b"claimant", body)
        self.answered.set()
        return answer


class _Follower:
    """The claimant's consensus service: the coordinator is another node."""

    proposal_timeout = 1.0
    group = GROUP

    def __init__(self, leader: bytes) -> None:
        self.node_id = IDS[2].node_id
        self.leader = leader

    async def propose(self, command: bytes, *, timeout: float | None = None,
                      forward: bool = True) -> Committed:
        raise AssertionError("claims go to the desk")

    async def wait_for_leader(self, deadline: float) -> bool:
        return True

    async def next_role_change(self) -> None:
        await trio.sleep_forever()


def test_a_claimant_told_decided_answers_lost_with_the_winner_from_its_own_state() -> None:
    """Through the proposer: the claim goes to the coordinator's desk, is answered decided,
    and the claimant answers once its own node applied that index (here: the same log)."""
    log = Log()
    log.apply(announce("t"))
    desk = ClaimDesk(log.machine, {})
    coordinator = _Coordinator(log, delay=0.1)
    transport = _Connections(desk, coordinator)
    route = ClaimRoute(_Follower(coordinator.node_id), transport, ClaimDesk(log.machine, {}))
    proposer_box: list[Proposer] = []
    mine = Log(lambda index, out: proposer_box[0].applied(out))  # the claimant's own node
    proposer = Proposer(IDS[2], NET, mine.machine, retry_for=2.0, counters={})
    proposer_box.append(proposer)
    mine.apply(announce("t"))

    async def test() -> None:
        winner = claim("t", 1)
        outcome: list[object] = []

        async def ours() -> None:
            outcome.append(await proposer.propose(route, "claim", {"id": "t",
                                                                   "profile": PROFILE,
                                                                   "gen": 0}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.serve, coordinator, b"w", winner, trio.current_time() + 5)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ours)
            await trio.testing.wait_all_tasks_blocked()
            assert not outcome  # held on the coordinator
            await transport.answered.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert not outcome  # decided at index 2, which our node has not applied yet
            mine.apply(winner)  # our node hears of the commit
        out = outcome[0]
        assert not out.ok and out.reason is Reason.OWNED  # type: ignore[attr-defined]
        assert out.winner == IDS[1].node_id  # type: ignore[attr-defined]
        assert coordinator.proposed == [winner] and transport.requests == 1

    _run(test)
