"""Settling a task command that may be in the decision log more than once. No I/O.

When the coordinator dies (or loses its majority) while it holds a proposal, the proposer
cannot tell whether it committed (``_proposer.RETRY``). The task service then proposes the
*same* bytes again on the next coordinator (the same node, ``seq``, ``at`` and signature),
until its deadline (``retry_window``). So a command may be in the log twice; what it did is
what its first application did, and the copies after it change nothing, by the state
machine's own rules (``_machine``):

- claim: the task is held, by us (won, unchanged) or by the winner (``owned``), or has moved
  on since (``stale``: the copy's ``gen`` is behind the task's ``claims``). No copy makes a
  second winner: a claim that won raised ``claims`` past every copy's ``gen``.
- progress, complete, fail: the copy's ``seq`` is not above the task's (``replay``), or the
  task is finished (``finished``).
- release (given up): the task is unclaimed (``not_claimed``) or claimed again (``stale``).
- announce: the task exists (``duplicate``).

A copy can still change the state when every application before it was refused (a claim
refused because another node held the task, applied again after that node released it, with
a ``gen`` that counts that node's claim): then the copy is the command's effect. Hence the
answer (``answer``): the first application that changed the state, else the first refusal.
The proposer applies every committed entry, so it sees each copy (``Applications``), and it
answers only once the index of its last attempt is applied, after which no earlier attempt
can still commit (Raft's log matching: an entry of an older term at a lower index is in
every later leader's log or in none, one at a higher index in none). One case escapes that:
an attempt forwarded to a coordinator that stays in office but starts proposing it only after
the proposer gave up waiting (``consensus._forward`` waits 0.5 s past the attempt's deadline,
and the coordinator counts its own timeout from when it handles the request) can commit after
the answer; if every application before it was refused and it wins, the node holds a task it
answered lost. Closing that needs the forwarded request to carry a deadline the coordinator
honours (consensus).

When this node did not see the first application (a snapshot carried it past it) and a copy
was refused, the state answers (``from_state``): a claim is won if this node holds the task,
lost to its owner otherwise; another command is done when the copy's refusal is what a copy
of a done command gets and the task agrees.
"""

from __future__ import annotations

from typing import Final

from ._machine import Outcome
from ._model import ACTIVE, FINISHED, Reason, State, Task

__all__ = ["Applications", "answer", "from_state", "retry_window"]


def retry_window(election_timeout_max: float) -> float:
    """How long after its first proposal's timeout a command is still proposed again: two
    elections (a split vote, then a decisive one) and a second for the new coordinator's
    first commit."""
    return 2 * election_timeout_max + 1.0


class Applications:
    """The applications of this node's commands in flight, by ``seq``.

    Only commands ``expect``-ed are kept, and only outcomes of the same operation on the same
    task: a command of another node cannot pass for ours by naming our node and ``seq``.
    """

    def __init__(self) -> None:
        self._wanted: dict[int, tuple[str, str]] = {}
        self._seen: dict[int, list[Outcome]] = {}
        self._blind: set[int] = set()

    def __len__(self) -> int:
        return len(self._wanted)

    def expect(self, seq: int, op: str, task_id: str) -> None:
        self._wanted[seq] = (op, task_id)
        self._seen[seq] = []

    def forget(self, seq: int) -> None:
        self._wanted.pop(seq, None)
        self._seen.pop(seq, None)
        self._blind.discard(seq)

    def restored(self) -> None:
        """A snapshot replaced the state: a command not seen applied yet may be inside it."""
        self._blind.update(seq for seq, seen in self._seen.items() if not seen)

    def blind(self, seq: int) -> bool:
        """Whether ``seq``'s first application may be inside a snapshot, unseen."""
        return seq in self._blind

    def add(self, out: Outcome) -> bool:
        """An applied outcome of a command of this node (others are ignored: False)."""
        if self._wanted.get(out.seq) != (out.op, out.task_id):
            return False
        self._seen[out.seq].append(out)
        return True

    def seen(self, seq: int) -> list[Outcome]:
        """The applications of ``seq`` so far, in log order."""
        return self._seen.get(seq, [])


def answer(seen: list[Outcome]) -> Outcome | None:
    """What a command did, from its applications in log order: the first that changed the
    state (or was accepted), else the first refusal; None when none applied."""
    return next((o for o in seen if o.ok), seen[0] if seen else None)


#: For each operation, the refusals a copy gets when the command was applied before.
_DONE_BEFORE: Final = {"announce": {Reason.DUPLICATE}, "progress": {Reason.REPLAY},
                       "complete": {Reason.REPLAY, Reason.FINISHED},
                       "fail": {Reason.REPLAY, Reason.FINISHED},
                       "release": {Reason.NOT_CLAIMED, Reason.STALE}}
_FINISHED_BY: Final = {"complete": State.COMPLETED, "fail": State.FAILED}


def from_state(task: Task | None, *, index: int, op: str, task_id: str, node: bytes,
               seq: int, refused: Outcome | None = None) -> Outcome:
    """What a command of ``node`` applied at or before ``index`` did, when its first
    application was not seen (a snapshot holds it): from the task as it is now (``task``;
    None: there is none) and the refusal of a copy applied since (``refused``, if any).

    A claim: won if ``node`` holds the task, lost to its owner if another does. Another
    command: done when the copy's refusal is what a copy of a done command gets and the task
    agrees (announced by ``node``; held, or finished as the command would, by ``node``; not
    held by ``node`` after a give-up); otherwise the copy's refusal stands.
    """
    if task is None:
        return refused or Outcome(index, op, task_id, node, False, Reason.UNKNOWN_TASK,
                                  f"no task {task_id} (this node caught up from a snapshot)",
                                  seq=seq)
    if op == "claim":
        if task.state in ACTIVE and task.owner == node:
            return Outcome(index, op, task_id, node, True, task=task, winner=node,
                           changed=False, seq=seq)
        if task.state in ACTIVE:
            return Outcome(index, op, task_id, node, False, Reason.OWNED,
                           "another node holds the task", task, task.owner, seq=seq)
        return refused or Outcome(index, op, task_id, node, False, Reason.STALE,
                                  f"task {task_id} is {task.state.value}: decided, but this "
                                  "node caught up from a snapshot", task, seq=seq)
    done = Outcome(index, op, task_id, node, True, task=task, winner=task.owner,
                   changed=False, seq=seq)
    if refused is None:
        return done
    if refused.reason not in _DONE_BEFORE.get(op, ()):
        return refused
    if op == "announce":
        agrees = task.announced_by == node
    elif op == "release":
        agrees = task.owner != node
    else:
        agrees = task.owner == node and task.state in (
            (_FINISHED_BY[op],) if refused.reason is Reason.FINISHED else ACTIVE | FINISHED)
    return done if agrees else refused
