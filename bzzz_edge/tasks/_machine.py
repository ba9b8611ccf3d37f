"""The task state machine: task commands applied in decision-log order. No I/O.

Every node applies the same committed commands in the same order, so every node holds the same
tasks and reaches the same verdict on each command: of several claims for one task, the first
in the log wins and the others are refused with ``Reason.OWNED`` naming the winner. Nothing
here reads a clock or a node's config: time comes in the command (the proposer's), and a
claimant's roles, capabilities and capacity come in its claim (``_roles.Profile``).

``apply`` returns an ``Outcome`` for each task command and None for other log entries; a
malformed command is an outcome too (refused, counted), never an exception. ``snapshot`` and
``restore`` carry the whole state with its applied index (the decision log's snapshots hold
it, so compacted entries lose nothing). ``take_changes`` hands the shell the tasks changed
since it last asked, to persist them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from ..errors import DecodeError
from ._commands import Command, Refused, decode, is_ours, peek
from ._model import ACTIVE, CLAIMABLE, FINISHED, LIMITS, HistoryItem, Limits, Reason, State, Task
from ._roles import check_eligible

__all__ = ["Outcome", "TaskMachine"]

_SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one task command did.

    ``ok`` with the task as it is now; or refused with ``reason`` and ``text``. ``winner`` is
    the task's owner after the command (for a lost claim: who holds it).
    """

    index: int
    op: str
    task_id: str
    node: bytes | None
    ok: bool
    reason: Reason | None = None
    text: str = ""
    task: Task | None = None
    winner: bytes | None = None
    released: bytes | None = None  # a release: the owner it took the task from
    changed: bool = True  # False for a command that was accepted but changed nothing


