"""The CLI reaching real nodes: join, leave, force-leave, reload, monitor, status, tokens."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from bzzz_edge.cluster import LocalCluster
from bzzz_edge.identity import Identity
from bzzz_edge.lifecycle.shutdown import ExitCode

pytestmark = pytest.mark.slow

local_cluster = sys.modules["_bzzz_test_harness_local_cluster"]  # tests/_harness, via conftest


def _short(data_dir) -> str:
    return Identity.load(data_dir / "identity.key").display_id[:15]


def _tails(cluster: LocalCluster) -> str:
    return "\n".join(f"--- node{n.index}\n" + "\n".join(n.messages[-15:]) for n in cluster.nodes)


def test_join_dials_a_peer_and_both_see_each_other(node_pair, spawn_node, cli):
    a_dir, b_dir = node_pair
    a, b = spawn_node(a_dir), spawn_node(b_dir)
    a.wait_ready()
    b.wait_ready()
    result = cli("join", f"127.0.0.1:{b.peer_port}", "--api", a.api)
    assert result.returncode == 0, result.stderr
    assert Identity.load(b_dir / "identity.key").display_id in result.stdout
    a.wait_for_log(rf"^peer {_short(b_dir)} \S+ -> alive")
    b.wait_for_log(rf"^peer {_short(a_dir)} \S+ -> alive")
    peers = cli("peers", "--json", "--api", b.api)
    assert [p["status"] for p in json.loads(peers.stdout)] == ["alive"]
    for node in (a, b):
        node.signal(signal.SIGTERM)
        assert node.wait_exit() == ExitCode.OK


def test_join_with_a_bad_address_is_one_line(initialised_node, spawn_node, cli, one_line_error):
    node = spawn_node(initialised_node)
    node.wait_ready()
    one_line_error(cli("join", "no-port-here", "--api", node.api), "host:port")
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_leave_stops_the_node_and_peers_see_it_left(tmp_path, cli):
    with LocalCluster(tmp_path, 3) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        leaver = cluster.nodes[1]
        mark = cluster.log_positions()
        result = cli("leave", "--api", leaver.api)
        assert result.returncode == 0, result.stderr
        assert leaver.process is not None and leaver.process.wait(15) == 0
        cluster.wait_for_status(leaver, "left", timeout=10, since=mark)


def test_force_leave_drops_a_dead_peer_everywhere_and_a_live_one_refutes(tmp_path, cli):
    with LocalCluster(tmp_path, 3) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        first, live, dead = cluster.nodes
        mark = cluster.log_positions()
        cluster.kill(dead)
        cluster.wait_for_status(dead, "dead", timeout=10, since=mark)
        result = cli("force-leave", Identity.load(dead.data_dir / "identity.key").display_id,
                     "--api", first.api)
        assert result.returncode == 0, result.stderr
        # Both survivors drop it: the one asked, and the other through gossip.
        cluster.wait_for_status(dead, "left", timeout=10, since=mark)
        for index, table in cluster.peer_tables().items():
            row = next(p for pid, p in table.items() if pid[:15] == dead.short_id)
            assert row["status"] == "left", (index, row)
        # A live node told it left says otherwise, with a higher incarnation.
        mark = cluster.log_positions()
        result = cli("force-leave", Identity.load(live.data_dir / "identity.key").display_id,
                     "--api", first.api)
        assert result.returncode == 0, result.stderr
        first.wait_for_log(rf"^peer {live.short_id} left -> alive", timeout=10,
                           start=mark[first.index])
        assert cluster.stop()[:2] == [0, 0], _tails(cluster)


def test_force_leave_of_an_unknown_node_is_one_line(initialised_node, spawn_node, cli,
                                                    one_line_error, node_pair):
    node = spawn_node(initialised_node)
    node.wait_ready()
    stranger = Identity.load(node_pair[0] / "identity.key").display_id
    one_line_error(cli("force-leave", stranger, "--api", node.api), "no member")
    one_line_error(cli("force-leave", "not-an-id", "--api", node.api), "node ID")
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_reload_applies_the_config_like_sighup(initialised_node, spawn_node, cli, one_line_error):
    node = spawn_node(initialised_node)
    node.wait_ready()
    (initialised_node / "config.toml").write_text('[log]\nlevel = "debug"\n')
    result = cli("reload", "--api", node.api)
    assert result.returncode == 0 and "applied log.level" in result.stdout, result
    node.wait_for_log("config reloaded: log.level changed from info to debug")
    (initialised_node / "config.toml").write_text('[log]\nlevel = "loud"\n')
    one_line_error(cli("reload", "--api", node.api), "reload failed", "log.level")
    assert node.proc.poll() is None
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def _status_line(cli, api: str) -> str:
    result = cli("status", "--api", api)
    assert result.returncode in (0, 1), result.stderr  # 1: a health check is not passing
    return next(line for line in result.stdout.splitlines() if line.startswith("status "))


def test_reload_on_one_node_of_a_cluster(tmp_path, cli):
    cluster = LocalCluster(tmp_path, 3)
    first, target, third = cluster.nodes
    config = target.data_dir / "config.toml"
    config.write_text("[health]\nmin_peers = 2\n")
    config.chmod(0o600)
    with cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=15)
        assert ", ready," in _status_line(cli, target.api)
        # A reloadable key: more peers than this cluster has, so the node says it is not ready.
        config.write_text("[health]\nmin_peers = 3\n")
        result = cli("reload", "--api", target.api)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["config reloaded: applied health.min_peers"]
        target.wait_for_log("config reloaded: health.min_peers changed from 2 to 3", timeout=10)
        assert ", not ready," in _status_line(cli, target.api)
        for other in (first, third):  # the others read their own configs
            assert ", ready," in _status_line(cli, other.api)
        # A key that needs a restart: reported, not applied.
        mark = len(target.messages)
        config.write_text("[health]\nmin_peers = 3\n[gossip]\nmax_hops = 7\n")
        result = cli("reload", "--api", target.api)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["config reloaded: nothing to apply",
                                              "changed but needing a restart: gossip.max_hops"]
        target.wait_for_log(r"^config reload: gossip.max_hops changed but needs a restart",
                            timeout=10, start=mark)
        # And back: the node is ready again without a restart, still part of the mesh.
        config.write_text("[health]\nmin_peers = 2\n")
        result = cli("reload", "--api", target.api)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["config reloaded: applied health.min_peers"]
        assert ", ready," in _status_line(cli, target.api)
        cluster.wait_for_mesh(timeout=15)
        assert cluster.stop() == [0, 0, 0], _tails(cluster)


def _start_monitor(api: str, level: str) -> tuple[subprocess.Popen[str], list[str],
                                                  threading.Condition]:
    proc = subprocess.Popen([sys.executable, "-m", "bzzz_edge", "monitor", "--api", api,
                             "--level", level, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    cond = threading.Condition()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with cond:
                lines.append(line)
                cond.notify_all()

    threading.Thread(target=read, daemon=True).start()
    return proc, lines, cond


def _wait_for(lines: list[str], cond: threading.Condition, text: str, timeout: float = 15) -> dict:
    with cond:
        assert cond.wait_for(lambda: any(text in line for line in lines), timeout), lines
        return json.loads(next(line for line in lines if text in line))


def test_monitor_shows_a_node_joining_the_cluster(tmp_path):
    with LocalCluster(tmp_path, 3) as cluster:
        first, watched, joiner = cluster.nodes
        cluster.start_node(first)
        cluster.start_node(watched)
        cluster.wait_for_mesh(timeout=15)
        proc, lines, cond = _start_monitor(watched.api, "info")
        # The monitor subscribes asynchronously: reload until it has shown the reload's line.
        assert watched.process is not None
        with cond:
            while not any("config reloaded" in line for line in lines):
                watched.process.send_signal(signal.SIGHUP)
                cond.wait(0.5)
        # The third node bootstraps from the first: the watched node hears of it from them.
        cluster.start_node(joiner, seed=first)
        joined = re.compile(rf"^peer {joiner.short_id} \S+ -> alive")
        with cond:
            assert cond.wait_for(lambda: any(joined.search(json.loads(line)["msg"])
                                             for line in lines), 15), lines
            entry = next(json.loads(line) for line in lines
                         if joined.search(json.loads(line)["msg"]))
        assert entry["level"] == "info" and entry["logger"] == "bzzz_edge.membership.service"
        cluster.wait_for_mesh(timeout=15)
        assert cluster.stop() == [0, 0, 0], _tails(cluster)
        assert proc.wait(15) == 0  # the stream ends with the node


def test_monitor_streams_log_lines_at_the_chosen_level(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    proc, lines, cond = _start_monitor(node.api, "debug")
    # The monitor subscribes asynchronously: reload until it has shown the reload's line.
    with cond:
        while not any("config reloaded" in line for line in lines):
            node.signal(signal.SIGHUP)
            cond.wait(0.5)
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
    assert proc.wait(15) == 0  # the stream ends with the node
    # Stopping components is logged at debug: the monitor has it, stderr (info) does not.
    entry = _wait_for(lines, cond, "component transport stopped")
    assert entry["level"] == "debug" and entry["logger"] == "bzzz_edge.lifecycle.shutdown"
    assert not any(json.loads(line)["level"] == "debug" for line in node.lines)


def test_monitor_level_filters(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    proc, lines, cond = _start_monitor(node.api, "warning")
    (initialised_node / "config.toml").write_text('[log]\nlevel = "loud"\n')
    # Repeat until the monitor, which subscribes asynchronously, has seen one.
    with cond:
        while not any("config reload failed" in line for line in lines):
            node.signal(signal.SIGHUP)
            cond.wait(0.5)
    assert all(json.loads(line)["level"] in ("warning", "error") for line in lines)
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
    assert proc.wait(15) == 0


def test_token_from_flag_or_environment_and_401_shape(initialised_node, spawn_node, cli,
                                                      one_line_error):
    token = "tok-0123456789abcdef"
    node = spawn_node(initialised_node, "--set", f"api.token={token}")
    node.wait_ready()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(node.api + "/api/v1/node", timeout=5)
    assert refused.value.code == 401
    body = json.loads(refused.value.read())
    assert set(body) == {"error", "path"} and body["path"] == "/api/v1/node"
    assert cli("status", "--api", node.api, "--token", token).returncode == 0
    ok = cli("status", "--api", node.api, env={"BZZZ_EDGE_API_TOKEN": token})
    assert ok.returncode == 0 and "ready" in ok.stdout
    one_line_error(cli("status", "--api", node.api, "--token", "wrong-token-value"), "refused")
    one_line_error(cli("peers", "--api", node.api), "needs an API token")
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
