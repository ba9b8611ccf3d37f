"""Task changes reach this node's signed log durably: queued for the log in the task state's own
save transaction (``LogService.queue_in``), never in the log's bounded in-memory queue.

A review (R1, R2) found two ways to lose them for good: a catch-up applying more than the
queue's 4,096 of this node's own changes dropped the rest (33 of 4,300; ``append_queue_full``),
and a kill -9 between the state's commit and the log's lost the records of changes that are
not applied again after the restart (the stored state is already past them). Real LMDB, the
task service's own apply path, a real child process killed with SIGKILL.

This file is also the child's program: ``python test_log_records.py DIR MODE COUNT``.
"""

from __future__ import annotations

import hashlib
import itertools
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from bzzz_edge.consensus import Entry, EntryKind
from bzzz_edge.consensus.storage import DATABASES as RAFT_DATABASES
from bzzz_edge.identity import Identity
from bzzz_edge.signedlog import decode_entry
from bzzz_edge.signedlog.report import verify
from bzzz_edge.signedlog.service import MAX_QUEUED, LogService
from bzzz_edge.signedlog.storage import DATABASES as LOG_DATABASES
from bzzz_edge.store import Store
from bzzz_edge.tasks import Profile, sign
from bzzz_edge.tasks.service import TaskService
from bzzz_edge.tasks.storage import DATABASES as TASK_DATABASES

NET = b"N" * 16
GROUP = b"G" * 40
CATCH_UP = MAX_QUEUED + 204  # the reviewer's 4,300
CRASHED = 300  # changes applied by the child before it is killed
MORE = 20  # changes applied after the restart


def _identity() -> Identity:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Identity(Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"log records node").digest()))


class _Follower:
    """The consensus service as the task service sees it on a follower: the group, a leader
    that is not us (the release loop just waits)."""

    group = GROUP
    leader = b"L" * 32

    async def next_role_change(self) -> None:
        await trio.sleep_forever()


def _open(path: Path) -> Store:
    store = Store(path, map_size=2**27,
                  databases=(*TASK_DATABASES, *RAFT_DATABASES, *LOG_DATABASES))
    if store.get("raft", b"group") is None:
        store.put("raft", b"group", GROUP)
    return store


def _commands(identity: Identity, first: int, count: int) -> list[bytes]:
    """``count`` announces of this node's own (each one a record of its signed log)."""
    seq = itertools.count(first + 1)
    return [sign(identity, NET, "announce", 100.0, {
        "id": f"own{i}", "title": f"task {i}", "description": "", "role": "",
        "capabilities": [], "priority": 0, "scopes": [], "deadline": None,
        "address": "ucxl://a:b@p:t/*^/"}, seq=next(seq)) for i in range(first, first + count)]


def _service(store: Store, identity: Identity, signed_log: LogService) -> TaskService:
    service = TaskService(identity, store, network_id=NET, profile=Profile({}, frozenset(), 10),
                          release_after=10.0)
    service.connect(consensus=_Follower(), signed_log=signed_log)  # type: ignore[arg-type]
    return service


def _apply(service: TaskService, commands: list[bytes], first_index: int = 1) -> None:
    """Apply ``commands`` at log indexes from ``first_index`` as the consensus driver does in
    one batch: one after the other, no checkpoint between them (a restart's replay gives the
    indexes of entries the store already holds: they are skipped)."""
    for index, data in enumerate(commands, first_index):
        service.decisions.apply(Entry(1, index, EntryKind.COMMAND, data))


def _entries(signed_log: LogService) -> list[tuple[str, str]]:
    """(type, task ID or "") of every entry of the signed log, in order, after checking the
    whole log (chain, signatures, Merkle nodes, signed root: what ``bzzz-edge log verify``
    checks)."""
    with signed_log.reader() as reader:
        result = verify(reader, signed_log.author)
        assert result["ok"], result
        key = _identity().private_key.public_key()
        entries = [decode_entry(e, key) for _, e in reader.entries(signed_log.author)]
    assert [e.index for e in entries] == list(range(len(entries)))
    return [(e.type, e.data.get("id", "")) for e in entries]


def _task_records(store: Store, signed_log: LogService) -> list[tuple[str, str]]:
    """(type, task ID) of the task entries of the signed log, in order (checked first)."""
    return [(t, i) for t, i in _entries(signed_log) if t.startswith("task_")]


def _pending(store: Store) -> int:
    with store.reading() as txn:
        return sum(1 for _ in txn.cursor(db=store.db("log_pending")))


def test_a_catch_up_of_more_own_changes_than_the_queue_holds_logs_them_all(
        tmp_path: Path) -> None:
    identity = _identity()
    store = _open(tmp_path / "store")
    signed_log = LogService(store, identity)
    service = _service(store, identity, signed_log)

    async def main() -> None:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                await nursery.start(signed_log.run)
                await nursery.start(service.run)
                _apply(service, _commands(identity, 0, CATCH_UP))  # one driver batch
                await service.flush()  # the save (``_persist`` makes it a second later)
                await signed_log.flush()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        records = _task_records(store, signed_log)
        assert records == [("task_announced", f"own{i}") for i in range(CATCH_UP)], len(records)
        assert signed_log.counters["append_queue_full"] == 0
        assert _pending(store) == 0
    finally:
        store.close()


