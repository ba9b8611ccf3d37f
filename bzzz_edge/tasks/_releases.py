"""Which tasks the coordinator releases, and why. No I/O.

An owner that membership holds dead (or departed) for ``release_after`` seconds loses its
tasks (``owner_dead``), measured from membership's own record of when it died; an owner that
membership no longer knows at all (its tombstone expired, or this coordinator never heard of
it) counts from when this planner first noticed. A task whose owner held it past its deadline
is released too (``deadline``, by the wall clock against the claim's time). This node never
releases its own tasks as dead. Each release names the owner it was decided against, so a
release that commits after the task changed hands is refused (``Reason.STALE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..membership._messages import Status
from ._machine import TaskMachine

__all__ = ["ReleasePlanner"]

_GONE = (Status.DEAD, Status.LEFT)


class ReleasePlanner:
    """The coordinator's choice of releases; ``reset`` when this node stops coordinating."""

    def __init__(self, node_id: bytes, release_after: float) -> None:
        self.node_id = node_id
        self.release_after = release_after
        self._missing_since: dict[bytes, float] = {}

    def reset(self) -> None:
        self._missing_since.clear()

    def due(self, machine: TaskMachine, members: Iterable[Any] | None, *, wall: float,
            now: float) -> list[tuple[str, bytes, str]]:
        """(task, owner, why) to release at wall time ``wall`` and monotonic time ``now``;
        ``members``: membership's records (``node``, ``status``, ``since``), None while
        membership does not run (then no owner counts as dead)."""
        dead = self._dead_owners(machine, members, now) if members is not None else set()
        out: list[tuple[str, bytes, str]] = []
        for task in machine.active():
            assert task.owner is not None
            due = task.due_at()
            if task.owner in dead:
                out.append((task.id, task.owner, "owner_dead"))
            elif due is not None and wall >= due:
                out.append((task.id, task.owner, "deadline"))
        return out

    def _dead_owners(self, machine: TaskMachine, members: Iterable[Any], now: float
                     ) -> set[bytes]:
        table = {m.node: m for m in members}
        owners = {t.owner for t in machine.active() if t.owner not in (None, self.node_id)}
        for gone in set(self._missing_since) - owners:
            del self._missing_since[gone]
        dead: set[bytes] = set()
        for owner in owners:
            assert owner is not None
            member = table.get(owner)
            if member is None:
                since = self._missing_since.setdefault(owner, now)
            elif member.status in _GONE:
                since = member.since
            else:
                self._missing_since.pop(owner, None)
                continue
            if now - since >= self.release_after:
                dead.add(owner)
        return dead