class TaskMachine:
    """Every task, as the committed commands up to ``applied`` made them."""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self.applied = 0
        self.tasks: dict[str, Task] = {}
        self.counters: Counter[str] = Counter()
        self._holding: Counter[bytes] = Counter()
        self._changed: set[str] = set()
        self._replaced = False

    # --- views --------------------------------------------------------------------------------

    def holding(self, node: bytes) -> int:
        """How many tasks ``node`` holds (claimed or in progress)."""
        return self._holding[node]

    def active(self) -> Iterator[Task]:
        return (t for t in self.tasks.values() if t.state in ACTIVE)

    # --- applying -----------------------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> Outcome | None:
        """Apply the committed entry ``data`` at ``index``; None if it is not a task command.

        An index at or below ``applied`` was applied already (a restart replays the log from
        the last snapshot): it is skipped, returning None.
        """
        if index <= self.applied:
            return None
        self.applied = index
        if not is_ours(data):
            return None
        try:
            command = decode(data, self.limits)
            return self._apply(index, command)
        except Refused as refused:
            self.counters[f"refused_{refused.reason.value}"] += 1
            op, node, task_id = peek(data)
            return Outcome(index, op, task_id, node, False, refused.reason, refused.text)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A command decode let through that the rules trip on would be a bug here; it
            # trips the same way on every node, so refusing it keeps them together and keeps
            # the consensus driver, which calls this, alive.
            self.counters["apply_errors"] += 1
            op, node, task_id = peek(data)
            return Outcome(index, op, task_id, node, False, Reason.MALFORMED,
                           f"not applicable: {type(exc).__name__}")

    def _apply(self, index: int, cmd: Command) -> Outcome:
        task_id = cmd.task_id
        task = self.tasks.get(task_id)
        if cmd.op == "announce":
            if task is not None:
                return self._refuse(index, cmd, Reason.DUPLICATE, f"task {task_id} exists", task)
            if len(self.tasks) >= self.limits.max_tasks:
                return self._refuse(index, cmd, Reason.FULL,
                                    f"{len(self.tasks)} tasks held, the most there may be")
            b = cmd.body
            new = Task(id=task_id, address=b["address"], title=b["title"],
                       description=b["description"], role=b["role"],
                       capabilities=b["capabilities"], priority=b["priority"],
                       scopes=b["scopes"], deadline=b["deadline"], announced_by=cmd.node,
                       announced_at=cmd.at, updated=index,
                       history=(HistoryItem(index, cmd.at, "announced", cmd.node),))
            return self._done(index, cmd, new)
        if task is None:
            return self._refuse(index, cmd, Reason.UNKNOWN_TASK, f"no task {task_id}")
        if task.state in FINISHED:
            return self._refuse(index, cmd, Reason.FINISHED, f"task {task_id} is "
                                f"{task.state.value}", task)
        if cmd.op == "claim":
            return self._claim(index, cmd, task)
        if task.state not in ACTIVE or task.owner is None:
            return self._refuse(index, cmd, Reason.NOT_CLAIMED, f"nobody holds task {task_id}",
                                task)
        if cmd.op == "release":
            return self._release(index, cmd, task)
        if task.owner != cmd.node:
            return self._refuse(index, cmd, Reason.NOT_OWNER, "another node holds the task",
                                task)
        item = HistoryItem(index, cmd.at, cmd.op, cmd.node,
                           cmd.body.get("text") or cmd.body.get("result") or "")
        if cmd.op == "progress":
            return self._done(index, cmd, task.with_event(item, state=State.IN_PROGRESS))
        finished = State.COMPLETED if cmd.op == "complete" else State.FAILED
        self._holding[task.owner] -= 1
        return self._done(index, cmd, task.with_event(item, state=finished,
                                                      result=cmd.body.get("result")))

    def _claim(self, index: int, cmd: Command, task: Task) -> Outcome:
        if task.state in ACTIVE:
            if task.owner == cmd.node:  # a repeated claim of the winner: still won
                return Outcome(index, cmd.op, task.id, cmd.node, True, task=task,
                               winner=task.owner, changed=False)
            return self._refuse(index, cmd, Reason.OWNED, "another node holds the task", task)
        assert task.state in CLAIMABLE
        why = check_eligible(task, cmd.profile(), self._holding[cmd.node])
        if why is not None:
            return self._refuse(index, cmd, why[0], why[1], task)
        self._holding[cmd.node] += 1
        item = HistoryItem(index, cmd.at, "claimed", cmd.node)
        return self._done(index, cmd, task.with_event(item, state=State.CLAIMED, owner=cmd.node,
                                                      claimed_at=cmd.at))

    def _release(self, index: int, cmd: Command, task: Task) -> Outcome:
        owner, why = cmd.body["owner"], cmd.body["why"]
        assert task.owner is not None
        if task.owner != owner:
            return self._refuse(index, cmd, Reason.STALE, "the task changed hands", task)
        if why == "given_up" and cmd.node != owner:
            return self._refuse(index, cmd, Reason.NOT_OWNER, "only the owner gives a task up",
                                task)
        self._holding[owner] -= 1
        item = HistoryItem(index, cmd.at, "released", cmd.node, why)
        done = self._done(index, cmd, task.with_event(item, state=State.REASSIGNED, owner=None,
                                                      claimed_at=None))
        return replace(done, released=owner)

    def _done(self, index: int, cmd: Command, task: Task) -> Outcome:
        self.tasks[task.id] = task
        self._changed.add(task.id)
        self.counters[cmd.op] += 1
        return Outcome(index, cmd.op, task.id, cmd.node, True, task=task, winner=task.owner)

    def _refuse(self, index: int, cmd: Command, reason: Reason, text: str,
                task: Task | None = None) -> Outcome:
        self.counters[f"refused_{reason.value}"] += 1
        return Outcome(index, cmd.op, cmd.task_id, cmd.node, False, reason, text, task,
                       task.owner if task is not None else None)

    # --- persistence --------------------------------------------------------------------------

    def take_changes(self) -> tuple[bool, list[Task]]:
        """(whether the state was replaced wholesale, the tasks changed) since the last call."""
        replaced, self._replaced = self._replaced, False
        changed = [self.tasks[i] for i in sorted(self._changed) if i in self.tasks]
        self._changed.clear()
        return replaced, changed

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(
            [_SNAPSHOT_VERSION, self.applied, [t.encode() for t in self.tasks.values()]],
            use_bin_type=True)
        return packed

    def restore(self, index: int, data: bytes) -> None:
        """Replace the state with a snapshot's (taken at ``index``).

        Raises:
            DecodeError: not a task snapshot, or taken at another index.
        """
        try:
            version, applied, rows = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if version != _SNAPSHOT_VERSION or applied != index:
                raise ValueError(f"version {version!r} at {applied!r}, expected index {index}")
            tasks = [Task.decode(row) for row in rows]
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise DecodeError(f"task snapshot: {exc}") from None
        self.load(index, tasks)

    def load(self, applied: int, tasks: list[Task]) -> None:
        """Take ``tasks`` as the state at ``applied`` (from a snapshot or the store); the next
        ``take_changes`` says the state was replaced."""
        self.applied = applied
        self.tasks = {t.id: t for t in tasks}
        self._holding = Counter(t.owner for t in tasks if t.state in ACTIVE and t.owner)
        self._changed.clear()
        self._replaced = True

    def state(self) -> dict[str, Any]:
        """Counts by state, for the status."""
        by_state = Counter(t.state.value for t in self.tasks.values())
        return {"applied": self.applied, "tasks": len(self.tasks), "by_state": dict(by_state)}
