"""`bzzz-edge log show` and `log verify` on a stopped node's data dir: output, exit codes and
user errors (one line, exit 2)."""

from __future__ import annotations

import json

import lmdb
import trio

from bzzz_edge.cli import main
from bzzz_edge.identity import Identity
from bzzz_edge.signedlog.service import LogService
from bzzz_edge.signedlog.storage import DATABASES
from bzzz_edge.store import Store


def _fill(data_dir, n: int) -> Identity:
    identity = Identity.load(data_dir / "identity.key")
    store = Store(data_dir / "store", map_size=8 * 2**20, databases=DATABASES)

    async def append() -> None:
        service = LogService(store, identity)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for i in range(n):
                await service.append("task_progress", {"task": "t", "pct": i})
            nursery.cancel_scope.cancel()

    try:
        trio.run(append)
    finally:
        store.close()
    return identity


def test_verify_and_show_on_a_stopped_node(initialised_node, capsys):
    identity = _fill(initialised_node, 30)
    assert main(["log", "verify", "--data-dir", str(initialised_node)]) == 0
    assert "30 entries verified" in capsys.readouterr().out
    assert main(["log", "show", "--data-dir", str(initialised_node), "--limit", "3",
                 "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["node_id"] == identity.display_id and shown["length"] == 30
    assert [e["index"] for e in shown["entries"]] == [27, 28, 29]
    assert shown["entries"][-1]["data"] == {"pct": 29, "task": "t"}
    assert main(["log", "show", "--data-dir", str(initialised_node), "--limit", "0"]) == 0
    assert "30 entries" in capsys.readouterr().out


def test_verify_names_the_first_bad_entry_and_exits_1(initialised_node, capsys):
    identity = _fill(initialised_node, 12)
    env = lmdb.open(str(initialised_node / "store"), max_dbs=64)
    db = env.open_db(b"log_entries")
    with env.begin(write=True) as txn:
        txn.delete(identity.node_id + (4).to_bytes(8, "big"), db=db)
    env.close()
    assert main(["log", "verify", "--data-dir", str(initialised_node)]) == 1
    err = capsys.readouterr().err
    assert "entry 4 is bad" in err and "missing" in err
    assert main(["log", "verify", "--json", "--data-dir", str(initialised_node)]) == 1
    assert json.loads(capsys.readouterr().out)["index"] == 4


def test_user_errors_are_one_line_and_exit_2(initialised_node, capsys):
    assert main(["log", "verify", "--data-dir", str(initialised_node)]) == 2
    assert "no store" in capsys.readouterr().err
    _fill(initialised_node, 1)
    assert main(["log", "verify", "--data-dir", str(initialised_node), "--node", "XYZ"]) == 2
    assert "error" in capsys.readouterr().err
    stranger = Identity.generate().display_id
    assert main(["log", "show", "--data-dir", str(initialised_node), "--node", stranger]) == 2
    err = capsys.readouterr().err
    assert "no log of" in err and len(err.strip().splitlines()) == 1
    assert main(["log", "show", "--data-dir", str(initialised_node), "--limit", "-1"]) == 2


def test_verify_fails_on_a_log_holding_fork_evidence(initialised_node, capsys):
    identity = _fill(initialised_node, 5)
    from bzzz_edge.signedlog import Fork
    from bzzz_edge.signedlog.storage import LogDbs, write_fork

    env = lmdb.open(str(initialised_node / "store"), max_dbs=64)
    dbs = LogDbs(*(env.open_db(name.encode()) for name in DATABASES))
    with env.begin(write=True) as txn:
        write_fork(txn, dbs, Fork(identity.node_id, 3, "entry", b"ours", b"theirs"), 1)
    env.close()
    assert main(["log", "verify", "--data-dir", str(initialised_node)]) == 1
    assert "entry 3 is bad: FORK" in capsys.readouterr().err
    assert main(["log", "show", "--data-dir", str(initialised_node), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["corrupt"] and shown["forks"][0]["index"] == 3
