"""Claims go to the coordinator's task service, which keeps the losers of a race out of the
decision log. Uses trio.

Without this, every claim is a log entry: of N nodes racing for a task, N claims are appended,
replicated, synced and applied on every node, and N-1 of them are refused ``owned``. Instead a
claim is sent (RPC ``tasks.claim``; directly on the coordinator itself) to the task service
of the node that is the coordinator (``ClaimRoute``), whose ``ClaimDesk`` proposes it there,
without forwarding. While a claim of a task that the desk proposed is in flight (proposed, not
yet applied on the coordinator), a further claim of that task is held. Once the one in flight
settled, a held claim is answered from the coordinator's applied state when it can no longer
win: another node holds the task, and the claim was made for the task as it was before that
node's claim (its ``gen`` is below the task's ``claims``; ``claims`` only grows and a claim
wins only at its own ``gen``, so no copy of it can ever win, wherever it is). It is answered
``Decided`` at the index the task last changed, and never enters the log: the claimant waits
until its own node applied that index and answers from its state, lost to the owner
(``Proposer.settled``), so what it says is what its node holds. Any other held claim is
proposed in its turn (the one in flight was refused for its own reasons, say ineligible, or
its outcome is unknown). A claim the desk cannot read is proposed as it is: the machine
refuses it and counts why, on every node, as before.

Safe: a loser is told only once the winner's claim is committed and applied on the
coordinator. If the coordinator changes, a held claim fails with the usual retryable error
(not the leader, no quorum, timeout) and its claimant proposes it again (``_proposer``), on
the next coordinator. Bounded: at most ``MAX_HELD_PER_PEER`` claims held for one peer and
``MAX_HELD`` in all (each is also a request within the transport's per-peer limit); a claim
past that is proposed at once, as before, and the log refuses it.

A coordinator that does not serve ``tasks.claim`` (an older node) gets the claim through the
decision log's own forwarding (``ConsensusService.propose``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..consensus.forwarding import (
    MALFORMED_ANSWER,
    answer_body,
    error_answer,
    follow_coordinator,
    index,
    read_answer,
    read_request,
    request_body,
)
from ..consensus.proposals import Committed, Failure, ProposalError
from ..errors import BzzzError
from ..net import ConnectionClosed, RequestFailed
from ._commands import split
from ._machine import TaskMachine
from ._model import ACTIVE

__all__ = ["MAX_HELD", "MAX_HELD_PER_PEER", "RPC_METHOD", "ClaimDesk", "ClaimRoute", "Decided"]

RPC_METHOD = "tasks.claim"
MAX_HELD = 4096
MAX_HELD_PER_PEER = 64
_ANSWER_GRACE = 0.5  # how long past the attempt's deadline the coordinator's answer may come
# How long a coordinator that answered "unknown method" (an older node) is taken at its word:
# its claims go through the log's own forwarding meanwhile. An older node counts every unknown
# method a peer asks for and, past its flood allowance, closes the connection and bans the
# peer: asking it on every claim would get a busy node banned during a rolling upgrade.
_WITHOUT_DESK_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Decided:
    """A claim answered without entering the log: the state at ``index`` (applied on the
    coordinator) says it cannot win; its claimant answers from its own state there."""

    index: int


class Coordinator(Protocol):
    """What the desk and the route use of ``ConsensusService`` (its public API)."""

    node_id: bytes
    group: bytes | None
    proposal_timeout: float

    @property
    def leader(self) -> bytes | None: ...

    async def propose(self, command: bytes, *, timeout: float | None = None,
                      forward: bool = True) -> Committed: ...

    async def wait_for_leader(self, deadline: float) -> bool: ...

    async def next_role_change(self) -> None: ...


class Requester(Protocol):
    """What the route uses of ``net.ConnectionManager``."""

    @property
    def connections(self) -> dict[bytes, Any]: ...

    async def request(self, peer_id: bytes, method: str, body: bytes, *,
                      timeout: float = 5.0) -> bytes: ...


def _claim_of(command: bytes) -> tuple[str, bytes, int] | None:
    """(task ID, node, gen) of a claim command, or None for anything else (unchecked: the
    desk only decides from them that a claim cannot win, which is so whoever signed it)."""
    parts = split(command)
    if parts is None:
        return None
    op, node, _, _, body = parts[0]
    if op != "claim" or not isinstance(node, bytes) or not isinstance(body, dict):
        return None
    task_id, gen = body.get("id"), body.get("gen")
    if not isinstance(task_id, str) or isinstance(gen, bool) or not isinstance(gen, int):
        return None
    return task_id, node, gen


class ClaimDesk:
    """The coordinator's side (see the module docstring).

    Args:
        machine: this node's tasks, as applied; counters: where ``claims_held``,
        ``claims_decided_unlogged``, ``claims_hold_full`` and ``malformed_claim_requests``
        are counted.
    """

    def __init__(self, machine: TaskMachine, counters: dict[str, int]) -> None:
        self.machine = machine
        self._counters = counters
        for name in ("claims_held", "claims_decided_unlogged", "claims_hold_full",
                     "malformed_claim_requests"):
            counters.setdefault(name, 0)
        self._in_flight: dict[str, trio.Event] = {}  # by task: set once the claim settled
        self._held: Counter[bytes] = Counter()  # by the peer that sent them

    @property
    def held(self) -> int:
        return sum(self._held.values())

    def decided(self, task_id: str, node: bytes, gen: int) -> Decided | None:
        """Whether the applied state says the claim (by ``node``, at ``gen``) cannot win."""
        task = self.machine.tasks.get(task_id)
        if task is None or task.state not in ACTIVE or task.owner in (None, node) \
                or gen >= task.claims:
            return None
        return Decided(task.updated)

    async def serve(self, consensus: Coordinator, peer: bytes, command: bytes,
                    deadline: float) -> Committed | Decided:
        """Propose ``command`` (from ``peer``) here, or hold it and answer it decided.

        Raises:
            ProposalError: as ``ConsensusService.propose`` with ``forward=False`` (NOT_LEADER
                naming the coordinator, when this node is not); TIMEOUT when it was held
                until ``deadline`` (it was never proposed).
        """
        claim = _claim_of(command)
        if claim is not None:
            decided = await self._wait_turn(peer, *claim, deadline)
            if decided is not None:
                self._counters["claims_decided_unlogged"] += 1
                return decided
        task_id = claim[0] if claim is not None else None
        done = None  # set when this is the claim in flight of its task
        if task_id is not None and task_id not in self._in_flight:
            done = self._in_flight[task_id] = trio.Event()
        try:
            return await consensus.propose(
                command, timeout=max(0.01, deadline - trio.current_time()), forward=False)
        finally:
            if done is not None and task_id is not None:
                del self._in_flight[task_id]
                done.set()

    async def _wait_turn(self, peer: bytes, task_id: str, node: bytes, gen: int,
                         deadline: float) -> Decided | None:
        """Hold the claim while another of its task is in flight; Decided once it cannot
        win, None when it is its turn to be proposed (or it cannot be held)."""
        held = False
        try:
            while True:
                decided = self.decided(task_id, node, gen)
                if decided is not None:
                    return decided
                busy = self._in_flight.get(task_id)
                if busy is None:
                    return None
                if not held:
                    if self._held[peer] >= MAX_HELD_PER_PEER or self.held >= MAX_HELD:
                        self._counters["claims_hold_full"] += 1
                        return None
                    held = True
                    self._held[peer] += 1
                    self._counters["claims_held"] += 1
                with trio.move_on_at(deadline):
                    await busy.wait()
                if not busy.is_set():
                    raise ProposalError(Failure.TIMEOUT, "held behind another claim of the "
                                        "task that did not settle in time (not proposed)")
        finally:
            if held:
                self._held[peer] -= 1
                if not self._held[peer]:
                    del self._held[peer]

    async def serve_rpc(self, consensus: Coordinator, peer: bytes, body: bytes) -> bytes:
        """The coordinator's side of ``tasks.claim``: body ``[group, command, seconds]``;
        answers ``{"index", "term"}`` (committed), ``{"decided": index}`` or
        ``{"error": <Failure name>, "message", "leader"}``.

        Raises:
            BzzzError: a malformed request (answered as an error; counted).
        """
        try:
            command, seconds = read_request(body, group=consensus.group,
                                            limit=consensus.proposal_timeout)
        except ValueError as exc:
            self._counters["malformed_claim_requests"] += 1
            raise BzzzError(f"malformed {RPC_METHOD}: {exc}") from None
        try:
            out = await self.serve(consensus, peer, command, trio.current_time() + seconds)
        except ProposalError as exc:
            return answer_body(error_answer(exc))
        return answer_body({"decided": out.index} if isinstance(out, Decided) else
                           {"index": out.index, "term": out.term})


class ClaimRoute:
    """The claimant's side: what the proposer proposes claims to (``_proposer.Consensus``).
    Sends each to the coordinator's desk, following the coordinator as it changes (a few hops
    at most, within the attempt's deadline); the coordinator's answer lost with the
    connection is a TIMEOUT (it may have committed), never a retry here (``_proposer`` retries).
    """

    def __init__(self, consensus: Coordinator, manager: Requester, desk: ClaimDesk) -> None:
        self.consensus = consensus
        self.manager = manager
        self.desk = desk
        self._without_desk: dict[bytes, float] = {}  # coordinator -> until when (trio clock)

    @property
    def proposal_timeout(self) -> float:
        return self.consensus.proposal_timeout

    async def propose(self, command: bytes, *,
                      timeout: float | None = None) -> Committed | Decided:
        """Raises: ProposalError, as ``ConsensusService.propose``."""
        consensus = self.consensus

        async def here(deadline: float) -> Committed | Decided:
            return await self.desk.serve(consensus, consensus.node_id, command, deadline)

        async def there(leader: bytes, deadline: float) -> Committed | Decided | None:
            return await self._send(leader, command, deadline)

        return await follow_coordinator(consensus, timeout or consensus.proposal_timeout,
                                        here, there)

    async def _send(self, leader: bytes, command: bytes,
                    deadline: float) -> Committed | Decided | None:
        """The coordinator's answer; None when it is not (or no longer) the coordinator."""
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            raise ProposalError(Failure.TIMEOUT, "no time left to send it", leader)
        if leader not in self.manager.connections:
            return None  # not sent: safe to try the next coordinator
        now = trio.current_time()
        if self._without_desk.get(leader, now) > now:
            return await self.consensus.propose(command, timeout=remaining)
        body = request_body(self.consensus.group, command, remaining)
        try:
            raw = await self.manager.request(leader, RPC_METHOD, body,
                                             timeout=remaining + _ANSWER_GRACE)
        except RequestFailed as exc:
            if "unknown method" in str(exc):  # an older coordinator: through the log's own
                self._remember_without_desk(leader)
                return await self.consensus.propose(command, timeout=remaining)
            raise ProposalError(Failure.TIMEOUT, f"the coordinator did not answer ({exc}); "
                                "it may have committed it", leader) from None
        except ConnectionClosed as exc:
            raise ProposalError(Failure.TIMEOUT, f"the coordinator did not answer ({exc}); "
                                "it may have committed it", leader) from None
        return _answer(raw, command, leader)

    def _remember_without_desk(self, leader: bytes) -> None:
        now = trio.current_time()
        # Only coordinators land here, a handful over a node's life; the expired go first.
        self._without_desk = {node: until for node, until in self._without_desk.items()
                              if until > now}
        self._without_desk[leader] = now + _WITHOUT_DESK_SECONDS


def _answer(raw: bytes, command: bytes, leader: bytes) -> Committed | Decided | None:
    """Raises: ProposalError, the coordinator's error (or a malformed answer: TIMEOUT)."""
    answer = read_answer(raw, leader)
    if answer is None:
        return None
    try:
        if "decided" in answer:
            return Decided(index(answer["decided"]))
        return Committed(index(answer["index"]), index(answer["term"]), command)
    except (KeyError, ValueError):
        raise ProposalError(Failure.TIMEOUT, MALFORMED_ANSWER, leader) from None
