"""Tasks announced over gossip and not in the decision log yet. No I/O.

An announce is not a command of the log: the announcer signs it (the same signed form as a log
command, ``_commands``) and publishes it on ``bzzz/coordination/v1``; every node keeps it here
until a claim carries it into the log (``_machine``: the first claim of a task holds its
announce, and applying that claim creates the task on every node, then decides the claim).
That is what DESIGN asks (announced over gossip, claimed through the log) and it saves a whole
commit per task: a claim round is one commit, not two.

What is kept is what a node heard, not agreed state: a node that was down when a task was
announced hears of it from gossip's message cache when it connects within ``gossip.history``,
and later from the announcer itself, which tells every node that connects its own announces
still pending (``_share``); with the announcer gone too, not until the task is claimed.
Nothing here needs agreement: the
command's signature is checked where it matters, when a claim brings it into the log (every
node, the same verdict); a gossip message proves its origin published it, and an announce is
taken only from its own node (``origin``), so nobody announces in another node's name.

Bounds, per announcing node and in all: at most ``per_node`` tasks of one node are held,
``per_node_bytes`` of them as ``Task.footprint`` counts (its oldest make room for its newest:
a node may flood only itself out), and at most ``max_tasks`` in all, ``max_bytes`` of them.
When those are reached, the node holding the most tasks (or bytes) gives up its oldest: node
IDs cost a peer holding the network key nothing to make, so identities it made up and filled
to their own bounds push out each other, not the honest nodes' few. Each command is at most
``_commands.MAX_ANNOUNCE`` bytes.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Container, Iterator
from dataclasses import dataclass

from ._commands import MAX_ANNOUNCE, Command, Refused, decode
from ._model import LIMITS, HistoryItem, Limits, Reason, Task

__all__ = ["Announced", "Pending", "task_of"]

PER_NODE = 1024
PER_NODE_BYTES = 2 * 1024 * 1024  # a typical task takes under 1 KB, a maximal one about 30
MAX_TASKS = 16384
MAX_BYTES = 16 * 1024 * 1024


def task_of(cmd: Command, index: int = 0) -> Task:
    """The task an announce command creates (at log ``index``; 0 while only announced)."""
    b = cmd.body
    return Task(id=b["id"], address=b["address"], title=b["title"],
                description=b["description"], role=b["role"], capabilities=b["capabilities"],
                priority=b["priority"], scopes=b["scopes"], deadline=b["deadline"],
                announced_by=cmd.node, announced_at=cmd.at, updated=index,
                history=(HistoryItem(index, cmd.at, "announced", cmd.node),))


class _Largest:
    """Which node holds the most of something (a ``Counter``'s largest key) in O(log n) per
    change: a max-heap of (amount, node) pushed at each change, entries that no longer match
    the counter skipped when met, and rebuilt once they outnumber the live ones."""

    def __init__(self, amounts: Counter[bytes]) -> None:
        self._amounts = amounts
        self._heap: list[tuple[int, bytes]] = []

    def changed(self, node: bytes) -> None:
        amount = self._amounts[node]
        if amount > 0:
            heapq.heappush(self._heap, (-amount, node))
        if len(self._heap) > 2 * len(self._amounts) + 64:
            self._heap = [(-a, n) for n, a in self._amounts.items() if a > 0]
            heapq.heapify(self._heap)

    def largest(self) -> bytes:
        while True:
            amount, node = self._heap[0]
            if self._amounts[node] == -amount:
                return node
            heapq.heappop(self._heap)


@dataclass(frozen=True, slots=True)
class Pending:
    """One announced task: its view and the signed announce a claim carries into the log."""

    task: Task
    command: bytes
    size: int  # ``task.footprint()``


class Announced:
    """The announced tasks this node heard of (see the module docstring)."""

    def __init__(self, limits: Limits = LIMITS, *, network_id: bytes = b"",
                 per_node: int = PER_NODE, per_node_bytes: int = PER_NODE_BYTES,
                 max_tasks: int = MAX_TASKS, max_bytes: int = MAX_BYTES) -> None:
        self.limits = limits
        self.network_id = network_id
        self.per_node, self.per_node_bytes = per_node, per_node_bytes
        self.max_tasks, self.max_bytes = max_tasks, max_bytes
        self._pending: OrderedDict[str, Pending] = OrderedDict()  # oldest first
        # Each node's task IDs, oldest first: pushing a node's oldest out is O(1), not a scan
        # of every node's (a peer filling its bucket would make each of its announces cost
        # a walk over the others').
        self._ids_of: dict[bytes, dict[str, None]] = {}
        self._count_by_node: Counter[bytes] = Counter()
        self._bytes_by_node: Counter[bytes] = Counter()
        self._most_tasks = _Largest(self._count_by_node)
        self._most_bytes = _Largest(self._bytes_by_node)
        self.bytes_held = 0
        self.counters: Counter[str] = Counter()
        # For the store: the IDs it holds (as of the last ``take_changes``) and the IDs added
        # or dropped since, kept to those two sets: a stream of announces pushing each other
        # out between writes leaves nothing behind.
        self._stored: set[str] = set()
        self._changed: dict[str, None] = {}  # (ordered: the store is written in order)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._pending

    def get(self, task_id: str) -> Pending | None:
        return self._pending.get(task_id)

    def tasks(self) -> Iterator[Task]:
        return (p.task for p in self._pending.values())

    def add(self, data: bytes, *, origin: bytes | None = None, floor: float = float("-inf"),
            held: Container[str] = ()) -> Pending:
        """Keep the announce ``data`` (published by ``origin``; None: made by this node).

        ``floor``: the machine's (an announce at or before it is a replay); ``held``: the
        IDs of the tasks the machine holds (the log has those already).

        Raises:
            Refused: MALFORMED (not an announce), FORGED (``origin`` is not its node),
                TOO_LONG, DUPLICATE (held already, here or in the log), REPLAY, FULL (larger
                than one node may hold).
        """
        try:
            if len(data) > MAX_ANNOUNCE:
                raise Refused(Reason.TOO_LONG, f"announce: {len(data)} bytes, at most "
                              f"{MAX_ANNOUNCE}")
            cmd = decode(data, self.limits, self.network_id, verify=False)
            if cmd.op != "announce":
                raise Refused(Reason.MALFORMED, f"{cmd.op} is not an announce")
            if origin is not None and origin != cmd.node:
                raise Refused(Reason.FORGED, "announced in another node's name")
            if cmd.task_id in held or cmd.task_id in self._pending:
                raise Refused(Reason.DUPLICATE, f"task {cmd.task_id} exists")
            if cmd.at <= floor:
                raise Refused(Reason.REPLAY, "announced before the last expiry")
            task = task_of(cmd)
            pending = Pending(task, data, task.footprint())
            if pending.size > min(self.per_node_bytes, self.max_bytes):
                raise Refused(Reason.FULL, f"{pending.size} bytes, more than one node's "
                              f"{self.per_node_bytes}")
        except Refused as refused:
            self.counters[f"refused_{refused.reason.value}"] += 1
            raise
        node = cmd.node
        while self._count_by_node[node] >= self.per_node \
                or self._bytes_by_node[node] + pending.size > self.per_node_bytes:
            self._drop_oldest_of(node)
        while len(self._pending) >= self.max_tasks:
            self._drop_oldest_of(self._most_tasks.largest())
        while self.bytes_held + pending.size > self.max_bytes:
            self._drop_oldest_of(self._most_bytes.largest())
        self._pending[task.id] = pending
        self._ids_of.setdefault(node, {})[task.id] = None
        self._count_by_node[node] += 1
        self._bytes_by_node[node] += pending.size
        self._most_tasks.changed(node)
        self._most_bytes.changed(node)
        self.bytes_held += pending.size
        self._changed[task.id] = None
        self.counters["announces_heard"] += 1
        return pending

    def drop(self, task_id: str) -> None:
        """Forget ``task_id`` (the log holds it now, or it was pushed out)."""
        pending = self._pending.pop(task_id, None)
        if pending is None:
            return
        node = pending.task.announced_by
        ids = self._ids_of[node]
        del ids[task_id]
        self._count_by_node[node] -= 1
        self._bytes_by_node[node] -= pending.size
        if not ids:
            del self._ids_of[node], self._count_by_node[node], self._bytes_by_node[node]
        else:
            self._most_tasks.changed(node)
            self._most_bytes.changed(node)
        self.bytes_held -= pending.size
        if task_id in self._stored:
            self._changed[task_id] = None
        else:  # never written: nothing to delete
            self._changed.pop(task_id, None)

    def drop_before(self, floor: float) -> None:
        """Forget every announce at or before ``floor`` (the log's expiry would refuse it)."""
        for task_id in [i for i, p in self._pending.items() if p.task.announced_at <= floor]:
            self.drop(task_id)

    def _drop_oldest_of(self, node: bytes) -> None:
        self.drop(next(iter(self._ids_of[node])))
        self.counters["announces_pushed_out"] += 1

    def take_changes(self) -> tuple[list[Pending], list[str]]:
        """(added, dropped) since the last call, for the store: what to write, and the IDs of
        rows to delete (written before, no longer held)."""
        added = [self._pending[i] for i in self._changed if i in self._pending]
        dropped = [i for i in self._changed if i not in self._pending]
        self._stored.difference_update(dropped)
        self._stored.update(p.task.id for p in added)
        self._changed = {}
        return added, dropped

    def forget_stored(self, task_ids: list[str]) -> None:
        """Rows the store holds that are not kept (refused when loaded): the next
        ``take_changes`` drops them."""
        for task_id in task_ids:
            if task_id not in self._pending:
                self._stored.add(task_id)
                self._changed[task_id] = None

    def all(self) -> list[Pending]:
        return list(self._pending.values())
