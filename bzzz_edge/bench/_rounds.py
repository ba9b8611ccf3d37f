"""The benchmark's rounds: announce a task, claim it, wait until every node knows the winner.
Uses trio.

A round starts when the announce request leaves and ends when the claim is settled (every
claimant has its answer) and every watched node's stream of ``bzzz/coordination/v1`` has
delivered the ``task_claimed`` event naming the winner: that is how a node tells its local
subscribers who won, and the benchmark holds one such stream open to every node, so nothing is
polled. Each node's API is then read once, outside the timing, to check that every node's task
state names the same owner (a node whose state machine had not applied the claim yet when its
event arrived is counted as lagging, not hidden). Then the winner completes the task, also
outside the timing, so no node fills its capacity, and the next round starts once every
node's stream delivered the ``task_completed`` event: a round is measured alone, not while
the cluster still works through the last one (its completion's commit and events).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import BzzzError
from ._http import ApiConnection, event_stream

__all__ = ["BenchError", "RoundResult", "Rounds", "Target"]

TOPIC = "bzzz/coordination/v1"
_UNDECIDED = {503, 504}  # no quorum, not leader, timeout: the claim may be retried
_Known = tuple[float, str | None]  # when a node's event arrived, the owner it names
_WATCHED = ("task_claimed", "task_completed")
_WATCHED_BYTES = tuple(w.encode() for w in _WATCHED)


class BenchError(BzzzError):
    """A round that went wrong: a refusal, two winners, nodes that disagree, a timeout."""


@dataclass
class Target:
    """One node the benchmark talks to."""

    index: int
    api: str
    node_id: str = ""  # the display ID, as the API prints it
    pid: int | None = None
    alive: bool = True
    conn: ApiConnection = field(init=False)
    subscribed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.conn = ApiConnection(self.api)

    @property
    def name(self) -> str:
        return f"node{self.index}"

    def is_node(self, node_id: str | None) -> bool:
        return node_id is not None and node_id != "" and node_id == self.node_id


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One round's times (milliseconds from the announce request) and checks."""

    total_ms: float
    announce_ms: float
    settled_ms: float  # the last claimant's answer
    known_ms: float  # the last node's event
    winner: str
    claimants: int
    lagging: int = 0  # nodes whose API did not name the owner yet when the round ended
    retries: int = 0


