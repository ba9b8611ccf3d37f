"""The task state machine: task commands applied in decision-log order. No I/O.

Every node applies the same committed commands in the same order, so every node holds the same
tasks and reaches the same verdict on each command: of several claims for one task, the first
in the log wins and the others are refused with ``Reason.OWNED`` naming the winner. Nothing
here reads a clock or a node's config: time comes in the command (the proposer's), and a
claimant's roles, capabilities and capacity come in its claim (``_roles.Profile``).

Who may do what, checked the same way on every node:

- Every command is signed by the node it names (``_commands``: refused ``forged`` otherwise,
  for a key that is not the node's, a bad signature, or another network's). The signature is
  verified once, and only for a command the cheap rules would not refuse anyway (an unknown
  or finished task, a duplicate announce, a claim of a task another node holds, a release or
  expiry by a node that is not the coordinator): those change nothing whoever sent them, and
  are counted by that reason; so the losers of a claim race cost no verification.
- Only a task's owner progresses, completes, fails or gives it up; each of those carries the
  owner's ``seq``, which must exceed the one of its last command on the task since its claim
  (``Task.seq``), so a replayed one is refused (``replay``).
- A claim names how many claims of the task were decided before it (``gen``, against
  ``Task.claims``): a claim replayed after the task was released and claimed again is
  ``stale``; a release names the claim it was decided against the same way.
- The coordinator's releases (``owner_dead``, ``deadline``) and expiries must be signed by
  the coordinator: by the leader of the entry's term when the log says who that is (a
  ``NOOP`` entry whose data is the leader's node ID, ``note_leader``), else by a voter of the
  configuration as of that entry (``configure``, from the log's ``CONFIG`` entries; before
  the first, the founder's: ``founders``); otherwise ``not_coordinator``. A ``deadline``
  release must come after the deadline by the coordinator's clock.
- ``expire`` (by the coordinator, every ``agent.finished_retention`` it chooses) drops the
  finished tasks whose last time is before its ``before``, and raises ``floor`` to it: an
  announce at or before ``floor`` is refused (``replay``), so an expired task's announce
  cannot bring it back. Other replays of an expired task's commands find no task.

``apply`` returns an ``Outcome`` for each task command and None for other log entries; a
malformed command is an outcome too (refused, counted), never an exception. ``snapshot`` and
``restore`` carry the whole state with its applied index (the decision log's snapshots hold
it, so compacted entries lose nothing). ``take_changes`` hands the shell the tasks changed
since it last asked, to persist them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from ..errors import DecodeError
from ._announced import task_of
from ._commands import Command, Refused, check_signature, decode, is_ours, peek, split
from ._model import ACTIVE, CLAIMABLE, FINISHED, LIMITS, HistoryItem, Limits, Reason, State, Task
from ._roles import check_eligible

__all__ = ["Outcome", "TaskMachine"]

_SNAPSHOT_VERSION = 2  # 1: without the meta (voters, leader, floor)


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
    seq: int = 0  # the command's ``seq`` (0 when it could not be read)


class TaskMachine:
    """Every task, as the committed commands up to ``applied`` made them.

    Args:
        limits: the field bounds; network_id: the network commands must be signed for.
    """

    def __init__(self, limits: Limits = LIMITS, *, network_id: bytes = b"") -> None:
        self.limits = limits
        self.network_id = network_id
        self.applied = 0
        self.tasks: dict[str, Task] = {}
        self.counters: Counter[str] = Counter()
        #: The voters as of ``applied`` (the log's last ``CONFIG`` entry); None before one.
        self.voters: frozenset[bytes] | None = None
        #: The voters before the log's first ``CONFIG`` entry (the group's founder).
        self.founders: Callable[[], frozenset[bytes]] = frozenset
        #: (term, leader) of the last ``NOOP`` entry that named its leader.
        self.leader: tuple[int, bytes] | None = None
        #: Announces at or before this time are refused (the last expiry's ``before``).
        self.floor = -math.inf
        #: The tasks' footprints (``Task.footprint``), each and in all.
        self.footprints: dict[str, int] = {}
        self.bytes_held = 0
        self._holding: Counter[bytes] = Counter()
        self._changed: set[str] = set()
        self._removed: set[str] = set()
        self._replaced = False
        self._meta_changed = False

    # --- views --------------------------------------------------------------------------------

    def holding(self, node: bytes) -> int:
        """How many tasks ``node`` holds (claimed or in progress)."""
        return self._holding[node]

    def active(self) -> Iterator[Task]:
        return (t for t in self.tasks.values() if t.state in ACTIVE)

    def current_voters(self) -> frozenset[bytes]:
        return self.voters if self.voters is not None else self.founders()

    # --- the log's own entries ----------------------------------------------------------------

    def configure(self, index: int, voters: frozenset[bytes]) -> None:
        """A ``CONFIG`` entry at ``index`` (applied next): its voters from then on."""
        if index > self.applied:
            self.voters = frozenset(voters)
            self._meta_changed = True

    def note_leader(self, index: int, term: int, data: bytes) -> None:
        """A ``NOOP`` entry at ``index``: a leader's first entry of ``term``; when its data is
        a node ID, that node is the term's leader (see the module docstring)."""
        if index > self.applied and len(data) == 32:
            self.leader = (term, data)
            self._meta_changed = True

    # --- applying -----------------------------------------------------------------------------

    def apply(self, index: int, data: bytes, term: int = 0) -> Outcome | None:
        """Apply the committed entry ``data`` at ``index`` (of ``term``); None if it is not a
        task command.

        An index at or below ``applied`` was applied already (a restart replays the log from
        the last snapshot): it is skipped, returning None.
        """
        if index <= self.applied:
            return None
        self.applied = index
        if not is_ours(data):
            return None
        try:
            parts = split(data)
            if parts is not None:
                lost = self._lost_cheaply(index, parts[0])
                if lost is not None:
                    return lost
            command = decode(data, self.limits, self.network_id, verify=False, parts=parts)
            return self._apply(index, command, term)
        except Refused as refused:
            self.counters[f"refused_{refused.reason.value}"] += 1
            op, node, task_id, seq = peek(data)
            return Outcome(index, op, task_id, node, False, refused.reason, refused.text,
                           seq=seq)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A command decode let through that the rules trip on would be a bug here; it
            # trips the same way on every node, so refusing it keeps them together and keeps
            # the consensus driver, which calls this, alive.
            self.counters["apply_errors"] += 1
            op, node, task_id, seq = peek(data)
            return Outcome(index, op, task_id, node, False, Reason.MALFORMED,
                           f"not applicable: {type(exc).__name__}", seq=seq)

    def _lost_cheaply(self, index: int, signed: list[Any]) -> Outcome | None:
        """A claim of a task another node holds, refused ``owned`` before it is decoded in
        full: it changes nothing whatever else it holds (the same on every node), and of N
        claims racing for a task N-1 are such, on every node."""
        op, node, _, seq, body = signed
        if op != "claim" or not isinstance(body, dict) or not isinstance(node, bytes):
            return None
        task_id = body.get("id")
        task = self.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or task.state not in ACTIVE or task.owner == node:
            return None
        self.counters[f"refused_{Reason.OWNED.value}"] += 1
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0
        return Outcome(index, op, task.id, node if len(node) == 32 else None, False,
                       Reason.OWNED, "another node holds the task", task, task.owner, seq=seq)

    def _authentic(self, cmd: Command) -> None:
        """Raises: Refused FORGED, ``cmd``'s signature does not verify for this network."""
        self.counters["verified"] += 1
        check_signature(cmd, self.network_id)

    def _not_coordinator(self, cmd: Command, term: int) -> str | None:
        """Why ``cmd`` is not the coordinator's, or None if it is."""
        if self.leader is not None and self.leader[0] == term:
            return None if cmd.node == self.leader[1] else "not the leader of the entry's term"
        return None if cmd.node in self.current_voters() else "not a voter"

    def _apply(self, index: int, cmd: Command, term: int) -> Outcome:
        # The signature is verified (``_authentic``, raising Refused FORGED) before anything
        # changes, but after the cheap refusals that leave the state as it is whoever sent
        # the command: of N concurrent claims, the N-1 losers cost no verification.
        if cmd.op == "expire":
            return self._expire(index, cmd, term)
        task_id = cmd.task_id
        task = self.tasks.get(task_id)
        if cmd.op == "announce":
            if task is not None:
                return self._refuse(index, cmd, Reason.DUPLICATE, f"task {task_id} exists", task)
            refused = self._creates(index, cmd)
            return self._done(index, cmd, self.tasks[task_id]) if refused is None else refused
        if task is None and cmd.op == "claim" and "announce" in cmd.body:
            refused = self._brought_in(index, cmd)
            if refused is not None:
                return refused
            task = self.tasks[task_id]
        if task is None:
            return self._refuse(index, cmd, Reason.UNKNOWN_TASK, f"no task {task_id}")
        if task.state in FINISHED:
            return self._refuse(index, cmd, Reason.FINISHED, f"task {task_id} is "
                                f"{task.state.value}", task)
        if cmd.op == "claim":
            return self._claim(index, cmd, task)
        if cmd.op == "release" and cmd.body["why"] != "given_up":
            why = self._not_coordinator(cmd, term)
            if why is not None:
                return self._refuse(index, cmd, Reason.NOT_COORDINATOR, why, task)
        self._authentic(cmd)
        if task.state not in ACTIVE or task.owner is None:
            return self._refuse(index, cmd, Reason.NOT_CLAIMED, f"nobody holds task {task_id}",
                                task)
        if cmd.op == "release":
            return self._release(index, cmd, task)
        if task.owner != cmd.node:
            return self._refuse(index, cmd, Reason.NOT_OWNER, "another node holds the task",
                                task)
        if cmd.seq <= task.seq:
            return self._refuse(index, cmd, Reason.REPLAY, f"seq {cmd.seq}: the owner's last "
                                f"on this task was {task.seq}", task)
        item = HistoryItem(index, cmd.at, cmd.op, cmd.node,
                           cmd.body.get("text") or cmd.body.get("result") or "")
        if cmd.op == "progress":
            new = task.with_event(item, state=State.IN_PROGRESS, seq=cmd.seq)
            grown = new.footprint() - self.footprints.get(task.id, 0)
            if grown > 0 and self.bytes_held + grown > self.limits.max_bytes:
                return self._refuse(index, cmd, Reason.FULL, f"{self.bytes_held} bytes of "
                                    "tasks held, the most there may be", task)
            return self._done(index, cmd, new)
        finished = State.COMPLETED if cmd.op == "complete" else State.FAILED
        self._holding[task.owner] -= 1
        return self._done(index, cmd, task.with_event(item, state=finished, seq=cmd.seq,
                                                      result=cmd.body.get("result")))

    def _creates(self, index: int, cmd: Command) -> Outcome | None:
        """Create the task the announce ``cmd`` names (not held yet) at ``index``; None, or
        the refusal (counted, charged to ``cmd``)."""
        self._authentic(cmd)
        if cmd.at <= self.floor:
            return self._refuse(index, cmd, Reason.REPLAY, "announced before the last "
                                "expiry (a replay, or the proposer's clock is behind)")
        if len(self.tasks) >= self.limits.max_tasks:
            return self._refuse(index, cmd, Reason.FULL,
                                f"{len(self.tasks)} tasks held, the most there may be")
        new = task_of(cmd, index)
        if self.bytes_held + new.footprint() > self.limits.max_bytes:
            return self._refuse(index, cmd, Reason.FULL, f"{self.bytes_held} bytes of "
                                "tasks held, the most there may be")
        self._store(new)
        self.counters["announce"] += 1
        return None

    def _brought_in(self, index: int, claim: Command) -> Outcome | None:
        """The claim ``claim`` of a task not held yet carries its announce (made over
        gossip, ``_announced``): create the task first. None, or the claim's refusal, which
        names what was wrong with the announce."""
        try:
            cmd = decode(claim.body["announce"], self.limits, self.network_id, verify=False)
            if cmd.op != "announce" or cmd.task_id != claim.task_id:
                raise Refused(Reason.MALFORMED, f"not {claim.task_id}'s announce")
            not_created = self._creates(index, cmd)
        except Refused as bad:
            return self._refuse(index, claim, bad.reason, f"its announce: {bad.text}")
        if not_created is not None:
            return replace(not_created, op=claim.op, node=claim.node, seq=claim.seq,
                           text=f"its announce: {not_created.text}")
        return None

    def _claim(self, index: int, cmd: Command, task: Task) -> Outcome:
        if task.state in ACTIVE:
            if task.owner == cmd.node:  # a repeated claim of the winner: still won
                self._authentic(cmd)
                return Outcome(index, cmd.op, task.id, cmd.node, True, task=task,
                               winner=task.owner, changed=False, seq=cmd.seq)
            return self._refuse(index, cmd, Reason.OWNED, "another node holds the task", task)
        assert task.state in CLAIMABLE
        self._authentic(cmd)
        if cmd.body["gen"] != task.claims:
            return self._refuse(index, cmd, Reason.STALE, f"claim {cmd.body['gen'] + 1} of the "
                                f"task, but {task.claims} were decided (a replay, or the "
                                "claimant was behind)", task)
        why = check_eligible(task, cmd.profile(), self._holding[cmd.node])
        if why is not None:
            return self._refuse(index, cmd, why[0], why[1], task)
        self._holding[cmd.node] += 1
        item = HistoryItem(index, cmd.at, "claimed", cmd.node)
        return self._done(index, cmd, task.with_event(item, state=State.CLAIMED, owner=cmd.node,
                                                      claimed_at=cmd.at, claims=task.claims + 1,
                                                      seq=cmd.seq))

    def _release(self, index: int, cmd: Command, task: Task) -> Outcome:
        owner, why = cmd.body["owner"], cmd.body["why"]
        assert task.owner is not None
        if task.owner != owner or task.claims != cmd.body["gen"]:
            return self._refuse(index, cmd, Reason.STALE, "the task changed hands", task)
        if why == "given_up":
            if cmd.node != owner:
                return self._refuse(index, cmd, Reason.NOT_OWNER,
                                    "only the owner gives a task up", task)
            if cmd.seq <= task.seq:
                return self._refuse(index, cmd, Reason.REPLAY, f"seq {cmd.seq}: the owner's "
                                    f"last on this task was {task.seq}", task)
        elif why == "deadline":
            due = task.due_at()
            if due is None or cmd.at < due:
                return self._refuse(index, cmd, Reason.STALE, "its deadline has not passed",
                                    task)
        self._holding[owner] -= 1
        item = HistoryItem(index, cmd.at, "released", cmd.node, why)
        done = self._done(index, cmd, task.with_event(item, state=State.REASSIGNED, owner=None,
                                                      claimed_at=None))
        return replace(done, released=owner)

    def _expire(self, index: int, cmd: Command, term: int) -> Outcome:
        why = self._not_coordinator(cmd, term)
        if why is not None:
            return self._refuse(index, cmd, Reason.NOT_COORDINATOR, why)
        self._authentic(cmd)
        before = cmd.body["before"]
        if before <= self.floor or before > cmd.at:
            return self._refuse(index, cmd, Reason.STALE, f"expiry before {before}: not after "
                                "the last one, or after its own time")
        self.floor = before
        self._meta_changed = True
        gone = [t.id for t in self.tasks.values() if t.state in FINISHED and t.last_at < before]
        for task_id in gone:
            del self.tasks[task_id]
            self.bytes_held -= self.footprints.pop(task_id, 0)
            self._changed.discard(task_id)
            self._removed.add(task_id)
        self.counters["expire"] += 1
        self.counters["expired"] += len(gone)
        return Outcome(index, cmd.op, "", cmd.node, True, text=f"{len(gone)} tasks expired",
                       changed=bool(gone), seq=cmd.seq)

    def _store(self, task: Task) -> None:
        self.tasks[task.id] = task
        size = task.footprint()
        self.bytes_held += size - self.footprints.get(task.id, 0)
        self.footprints[task.id] = size
        self._changed.add(task.id)
        self._removed.discard(task.id)

    def _done(self, index: int, cmd: Command, task: Task) -> Outcome:
        if cmd.op != "announce":  # ``_creates`` stored and counted it
            self._store(task)
            self.counters[cmd.op] += 1
        return Outcome(index, cmd.op, task.id, cmd.node, True, task=task, winner=task.owner,
                       seq=cmd.seq)

    def _refuse(self, index: int, cmd: Command, reason: Reason, text: str,
                task: Task | None = None) -> Outcome:
        self.counters[f"refused_{reason.value}"] += 1
        return Outcome(index, cmd.op, cmd.task_id, cmd.node, False, reason, text, task,
                       task.owner if task is not None else None, seq=cmd.seq)

    # --- persistence --------------------------------------------------------------------------

    @property
    def unsaved(self) -> bool:
        """Whether what the store keeps changed since ``take_changes``: tasks or ``meta``.
        The applied index alone does not count: entries that changed nothing (commands of
        other components) are applied again from the log after a restart, changing nothing
        again, so they are not worth a durable write each."""
        return bool(self._changed or self._removed or self._replaced or self._meta_changed)

    def take_changes(self) -> tuple[bool, list[Task]]:
        """(whether the state was replaced wholesale, the tasks changed) since the last call;
        the tasks removed since are ``take_removed``'s."""
        self._meta_changed = False
        replaced, self._replaced = self._replaced, False
        changed = [self.tasks[i] for i in sorted(self._changed) if i in self.tasks]
        self._changed.clear()
        return replaced, changed

    def take_removed(self) -> list[str]:
        """The IDs of the tasks expired since the last call."""
        removed = sorted(self._removed)
        self._removed.clear()
        return removed

    def meta(self) -> dict[str, Any]:
        """What the state holds besides the tasks (snapshots and the store carry it)."""
        return {"voters": None if self.voters is None else sorted(self.voters),
                "leader": None if self.leader is None else list(self.leader),
                "floor": None if self.floor == -math.inf else self.floor}

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(
            [_SNAPSHOT_VERSION, self.applied, [t.encode() for t in self.tasks.values()],
             self.meta()], use_bin_type=True)
        return packed

    def restore(self, index: int, data: bytes) -> None:
        """Replace the state with a snapshot's (taken at ``index``).

        Raises:
            DecodeError: not a task snapshot, or taken at another index.
        """
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(raw, list) or not raw or raw[0] not in (1, _SNAPSHOT_VERSION):
                raise ValueError("not a task snapshot of a known version")
            version, applied, rows, *rest = raw
            if applied != index or len(rest) != (version == _SNAPSHOT_VERSION):
                raise ValueError(f"version {version!r} at {applied!r}, expected index {index}")
            tasks = [Task.decode(row) for row in rows]
            meta = rest[0] if rest else None
            self._check_meta(meta)
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise DecodeError(f"task snapshot: {exc}") from None
        self.load(index, tasks, meta)

    @staticmethod
    def _check_meta(meta: Any) -> None:
        """Raises: ValueError, TypeError or KeyError for anything not ``meta()``'s form."""
        if meta is None:
            return
        voters, leader, floor = meta["voters"], meta["leader"], meta["floor"]
        if voters is not None and not all(isinstance(v, bytes) for v in voters):
            raise TypeError("voters: not node IDs")
        if leader is not None and not (len(leader) == 2 and isinstance(leader[0], int)
                                       and isinstance(leader[1], bytes)):
            raise TypeError("leader: not [term, node ID]")
        if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int | float)):
            raise TypeError("floor: not a time")

    def load(self, applied: int, tasks: list[Task], meta: dict[str, Any] | None = None) -> None:
        """Take ``tasks`` (and ``meta``, as ``meta()`` gave it; None: none) as the state at
        ``applied`` (from a snapshot or the store); the next ``take_changes`` says the state
        was replaced."""
        meta = meta or {}
        self.applied = applied
        self.tasks = {t.id: t for t in tasks}
        voters, leader, floor = meta.get("voters"), meta.get("leader"), meta.get("floor")
        self.voters = None if voters is None else frozenset(voters)
        self.leader = None if leader is None else (leader[0], leader[1])
        self.floor = -math.inf if floor is None else float(floor)
        self._holding = Counter(t.owner for t in tasks if t.state in ACTIVE and t.owner)
        self.footprints = {t.id: t.footprint() for t in tasks}
        self.bytes_held = sum(self.footprints.values())
        self._changed.clear()
        self._removed.clear()
        self._replaced = True

    def state(self) -> dict[str, Any]:
        """Counts by state, for the status."""
        by_state = Counter(t.state.value for t in self.tasks.values())
        return {"applied": self.applied, "tasks": len(self.tasks), "by_state": dict(by_state),
                "bytes": self.bytes_held,
                "floor": None if self.floor == -math.inf else self.floor}
