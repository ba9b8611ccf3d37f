"""Proposing this node's task commands and settling them: signed once, proposed through the
decision log (again, the same bytes, when a coordinator's failure left one undecided), and
answered once this node applied it. Uses trio.

Each command is signed with this node's identity key for this network (``_commands.sign``)
and carries a sequence number that grows with each command this node makes (microseconds of
the wall clock, or one more than the last), so the machine can refuse replays and the
proposer can recognise its command's applications (``_retry.Applications``).

Proposed again: a command whose proposal failed with a ``RETRY`` failure (the outcome
is unknown: the coordinator died or lost its majority while it held it), until ``retry_for``
seconds past the proposal timeout; the first retry at once (``ConsensusService.propose``
itself waits for the next coordinator), the next ones after a pause that doubles from 50 ms
up to 0.5 s (so an error answered at once does not spin). What a command did is its first
application's outcome (``_retry.answer``), whichever attempt put it in the log; so one this
node applied and accepted is answered at once, without waiting for the coordinator's answer
to the attempt (which leaves the coordinator after the commit notice that brought the entry
here, and comes later). A claim the coordinator answered without a log entry (``_desk``) is
answered from this node's state at the index it names.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import trio

from ..consensus.proposals import Committed, Failure, ProposalError
from ._commands import Signer, sign
from ._desk import Decided
from ._machine import Outcome, TaskMachine
from ._retry import Applications, answer, from_state

__all__ = ["RETRY", "Consensus", "Proposer"]

log = logging.getLogger(__name__)

#: Failures after which the command may or may not be in the log: proposed again. (REFUSED
#: is not: too large stays too large, and a full backlog is not undecided.)
RETRY = frozenset({Failure.NO_QUORUM, Failure.NOT_LEADER, Failure.TIMEOUT, Failure.LOST})
_PAUSE_FIRST, _PAUSE_MAX = 0.05, 0.5  # between attempts after the first retry


class Consensus(Protocol):
    """What commands are proposed to: ``ConsensusService`` (a stand-in in tests)."""

    @property
    def proposal_timeout(self) -> float: ...

    async def propose(self, command: bytes, *,
                      timeout: float | None = None) -> Committed | Decided: ...


class Proposer:
    """This node's commands in flight (see the module docstring).

    Args:
        identity: signs the commands; network_id: signed into each; machine: the tasks this
        node applies commands to; retry_for: seconds past the proposal timeout an undecided
        command is still proposed again; counters: where ``command_retries`` and
        ``commands_undecided`` are counted, and ``command_copies``: applications of a
        command after its first (the first attempt committed after all);
        ``answered_on_apply``: commands answered when this node applied them, before the
        coordinator's answer came.
    """

    def __init__(self, identity: Signer, network_id: bytes, machine: TaskMachine, *,
                 retry_for: float, counters: dict[str, int]) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.network_id = network_id
        self.machine = machine
        self.retry_for = retry_for
        self.applications = Applications()
        self._counters = counters
        counters.setdefault("command_retries", 0)
        counters.setdefault("commands_undecided", 0)
        counters.setdefault("command_copies", 0)
        counters.setdefault("answered_on_apply", 0)
        self._applied = trio.Event()
        self._seq = 0
        self._waiting: dict[int, trio.CancelScope] = {}  # our commands in flight, by seq

    def applied(self, outcome: Outcome | None) -> None:
        """The machine applied an entry (``outcome``: a task command's, else None)."""
        self._applied.set()
        self._applied = trio.Event()
        if outcome is not None and outcome.node == self.node_id \
                and self.applications.add(outcome) and outcome.ok:
            scope = self._waiting.get(outcome.seq)
            if scope is not None:
                scope.cancel()  # decided: ``propose`` answers now

    def next_seq(self) -> int:
        """This node's next command sequence number: microseconds of the wall clock, so it
        keeps growing across restarts, or one more than the last when the clock lags."""
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    async def propose(self, consensus: Consensus, op: str, body: dict[str, Any], *,
                      retry: bool = True) -> Outcome:
        """Sign and propose a command, return its outcome once this node applied it.

        Raises:
            ProposalError: not decided (no quorum, timeout: it may still commit; refused).
        """
        seq = self.next_seq()
        data = sign(self.identity, self.network_id, op, time.time(), body, seq=seq)
        task_id = body.get("id", "")
        self.applications.expect(seq, op, task_id)
        scope = self._waiting[seq] = trio.CancelScope()
        try:
            with scope:
                return await self._decide(consensus, data, seq, op, task_id, retry=retry)
            # Applied here and accepted (``applied``): that is the command's answer whatever
            # its attempts still in flight come to (``_retry.answer``: the first application
            # that changed the state), so it is not worth waiting for the coordinator's own
            # answer, which leaves it after the commit notice that brought the entry here.
            out = self.seen(seq, op, task_id)
            assert out is not None and out.ok
            self._counters["answered_on_apply"] += 1
            return out
        finally:
            del self._waiting[seq]
            self.applications.forget(seq)

    async def _decide(self, consensus: Consensus, data: bytes, seq: int, op: str,
                      task_id: str, *, retry: bool) -> Outcome:
        began = trio.current_time()
        deadline = began + consensus.proposal_timeout + (self.retry_for if retry else 0.0)
        attempts, pause = 0, 0.0
        while True:
            attempts += 1
            left = deadline - trio.current_time()
            try:
                committed = await consensus.propose(
                    data, timeout=max(0.01, min(consensus.proposal_timeout, left)))
            except ProposalError as exc:
                out = self.seen(seq, op, task_id)  # an earlier attempt committed after all
                if out is not None:
                    return out
                if not retry or exc.reason not in RETRY or trio.current_time() >= deadline:
                    if attempts == 1:
                        raise
                    self._counters["commands_undecided"] += 1
                    raise ProposalError(exc.reason, f"{op} not decided: proposed {attempts} "
                                        f"times in {trio.current_time() - began:.1f} s, no "
                                        f"coordinator took it (the last attempt: {exc.detail})",
                                        exc.leader) from None
                self._counters["command_retries"] += 1
                log.debug("tasks: %s %s undecided (%s); proposed again", op, task_id,
                          exc.reason.value)
                if pause:
                    await trio.sleep(min(pause, max(0.0, deadline - trio.current_time())))
                pause = min(max(pause * 2, _PAUSE_FIRST), _PAUSE_MAX)
                continue
            # Committed at that index, or (a claim) decided there without entering the log
            # (``_desk.Decided``): either way this node answers once it applied the index.
            return await self.settled(committed.index, op, task_id, seq,
                                      timeout=consensus.proposal_timeout)

    def seen(self, seq: int, op: str, task_id: str) -> Outcome | None:
        """What the command ``seq`` did, if this node applied it (None: not yet)."""
        applications = self.applications.seen(seq)
        self._counters["command_copies"] += max(0, len(applications) - 1)
        out = answer(applications)
        if out is not None and not out.ok and self.applications.blind(seq):
            # A snapshot may hold its first application: refused here means done before.
            return from_state(self.machine.tasks.get(task_id), index=out.index, op=op,
                              task_id=task_id, node=self.node_id, seq=seq, refused=out)
        return out

    async def settled(self, index: int, op: str, task_id: str, seq: int, *,
                      timeout: float) -> Outcome:
        """The outcome of our command ``seq`` committed at ``index``, once this node applied
        it: its first application's (``_retry``); for a claim the coordinator answered
        decided at ``index`` (``_desk``), what the state there says (lost to its owner).

        Raises:
            ProposalError: TIMEOUT, this node did not apply it within ``timeout`` (it is
                committed: it will apply once this node hears of the commit).
        """
        with trio.move_on_after(timeout):
            while self.machine.applied < index:
                await self._applied.wait()
        if self.machine.applied < index:
            raise ProposalError(Failure.TIMEOUT, f"committed at index {index} but not applied "
                                "on this node in time")
        out = self.seen(seq, op, task_id)
        if out is not None:
            return out
        # A snapshot carried us past it: answer from the state it left.
        return from_state(self.machine.tasks.get(task_id), index=index, op=op,
                          task_id=task_id, node=self.node_id, seq=seq)