def test_records_of_a_save_killed_before_the_log_appended_them_are_logged_once(
        tmp_path: Path) -> None:
    # The child saves the task state (and with it the records, queued for the log) and is
    # killed before its log appends anything: the window between the two commits.
    _run_child_until_killed(tmp_path, "saved")
    identity = _identity()
    store = _open(tmp_path / "store")
    try:
        with store.reading() as txn:
            assert txn.get(b"meta", db=store.db("tasks")) is not None  # the state was saved
        assert _pending(store) == CRASHED
        signed_log = LogService(store, identity)
        assert signed_log.length == 0  # nothing appended before the kill
        _restart(store, identity, signed_log, replayed=CRASHED)
        records = _task_records(store, signed_log)
        assert records == [("task_announced", f"own{i}") for i in range(CRASHED + MORE)]
        assert _pending(store) == 0
        # What the crash left is appended before anything new: the start's own entry, queued
        # in memory before the log ran, comes after it (and after whatever else the store
        # held by then: what the store holds goes first).
        entries = _entries(signed_log)
        assert entries[:CRASHED] == records[:CRASHED]
        assert entries.index(("node_started", "")) >= CRASHED
    finally:
        store.close()


def test_changes_killed_before_their_save_are_logged_once_when_applied_again(
        tmp_path: Path) -> None:
    # The other side of the window: applied, not saved yet (saves come a second after a
    # change). Neither the state nor the records survive; the replay records them.
    _run_child_until_killed(tmp_path, "applied")
    identity = _identity()
    store = _open(tmp_path / "store")
    try:
        assert _pending(store) == 0
        signed_log = LogService(store, identity)
        _restart(store, identity, signed_log, replayed=CRASHED)
        records = _task_records(store, signed_log)
        assert records == [("task_announced", f"own{i}") for i in range(CRASHED + MORE)]
    finally:
        store.close()


def _restart(store: Store, identity: Identity, signed_log: LogService, *, replayed: int) -> None:
    """Start again as a node does: the task state from the store, the decision log replayed
    from its first entry (entries the state holds are skipped), then new changes."""
    service = _service(store, identity, signed_log)
    commands = _commands(identity, 0, replayed + MORE)
    signed_log.record("node_started", {"version": "test"})  # as the node does before ``run``

    async def main() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(signed_log.run)
                await nursery.start(service.run)
                _apply(service, commands)
                await service.flush()
                await signed_log.flush()
                nursery.cancel_scope.cancel()

    trio.run(main)


def _run_child_until_killed(tmp_path: Path, mode: str) -> None:
    """Run the child until it says ``mode`` is reached, then SIGKILL it."""
    child = subprocess.Popen([sys.executable, __file__, str(tmp_path / "store"), mode,
                              str(CRASHED)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stderr is not None
        ready, _, _ = select.select([child.stdout], [], [], 120)
        line = child.stdout.readline().decode().strip() if ready else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert line == mode, (line, child.stderr.read().decode()[-2000:])
    assert child.returncode == -signal.SIGKILL


def _child(path: str, mode: str, count: int) -> None:
    """Apply ``count`` own changes; ``saved``: save them (the log not running, so nothing is
    appended); ``applied``: do not. Then say so and wait to be killed."""
    identity = _identity()
    store = _open(Path(path))
    signed_log = LogService(store, identity)
    service = _service(store, identity, signed_log)

    async def main() -> Any:
        _apply(service, _commands(identity, 0, count))
        if mode == "saved":
            await service.flush()
        print(mode, flush=True)
        await trio.sleep_forever()

    trio.run(main)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))


def test_changes_a_snapshot_carried_this_node_past_are_recorded_from_the_tasks_history(
        tmp_path: Path) -> None:
    # A follower far behind installs the leader's snapshot (or a crash came between a
    # snapshot and the task state's save): the changes in it are never applied here one by
    # one, and were never recorded. Rebuilt from the tasks' histories: this node's own
    # announces and its claim of another node's task; another node's alone are not ours.
    identity, other = _identity(), Identity.generate()
    leader_store = _open(tmp_path / "leader")
    leader = _service(leader_store, other, LogService(leader_store, other))
    theirs = sign(other, NET, "announce", 100.0, {
        "id": "theirs", "title": "theirs", "description": "", "role": "", "capabilities": [],
        "priority": 0, "scopes": [], "deadline": None, "address": "ucxl://a:b@p:t/*^/"}, seq=1)
    unrelated = sign(other, NET, "announce", 100.0, {
        "id": "unrelated", "title": "x", "description": "", "role": "", "capabilities": [],
        "priority": 0, "scopes": [], "deadline": None, "address": "ucxl://a:b@p:t/*^/"}, seq=2)
    claim = sign(identity, NET, "claim", 101.0, {
        "id": "theirs", "profile": Profile({}, frozenset(), 10).encode(), "gen": 0}, seq=100)
    commands = [*_commands(identity, 0, 3), theirs, unrelated, claim]
    _apply(leader, commands)
    assert leader.machine.tasks["theirs"].owner == identity.node_id
    snapshot, at = leader.decisions.snapshot(), len(commands)
    leader_store.close()

    store = _open(tmp_path / "store")
    signed_log = LogService(store, identity)
    service = _service(store, identity, signed_log)

    async def main() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(signed_log.run)
                await nursery.start(service.run)
                service.decisions.restore(at, snapshot)
                await service.flush()
                await signed_log.flush()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        assert _task_records(store, signed_log) == [
            ("task_announced", "own0"), ("task_announced", "own1"), ("task_announced", "own2"),
            ("task_claimed", "theirs")]
        assert service.counters["records_rebuilt_after_snapshot"] == 4
    finally:
        store.close()
