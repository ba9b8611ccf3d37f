"""The signed log in real node processes: membership changes logged, logs replicated between
two nodes, `log show` / `log verify` through the CLI on running and stopped nodes, and a
tampered log refused by a peer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import lmdb
import pytest

from bzzz_edge.identity import Identity
from bzzz_edge.signedlog import verify_entry

pytestmark = pytest.mark.slow


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", *args], capture_output=True,
                          text=True, timeout=120, input=stdin)


def _events(node, since: int = 0) -> list[dict]:
    out = []
    for line in node.lines[since:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "event" in entry:
            out.append(entry)
    return out


def _wait_for_event(node, event: str, *, since: int = 0, timeout: float = 20.0,
                    where=lambda entry: True) -> dict:
    """Wait for a structured log event (the ``event`` field of the node's JSON log lines) from
    line ``since`` on, rather than for the wording of a message."""
    def found():
        return next((e for e in _events(node, since) if e["event"] == event and where(e)), None)

    with node._cond:
        if not node._cond.wait_for(lambda: found() is not None or node.proc.poll() is not None,
                                   timeout) or found() is None:
            raise AssertionError(f"no {event} event:\n" + "\n".join(node.lines))
        return found()


def _node_id(data_dir) -> str:
    return Identity.load(data_dir / "identity.key").display_id


def _start_pair(one_network, spawn_node):
    a_dir, b_dir = one_network(["a", "b"])
    a = spawn_node(a_dir, "--log-level", "debug")
    a.wait_ready()
    b = spawn_node(b_dir, "--log-level", "debug",
                   "--set", f"network.bootstrap_peers=127.0.0.1:{a.peer_port}")
    b.wait_ready()
    return a_dir, b_dir, a, b


def test_two_nodes_replicate_each_others_logs_and_they_verify(one_network, spawn_node):
    a_dir, b_dir, a, b = _start_pair(one_network, spawn_node)
    b_id = _node_id(b_dir)
    _wait_for_event(a, "log_replicated")
    # B logged A joining; A holds B's log (running node: asked over its API).
    shown = _cli("log", "show", "--data-dir", str(a_dir), "--node", b_id, "--json")
    assert shown.returncode == 0, shown.stderr
    log = json.loads(shown.stdout)
    assert log["node_id"] == b_id and not log["corrupt"]
    assert log["entries"][0]["type"] == "node_started"
    text = _cli("log", "show", "--data-dir", str(b_dir), "--limit", "5")
    assert "node_started" in text.stdout and "entries, root" in text.stdout
    _check_one_entry_alone(a.api, b_id)
    mark = len(b.lines)
    put = _cli("ucxl", "put", "ucxl://agent:role@project:task/*^/notes/a.md", "-",
               "--data-dir", str(b_dir), stdin="a note")
    assert put.returncode == 0, put.stderr
    # A store write, logged (the event's reason lists the types of the entries appended).
    _wait_for_event(b, "log_appended", since=mark, where=lambda e: "ucxl_put" in e["reason"])
    running = _cli("log", "verify", "--data-dir", str(a_dir), "--node", b_id)
    assert running.returncode == 0, running.stderr
    assert "verified" in running.stdout
    b.signal(signal.SIGTERM)
    assert b.wait_exit() == 0
    _wait_for_event(a, "member_status", where=lambda e: e["status"] == "left")  # appended
    a.signal(signal.SIGTERM)
    assert a.wait_exit() == 0
    own = json.loads(_cli("log", "show", "--data-dir", str(a_dir), "--json").stdout)
    assert {"node_started", "peer_joined", "peer_left"} <= {e["type"] for e in own["entries"]}
    theirs = json.loads(_cli("log", "show", "--data-dir", str(b_dir), "--json").stdout)
    puts = [e for e in theirs["entries"] if e["type"] == "ucxl_put"]
    assert puts and puts[0]["data"]["address"].endswith("*1/notes/a.md")
    for args in ([], ["--node", b_id]):  # stopped: straight from the data dir
        stopped = _cli("log", "verify", "--data-dir", str(a_dir), *args)
        assert stopped.returncode == 0, stopped.stderr


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _check_one_entry_alone(api: str, node_id: str) -> None:
    """A client checks one entry of a replicated log from the entry, a proof and a head."""
    status, body = _get(f"{api}/api/v1/log/proof?node={node_id}&index=0")
    assert status == 200, body
    entry = verify_entry(bytes.fromhex(body["entry"]), [bytes.fromhex(h) for h in body["proof"]],
                         bytes.fromhex(body["head"]))
    assert entry.index == 0 and entry.type == "node_started"
    assert _get(f"{api}/api/v1/log/proof?node={node_id}&index=99999999999999999999")[0] == 404
    assert _get(f"{api}/api/v1/log/proof?node={node_id}&index=x")[0] == 400
    assert _get(f"{api}/api/v1/log?node=nonsense")[0] == 400
    status, held = _get(f"{api}/api/v1/logs")
    assert status == 200 and node_id in {entry["node_id"] for entry in held["logs"]}


def _tamper(data_dir, index: int) -> None:
    env = lmdb.open(str(data_dir / "store"), max_dbs=64, subdir=True)
    try:
        db = env.open_db(b"log_entries")
        author = Identity.load(data_dir / "identity.key").node_id
        with env.begin(write=True) as txn:
            key = author + index.to_bytes(8, "big")
            raw = bytearray(txn.get(key, db=db))
            raw[len(raw) // 3] ^= 0x20
            txn.put(key, bytes(raw), db=db)
    finally:
        env.close()


def test_a_tampered_log_fails_verify_and_is_refused_by_a_peer(one_network, spawn_node):
    b_dir, c_dir = one_network(["b", "c"])
    b = spawn_node(b_dir)
    b.wait_ready()
    b.signal(signal.SIGTERM)
    assert b.wait_exit() == 0
    _tamper(b_dir, 0)
    bad = _cli("log", "verify", "--data-dir", str(b_dir))
    assert bad.returncode == 1
    assert "entry 0 is bad" in bad.stderr and "signature" in bad.stderr
    b = spawn_node(b_dir)
    b.wait_ready()
    c = spawn_node(c_dir, "--set", f"network.bootstrap_peers=127.0.0.1:{b.peer_port}")
    c.wait_ready()
    _wait_for_event(c, "log_refused", where=lambda e: "entry 0" in e["reason"])
    held = _cli("log", "show", "--data-dir", str(c_dir), "--node", _node_id(b_dir))
    assert held.returncode == 2 and "no log" in held.stderr