class Rounds:
    """The rounds of one benchmark run on ``targets`` (see the module docstring).

    Args:
        targets: the nodes; token: their API token; timeout: seconds a round may take.
    """

    def __init__(self, targets: list[Target], *, token: str = "", timeout: float = 30.0) -> None:
        if not targets:
            raise BzzzError("no nodes to benchmark")
        self.targets = targets
        self.token = token
        for t in targets:
            t.conn.token = token
        self.timeout = timeout
        self._known: dict[tuple[str, str], dict[int, _Known]] = {}  # by (event, task)
        self._changed = trio.Event()
        self._failure: BzzzError | None = None

    # --- watching -------------------------------------------------------------------------

    async def watch(self, nursery: trio.Nursery) -> None:
        """Open every node's event stream; return once all are subscribed."""
        for target in self.targets:
            nursery.start_soon(self._watch, target)
        with trio.move_on_after(self.timeout):
            for target in self.targets:
                await target.subscribed.wait()
            return
        lacking = [t.name for t in self.targets if not t.subscribed.is_set()]
        raise BenchError(f"{', '.join(lacking)}: no event stream within {self.timeout:g}s")

    async def _watch(self, target: Target) -> None:
        try:
            async for delivery in event_stream(target.api, TOPIC, self.token,
                                               wanted=_WATCHED_BYTES):
                if not delivery:
                    target.subscribed.set()
                    continue
                self._note(target, delivery)
        except BzzzError as exc:
            if target.alive:  # a node we killed closes its stream: expected
                self._failure = BenchError(f"{target.name}: {exc}")
                self._wake()

    def _note(self, target: Target, delivery: dict[str, Any]) -> None:
        try:
            event = json.loads(delivery.get("data") or "")
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("type") not in _WATCHED:
            return
        key = (str(event["type"]), str(event.get("id")))
        self._known.setdefault(key, {}).setdefault(
            target.index, (trio.current_time(), event.get("owner")))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _known_everywhere(self, task_id: str, deadline: float,
                                event: str = "task_claimed") -> dict[int, _Known]:
        while True:
            if self._failure is not None:
                raise self._failure
            known = self._known.get((event, task_id), {})
            alive = [t for t in self.targets if t.alive]
            if all(t.index in known for t in alive):
                return known
            changed = self._changed
            with trio.move_on_at(deadline):
                await changed.wait()
                continue
            lacking = [t.name for t in alive if t.index not in known]
            raise BenchError(f"task {task_id}: {', '.join(lacking)} never delivered the "
                             f"{event} event within {self.timeout:g}s")

    # --- rounds ---------------------------------------------------------------------------

    def _alive(self) -> list[Target]:
        return [t for t in self.targets if t.alive]

    async def _announce(self, target: Target, title: str) -> str:
        status, answer = await target.conn.call("POST", "/api/v1/tasks", {"title": title})
        if status != 201:
            raise BenchError(f"{target.name}: announce refused (HTTP {status}): "
                             f"{_text(answer)}")
        return str(answer["id"])

    async def at_rest(self, number: int) -> RoundResult:
        """One claimant: the node after the announcer (both rotate with ``number``)."""
        alive = self._alive()
        announcer, claimant = alive[number % len(alive)], alive[(number + 1) % len(alive)]
        return await self._round(announcer, [claimant], f"bench at rest {number}")

    async def contested(self, number: int) -> RoundResult:
        """Every node claims at once (the announcer rotates with ``number``)."""
        alive = self._alive()
        return await self._round(alive[number % len(alive)], alive, f"bench contested {number}")

    async def _round(self, announcer: Target, claimants: list[Target], title: str,
                     ) -> RoundResult:
        began = trio.current_time()
        deadline = began + self.timeout
        with _bounded(deadline + self.timeout, f"{announcer.name}: round '{title}'"):
            task_id = await self._announce(announcer, title)
            announced = trio.current_time()
            answers: dict[int, tuple[float, str, int]] = {}
            async with trio.open_nursery() as nursery:
                for claimant in claimants:
                    nursery.start_soon(self._claim, claimant, task_id, deadline, answers)
            return await self._conclude(task_id, began, announced, deadline, answers)

    async def _claim(self, target: Target, task_id: str, deadline: float,
                     answers: dict[int, tuple[float, str, int]]) -> None:
        """Claim until decided (retrying what the log could not decide: failover); record
        (time, winner, retries). Raises BenchError for a refusal."""
        retries = 0
        while True:
            try:
                status, answer = await target.conn.call("POST", f"/api/v1/tasks/{task_id}/claim",
                                                        {})
            except BzzzError:
                if not target.alive:
                    return
                status, answer = 0, None
            reason = answer.get("reason") if isinstance(answer, dict) else None
            if status == 200:
                answers[target.index] = (trio.current_time(), str(answer["owner"]), retries)
                return
            if status == 409 and reason == "owned":
                answers[target.index] = (trio.current_time(), str(answer["winner"]), retries)
                return
            if status not in _UNDECIDED and not (status == 409 and reason == "lost") \
                    and status != 0:
                raise BenchError(f"{target.name}: claim of {task_id} refused (HTTP {status}): "
                                 f"{_text(answer)}")
            if trio.current_time() > deadline:
                raise BenchError(f"{target.name}: claim of {task_id} not decided within "
                                 f"{self.timeout:g}s: {_text(answer)}")
            retries += 1
            await trio.sleep(0.01)

    async def _conclude(self, task_id: str, began: float, announced: float, deadline: float,
                        answers: dict[int, tuple[float, str, int]]) -> RoundResult:
        winners = {w for _, w, _ in answers.values()}
        if len(winners) != 1:
            raise BenchError(f"task {task_id}: the claimants were told different winners: "
                             f"{sorted(winners)}")
        winner = winners.pop()
        holders = [t.name for t in self.targets if t.index in answers and t.is_node(winner)]
        if len(holders) != 1:
            raise BenchError(f"task {task_id}: the winner named, {winner}, is not exactly one "
                             f"of the claimants ({holders})")
        known = await self._known_everywhere(task_id, deadline)
        told = {owner for _, owner in known.values()}
        if told != {winner}:
            raise BenchError(f"task {task_id}: the nodes' events name {sorted(map(str, told))}, "
                             f"the claim answers {winner}")
        settled = max(t for t, _, _ in answers.values())
        last_known = max(t for t, _ in known.values())
        ended = max(settled, last_known)
        lagging = await self._check_agreement(task_id, winner)
        await self._complete(task_id, winner, deadline)
        ms = 1000.0
        return RoundResult((ended - began) * ms, (announced - began) * ms,
                           (settled - began) * ms, (last_known - began) * ms, winner,
                           len(answers), lagging, sum(r for _, _, r in answers.values()))

    async def _check_agreement(self, task_id: str, winner: str) -> int:
        """Read the task on every node (untimed); how many do not name the owner yet.

        Raises:
            BenchError: a node names another owner.
        """
        owners: dict[int, Any] = {}

        async def read(target: Target) -> None:
            status, answer = await target.conn.call("GET", f"/api/v1/tasks/{task_id}")
            owners[target.index] = answer.get("owner") if status == 200 and \
                isinstance(answer, dict) else None

        async with trio.open_nursery() as nursery:
            for target in self._alive():
                nursery.start_soon(read, target)
        wrong = {i: o for i, o in owners.items() if o is not None and o != winner}
        if wrong:
            raise BenchError(f"task {task_id}: node{min(wrong)} says {wrong[min(wrong)]} holds "
                             f"it, the claim answers {winner}")
        return sum(1 for o in owners.values() if o is None)

    async def _complete(self, task_id: str, winner: str, deadline: float) -> None:
        """The winner completes the task; returns once every node delivered that event."""
        owner = next((t for t in self._alive() if t.is_node(winner)), None)
        if owner is None:
            return  # a node we do not reach holds it; it is its to finish
        status, answer = await owner.conn.call("POST", f"/api/v1/tasks/{task_id}/complete", {})
        if status != 200:
            raise BenchError(f"{owner.name}: completing {task_id} refused (HTTP {status}): "
                             f"{_text(answer)}")
        await self._known_everywhere(task_id, deadline, "task_completed")
        self._known.pop(("task_claimed", task_id), None)
        self._known.pop(("task_completed", task_id), None)

    async def leader(self) -> Target | None:
        """The coordinator, as the first live node sees it (None: none known, or not ours)."""
        target = self._alive()[0]
        status, answer = await target.conn.call("GET", "/api/v1/coordination")
        leader = answer.get("leader") if status == 200 and isinstance(answer, dict) else None
        return next((t for t in self.targets if t.is_node(leader)), None)

    async def failover(self, kill: Callable[[Target], Awaitable[None] | None]) -> RoundResult:
        """Announce on a follower, kill -9 the coordinator, and every survivor claims at
        once, retrying until the new coordinator decides; the time runs from the kill."""
        leader = await self.leader()
        if leader is None:
            raise BenchError("no coordinator among the nodes: cannot measure failover")
        survivors = [t for t in self._alive() if t is not leader]
        if len(survivors) < 2:
            raise BenchError("failover needs at least 3 nodes")
        task_id = await self._announce(survivors[0], "bench failover")
        began = trio.current_time()
        deadline = began + self.timeout
        leader.alive = False
        done = kill(leader)
        if done is not None:
            await done
        with _bounded(deadline + self.timeout, f"the failover round (killed {leader.name})"):
            answers: dict[int, tuple[float, str, int]] = {}
            async with trio.open_nursery() as nursery:
                for claimant in survivors:
                    nursery.start_soon(self._claim, claimant, task_id, deadline, answers)
            return await self._conclude(task_id, began, began, deadline, answers)

    async def close(self) -> None:
        for target in self.targets:
            await target.conn.aclose()


@contextmanager
def _bounded(deadline: float, what: str) -> Iterator[None]:
    """A round that never ends (a node that accepts a request and never answers) is an
    error once ``deadline`` passes."""
    try:
        with trio.fail_at(deadline):
            yield
    except trio.TooSlowError:
        raise BenchError(f"{what}: no end by its deadline; a node accepted a request and "
                         "never answered") from None


def _text(answer: Any) -> str:
    if isinstance(answer, dict):
        reason = f"{answer['reason']}: " if answer.get("reason") else ""
        return f"{reason}{answer.get('error', answer)}"
    return str(answer)
